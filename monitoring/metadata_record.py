"""Monitoring passes in ML Metadata, next to the runs that made the models they judge.

ML Metadata is the system's one record: each pass is an execution of type
`ServingMonitor` (its window and alert count), in a context per model base
path; for every version it judged it consumes that version's PushedModel
artifact (the Pusher's output, found by its push destination, else by its
version) and produces a `ServingMonitoringResult` artifact holding what was
measured (examples, outlier rate, live metrics, distances, alerts, and the
estimate before labels with label, concept and attribution drift). The
lineage of a pushed model so leads to every judgement of its traffic, and a
version's history across windows is one filtered query. Everything a pass
writes goes in one `put_execution` transaction: a killed pass leaves nothing
half-recorded.
"""

import json
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

from foundation.metadata_store import ListOptions, find_pushed_model, quoted

EXECUTION_TYPE = 'ServingMonitor'
RESULT_TYPE = 'ServingMonitoringResult'
CONTEXT_TYPE = 'serving_monitoring'

INT, DOUBLE, STRING = metadata_store_pb2.INT, metadata_store_pb2.DOUBLE, metadata_store_pb2.STRING
_RESULT_PROPERTIES = {
    'model_version': INT, 'window_start_micros': INT, 'window_end_micros': INT, 'examples': INT, 'alerts': INT,
    'outlier_rate': DOUBLE, 'labelled_examples': INT, 'live_auc': DOUBLE, 'live_accuracy': DOUBLE,
    'calibration_error': DOUBLE, 'model_base_path': STRING,
    # How the PushedModel it consumed was found: 'destination', 'version' (the push destination
    # differs, e.g. models copied elsewhere), or 'none'.
    'pushed_model_link': STRING,
    # JSON: {"skew": {feature: [value, threshold]}, "drift": {...}, "prediction_drift": [...], "alerts": [...],
    # "estimation": before_labels.Findings.record() (the estimate before labels; None without a calibration)}
    'findings': STRING,
}
_EXECUTION_PROPERTIES = {'window_start_micros': INT, 'window_end_micros': INT, 'alerts': INT,
                         'model_base_path': STRING, 'request_log_dir': STRING}


def _type_id(store, kind: str, name: str, properties: Dict[str, int]) -> int:
    # can_add_fields: a store written by an earlier version of these types takes the new properties.
    if kind == 'artifact':
        return store.put_artifact_type(metadata_store_pb2.ArtifactType(name=name, properties=properties),
                                       can_add_fields=True)
    if kind == 'execution':
        return store.put_execution_type(metadata_store_pb2.ExecutionType(name=name, properties=properties),
                                        can_add_fields=True)
    return store.put_context_type(metadata_store_pb2.ContextType(name=name))


def link(store, model_base_path: str, version: int) -> Optional[str]:
    """How a version's PushedModel is found: BY_DESTINATION, BY_VERSION, or None."""
    return find_pushed_model(store, model_base_path, version)[1]


def _worst(findings):
    """Per feature, the finding nearest its threshold (a breach first): a feature with several tests is recorded
    by the one that matters, every test kept beside it."""
    worst = {}
    for f in findings:
        try:
            ratio = f.value / float(f.threshold) if float(f.threshold) > 0 else float('inf')
        except ValueError:  # a range ("min-max"), not a distance
            ratio = 0.0
        key = (f.drifted, ratio)
        if f.feature not in worst or key > worst[f.feature][0]:
            worst[f.feature] = (key, f)
    return [f for _, f in worst.values()]


def _findings(report) -> str:
    def measured(findings):
        return {f.feature: [round(f.value, 6), f.threshold] for f in _worst(findings)}

    def tests(findings):
        out = {}
        for f in findings:
            out.setdefault(f.feature, {})[f.measure] = [round(f.value, 6), f.threshold, f.drifted]
        return out
    prediction = report.prediction_drift
    return json.dumps({'skew': measured(report.skew), 'drift': measured(report.drift),
                       'skew_tests': tests(report.skew), 'drift_tests': tests(report.drift),
                       'prediction_drift': [round(prediction.value, 6), prediction.threshold] if prediction else None,
                       'alerts': report.alerts,
                       'estimation': report.estimation.record() if report.estimation is not None else None},
                      sort_keys=True)


