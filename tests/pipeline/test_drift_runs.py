"""Drift in the pipeline: a next span is compared with the data the serving
model was trained on. A clean span passes; a drifted one stops the run before
training (block) or trains a model that carries the verdict (warn)."""

import math
import os
import shutil

import pytest

from foundation import metadata_store
from components.drift_check import drift as drift_check
from components.anomalies_gate.gate import DataDriftError
from pipeline import data, local_runner, run_summary
from pipeline.config import PipelineConfig
from support.samples import SAMPLE_ROWS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def workspace(first_run, tmp_path_factory):
    """A workspace whose serving model is the first run's, with the sample's first span."""
    first_config, result, _ = first_run
    root = tmp_path_factory.mktemp('drift')
    # Steps from epochs (the default way): 3 passes over the span's training rows.
    config = PipelineConfig.for_workspace(str(root), train_epochs=3.0, eval_steps=20)
    # The version with its ML Metadata: a version directory the registry does not know is no drift reference.
    shutil.copy(first_config.metadata_path, config.metadata_path)
    shutil.copytree(result.pushed_to, os.path.join(config.serving_model_dir, os.path.basename(result.pushed_to)))
    data.prepare_sample(config.data_root, rows=SAMPLE_ROWS)
    return config


def _model_of(config, summary):
    store = metadata_store.connect_existing(config.metadata_path)
    executions = run_summary.latest_run_executions(store, config)
    return metadata_store.output_artifacts(store, executions['Trainer'].id)['model']


def test_a_clean_next_span_passes(workspace):
    data.prepare_sample(workspace.data_root, rows=SAMPLE_ROWS, span=2, seed=7)
    summary = local_runner.run(workspace, emit_line=lambda line: None)
    assert summary.succeeded
    assert summary.drift.verdict == drift_check.NO_DRIFT
    # Compared with the version the first run pushed, the only one there before this run.
    assert summary.drift.baseline_version == sorted(os.listdir(workspace.serving_model_dir))[0]
    assert 'Drift vs the data serving version' in summary.render() and ': none' in summary.render()


def test_the_steps_cover_the_training_rows_the_epochs_ask_for(workspace):
    summary = run_summary.summarize_latest_run(workspace, 0.0)
    batch, rows = workspace.hyperparameters.batch_size, summary.rows['train']
    steps = math.ceil(workspace.train_epochs * rows / batch)
    # Under 1,000 steps, validation runs once, at the end: every step is taken and kept.
    assert summary.training == {'steps': steps, 'batch_size': batch, 'taken': steps, 'kept': steps}
    model = _model_of(workspace, summary).custom_properties
    assert (model['train_steps'].int_value, model['train_rows'].int_value) == (steps, rows)
    assert workspace.train_epochs <= model['train_epochs'].double_value < workspace.train_epochs + batch / rows
    assert f'Training: {steps:,} steps of {batch} = {steps * batch:,} examples, ' in summary.render()


def test_a_drifted_span_stops_the_run_before_training_when_the_policy_blocks(workspace):
    data.prepare_sample(workspace.data_root, rows=SAMPLE_ROWS, span=3, seed=9, drift=True)
    pushed_before = sorted(os.listdir(workspace.serving_model_dir))
    lines = []
    with pytest.raises(DataDriftError) as raised:
        local_runner.run(PipelineConfig.for_workspace(os.path.dirname(workspace.metadata_path), train_steps=100,
                                                      eval_steps=20, drift_policy='block'), emit_line=lines.append)
    assert {'fare', 'trip_start_hour', 'payment_type'} <= {line.split(':')[0] for line in raised.value.lines}
    assert sorted(os.listdir(workspace.serving_model_dir)) == pushed_before
    summary = run_summary.summarize_latest_run(workspace, 0.0)
    # Recorded in ML Metadata although the run stopped; nothing after the gate ran.
    assert summary.drift.verdict == drift_check.DRIFT and summary.drift_policy == 'block'
    assert summary.state_of('AnomaliesGate') == 'FAILED' and summary.state_of('Trainer') is None


def test_a_drifted_span_trains_a_model_marked_with_the_verdict_when_the_policy_warns(workspace):
    summary = local_runner.run(workspace, emit_line=lambda line: None)
    assert summary.succeeded
    assert set(summary.drift.drifted) >= {'fare', 'trip_start_hour', 'payment_type'}
    assert 'DRIFT in' in summary.render() and 'policy warn' in summary.render()
    model = _model_of(workspace, summary)
    assert model.custom_properties[drift_check.VERDICT].string_value == drift_check.DRIFT
    assert 'fare' in model.custom_properties['drift_features'].string_value.split(',')
