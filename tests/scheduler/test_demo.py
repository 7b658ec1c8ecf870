"""The loop end to end, as `make demo` plays it: a first span trains and pushes version 1;
clean traffic with feedback triggers no run; drifted traffic with feedback triggers
exactly one retrain, on the feedback span, and its model is pushed only if it beats the
serving model there; the run records the alerts it answers."""

import json

import pytest

from foundation import alerts, metadata_store
from pipeline import run_trigger
from pipeline.config import PipelineConfig
from scheduler import demo
from support.samples import SAMPLE_ROWS, TRAIN_STEPS

pytestmark = pytest.mark.e2e


def test_drifted_traffic_with_feedback_triggers_exactly_one_retrain_that_ships_only_if_it_wins(tmp_path):
    workspace = tmp_path / 'loop'
    lines = []
    played = demo.play(str(workspace), emit_line=lines.append, rows=SAMPLE_ROWS, train_steps=TRAIN_STEPS)

    assert played.first.trigger.kind == run_trigger.NEW_SPAN and played.first.exit_code == 0
    clean, drifted = played.phases  # no third phase: checking again found nothing due
    assert clean.alerts == [] and clean.retrain is None
    kinds = {a['alert'] for a in drifted.alerts}
    assert {'skew', 'drift'} <= kinds
    assert any('payment_type' in a.get('features', []) for a in drifted.alerts)

    retrain = drifted.retrain
    assert retrain.exit_code == 0 and retrain.trigger.kind == run_trigger.ALERT
    assert retrain.span == 2 and retrain.trigger.detail['feedback_span'] == 2

    summary = demo.latest_run_summary(str(workspace))
    beat = summary.metrics['auc'] > summary.baseline_metrics['auc']
    assert bool(summary.pushed_to) == beat
    assert len(played.pushed_versions) == (2 if beat else 1)

    # The run answers the alerts, and says so in ML Metadata.
    store = metadata_store.connect_existing(PipelineConfig.for_workspace(str(workspace)).metadata_path)
    (run,) = [c for c in store.get_contexts_by_type('pipeline_run') if c.name == summary.run_id]
    recorded = run_trigger.read(run)
    assert recorded.kind == run_trigger.ALERT and recorded.detail['monitoring_results']
    assert json.loads(json.dumps(recorded.detail))['kinds'] == sorted(kinds & set(alerts.RETRAIN_KINDS))
    assert any('nothing due' in line for line in lines)