def record(store, found, settings, report_uri: str) -> int:
    """Records the pass (monitor.Pass) and returns its execution id."""
    execution_type = _type_id(store, 'execution', EXECUTION_TYPE, _EXECUTION_PROPERTIES)
    result_type = _type_id(store, 'artifact', RESULT_TYPE, _RESULT_PROPERTIES)
    context_type = _type_id(store, 'context', CONTEXT_TYPE, {})
    execution = metadata_store_pb2.Execution(type_id=execution_type,
                                             last_known_state=metadata_store_pb2.Execution.COMPLETE)
    for name, value in (('window_start_micros', settings.start_micros), ('window_end_micros', settings.end_micros),
                        ('alerts', len(found.alerts))):
        execution.properties[name].int_value = value
    execution.properties['model_base_path'].string_value = settings.model_base_path
    execution.properties['request_log_dir'].string_value = settings.log_dir
    artifacts_and_events = []
    for report in found.reports:
        pushed, found_by = find_pushed_model(store, settings.model_base_path, report.version)
        if pushed is not None:
            artifacts_and_events.append((pushed, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)))
        result = metadata_store_pb2.Artifact(type_id=result_type, uri=report_uri,
                                             state=metadata_store_pb2.Artifact.LIVE)
        p = result.properties
        p['model_version'].int_value = report.version
        p['window_start_micros'].int_value = settings.start_micros
        p['window_end_micros'].int_value = settings.end_micros
        p['examples'].int_value = report.examples
        p['alerts'].int_value = len(report.alerts)
        p['pushed_model_link'].string_value = found_by or 'none'
        p['model_base_path'].string_value = settings.model_base_path
        if report.outlier_rate is not None:
            p['outlier_rate'].double_value = report.outlier_rate
        p['labelled_examples'].int_value = report.live.examples if report.live else 0
        if report.live is not None:
            p['live_accuracy'].double_value = report.live.accuracy
            p['calibration_error'].double_value = report.live.calibration_error
            if report.live.auc is not None:
                p['live_auc'].double_value = report.live.auc
        p['findings'].string_value = _findings(report)
        event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)
        event.path.steps.add().key = 'result'
        event.path.steps.add().index = report.version
        artifacts_and_events.append((result, event))
    context = metadata_store_pb2.Context(type_id=context_type, name=settings.model_base_path)
    execution_id, _, _ = store.put_execution(execution, artifacts_and_events, [context],
                                             reuse_context_if_already_exist=True)
    return execution_id


def history(store, model_base_path: str, version: int) -> List[Dict]:
    """Every recorded pass over the traffic of a version of the model at `model_base_path`, oldest
    window first (a window judged twice counts once, as last judged): dicts of the result's
    properties, findings decoded."""
    results = store.get_artifacts(list_options=ListOptions(filter_query=(
        f"type = '{RESULT_TYPE}' AND properties.model_version.int_value = {int(version)} AND "
        f"properties.model_base_path.string_value = {quoted(model_base_path)}")))
    by_window = {}
    for artifact in sorted(results, key=lambda a: a.id):
        entry = {name: (value.int_value if _RESULT_PROPERTIES[name] == INT else
                        value.double_value if _RESULT_PROPERTIES[name] == DOUBLE else value.string_value)
                 for name, value in artifact.properties.items()}
        entry['findings'] = json.loads(entry.get('findings') or '{}')
        entry['report'] = artifact.uri
        by_window[(entry['window_start_micros'], entry['window_end_micros'])] = entry
    return [by_window[key] for key in sorted(by_window, key=lambda k: k[1])]
