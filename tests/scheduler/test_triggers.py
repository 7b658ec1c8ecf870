"""When a run is due: a span newer than any trained one; alerts recorded by monitoring
passes since the last run, all of them one trigger, held back by the cooldown."""

import time

import pytest
from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store
from monitoring import metadata_record, monitor
from pipeline import data
from pipeline.run_trigger import ALERT, NEW_SPAN
from scheduler import triggers
from support.log_times import END, HOUR

pytestmark = pytest.mark.unit


NO_SPANS = triggers.Policy(watch_spans=False)


@pytest.fixture
def store(tmp_path):
    return metadata_store.connect(str(tmp_path / 'metadata.sqlite'))


def _trained(store, span):
    """What a run that ingested `span` leaves: its run context and ExampleGen's Examples."""
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name='Examples'))
    artifact = metadata_store_pb2.Artifact(type_id=type_id, uri=f'/examples/{span}')
    artifact.custom_properties['span'].int_value = span  # as CsvExampleGen records it
    store.put_artifacts([artifact])
    run_type = store.put_context_type(metadata_store_pb2.ContextType(name='pipeline_run'))
    store.put_contexts([metadata_store_pb2.Context(type_id=run_type, name=f'run-{time.time_ns()}')])
    time.sleep(0.01)  # ML Metadata stamps milliseconds: what comes next is strictly later


def _monitoring_pass(store, tmp_path, alerts):
    report = monitor.VersionReport(7, 100, 100, None, None, [], [], None, 0.0, alerts=alerts)
    settings = monitor.Settings(str(tmp_path), str(tmp_path / 'models'), END, HOUR, 'p', 'o')
    metadata_record.record(store, monitor.Pass([report], []), settings, str(tmp_path / 'report.html'))
    time.sleep(0.01)


def _now_ms():
    return int(time.time() * 1000)


def test_a_span_newer_than_any_trained_one_is_due(store, tmp_path):
    root = str(tmp_path / 'data')
    data.prepare_sample(root, rows=10)
    assert triggers.due(store, root, triggers.Policy(), _now_ms()).trigger.detail == \
        {'span': 1, 'last_trained_span': None}
    _trained(store, 1)
    assert triggers.due(store, root, triggers.Policy(), _now_ms()).trigger is None
    data.prepare_sample(root, rows=10, span=2)
    trigger = triggers.due(store, root, triggers.Policy(), _now_ms()).trigger
    assert trigger.kind == NEW_SPAN and trigger.detail == {'span': 2, 'last_trained_span': 1}


def test_an_alert_storm_is_one_retrain_and_a_run_answers_it(store, tmp_path):
    _trained(store, 1)
    for _ in range(3):
        _monitoring_pass(store, tmp_path, [{'alert': 'drift', 'model_version': 7, 'features': ['fare']}])
    decision = triggers.due(store, str(tmp_path), triggers.Policy(watch_spans=False, cooldown_seconds=0), _now_ms())
    assert decision.trigger.kind == ALERT and len(decision.trigger.detail['monitoring_results']) == 3
    assert decision.trigger.detail['kinds'] == ['drift'] and decision.trigger.detail['model_versions'] == [7]
    _trained(store, 1)  # the retrain ran: the alerts before it are answered
    assert triggers.due(store, str(tmp_path), NO_SPANS, _now_ms()).trigger is None


def test_alerts_wait_out_the_cooldown_after_a_run(store, tmp_path):
    _trained(store, 1)
    _monitoring_pass(store, tmp_path, [{'alert': 'live_metric', 'model_version': 7, 'metric': 'accuracy'}])
    policy = triggers.Policy(watch_spans=False, cooldown_seconds=3600)
    held = triggers.due(store, str(tmp_path), policy, _now_ms())
    assert held.trigger is None and 'cooling down' in held.note
    later = triggers.due(store, str(tmp_path), policy, _now_ms() + 3601 * 1000)
    assert later.trigger.kind == ALERT and later.trigger.detail['kinds'] == ['live_metric']


def test_alerts_retraining_cannot_answer_trigger_nothing(store, tmp_path):
    _trained(store, 1)
    _monitoring_pass(store, tmp_path, [{'alert': 'outlier_rate', 'model_version': 7, 'outlier_rate': 0.9}])
    _monitoring_pass(store, tmp_path, [])
    assert triggers.due(store, str(tmp_path), triggers.Policy(watch_spans=False, cooldown_seconds=0),
                        _now_ms()).trigger is None


def test_without_a_store_or_spans_nothing_is_due(tmp_path):
    assert triggers.due(None, str(tmp_path / 'none'), triggers.Policy(), _now_ms()).trigger is None
