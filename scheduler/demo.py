"""The continuous-training loop, played on this machine in a few minutes.

1. A first span arrives; the scheduler sees it and runs the pipeline: version 1 is pushed.
2. The model server serves it, logging every request; clean traffic is sent, and the
   tips each trip paid come back as feedback. A monitoring pass finds nothing, and the
   scheduler starts no run.
3. The market changes (fares x3, trips at night, cards to cash); that traffic and its
   feedback arrive. The monitoring pass alerts; the scheduler writes the labelled
   served traffic as the next span and retrains on it, once. The new version is pushed
   only if it beats the serving one on that traffic (the Evaluator's change threshold).

Every step is the system's own: the scheduler, the server (REST, request ids of our
choosing), the feedback endpoint, the monitor and its ML Metadata record.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import urllib.request
from typing import Callable, List, Optional

from foundation import metadata_store
from foundation.alerts import Alert
from foundation.workspace import Workspace
from monitoring import metadata_record, monitor
from pipeline import data, run_summary
from pipeline.config import PIPELINE_NAME
from scheduler import service, triggers
from serving import FEEDBACK_PATH
from serving.server import ModelServer, ServerSettings
from taxi_model import contract
from taxi_model.features import LABEL

BATCH = 50


@dataclasses.dataclass
class Phase:
    name: str
    alerts: List[dict]
    retrain: Optional[service.Outcome]


@dataclasses.dataclass
class Played:
    first: service.Outcome
    phases: List[Phase]
    pushed_versions: List[str]


def _post(url: str, body: dict, request_id: Optional[str] = None) -> dict:
    headers = {'Content-Type': 'application/json', **({'X-Request-Id': request_id} if request_id else {})}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method='POST')
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _send(server: ModelServer, rows: List[dict], phase: str) -> int:
    """Each batch a request with an id of our own; then each trip's tips as feedback."""
    base = f'http://127.0.0.1:{server.rest_port}'
    feedback = []
    for start in range(0, len(rows), BATCH):
        batch = rows[start:start + BATCH]
        request_id = f'{phase}-{start // BATCH:04d}'
        _post(f'{base}/v1/models/{PIPELINE_NAME}:predict',
              {'signature_name': contract.PREDICT_RAW, 'instances': [contract.to_raw_instance(r) for r in batch]},
              request_id)
        feedback += [{'request_id': request_id, 'example': i, LABEL.tips_column: float(r[LABEL.tips_column])}
                     for i, r in enumerate(batch) if r[LABEL.tips_column]]
    return _post(base + FEEDBACK_PATH, {'feedback': feedback})['stored']


def _serve(settings: service.Settings, rows: List[dict], phase: str, emit_line) -> tuple:
    """Serves the pushed model for one phase of traffic; (start, end) in micros."""
    start = int(time.time() * 1e6)
    server = ModelServer(ServerSettings.for_model(
        Workspace(settings.workspace).model_base_path, rest_port=0, grpc_port=0,
        request_log_dir=settings.request_log_dir, feedback_dir=settings.feedback_dir)).start()
    try:
        stored = _send(server, rows, phase)
    finally:
        server.stop()  # completes the request log files
    emit_line(f'  served {len(rows)} {phase} trips in {len(rows) // BATCH} requests; {stored} tips came back as '
              'feedback')
    return start, int(time.time() * 1e6) + 1


def _monitor(settings: service.Settings, start: int, end: int, emit_line) -> List[dict]:
    """A monitoring pass over [start, end) (the window before it is as long), recorded in ML Metadata."""
    pass_settings = monitor.Settings(
        settings.request_log_dir, Workspace(settings.workspace).model_base_path, end, end - start,
        contract.PROBABILITIES, contract.IS_OUTLIER, feedback_dir=settings.feedback_dir,
        labeler=contract.labels_from_feedback, label_features=contract.FEEDBACK_FEATURES)
    found = monitor.monitor(pass_settings)
    metadata_record.record(metadata_store.connect(settings.metadata_path), found, pass_settings,
                           os.path.join(Workspace(settings.workspace).report_dir, f'monitor-{end}.html'))
    for report in found.reports:
        live = report.live
        emit_line(f'  monitor: version {report.version}, {report.examples} examples, '
                  + (f'live accuracy {live.accuracy:.3f} on {live.examples}, ' if live else '')
                  + (', '.join(_alert_word(Alert.from_record(a)) for a in report.alerts) or 'no alerts'))
    return found.alerts


def _alert_word(alert: Alert) -> str:
    named = alert.features or alert.details.get('metric', '')
    return f'{alert.kind} {named}' if named else alert.kind


def play(workspace: str, emit_line: Callable[[str], None] = print, rows: int = 3000, train_steps: int = 300,
         traffic: int = 1500) -> Played:
    workspace = os.path.abspath(workspace)
    if os.path.exists(workspace) and os.listdir(workspace):
        raise ValueError(f'{workspace} is not empty: the demo starts from nothing (remove it or pass another '
                         '--workspace)')
    layout = Workspace(workspace)
    settings = service.Settings(
        workspace=workspace, data_root=layout.data_root,
        policy=triggers.Policy(cooldown_seconds=0), feedback_span=True,
        request_log_dir=layout.request_log_dir, feedback_dir=layout.feedback_dir,
        run_args=('--train-steps', str(train_steps), '--eval-steps', '50'), wait_seconds=0)
    scheduler = service.Scheduler(settings, emit_line=lambda line: emit_line(f'  {line}'))
    header, sample = data.read_rows(data.taxi_sample_path())

    emit_line(f'1. A first span arrives ({rows} trips); the scheduler sees it and runs the pipeline')
    data.prepare_sample(settings.data_root, rows=rows)
    first = scheduler.check()
    if first is None or first.exit_code != 0:
        raise RuntimeError('the first run did not succeed; see its lines above')

    # Traffic from trips the model never saw: the rest of the sample.
    unseen = random.Random(0).sample(sample[rows:], 2 * traffic)
    phases = []
    for number, (phase, trips) in enumerate((('clean', unseen[:traffic]),
                                             ('drifted', data.drifted(header, unseen[traffic:]))), 2):
        emit_line(f'{number}. {phase.capitalize()} traffic is served, and its tips come back as feedback')
        start, end = _serve(settings, [dict(zip(header, trip)) for trip in trips], phase, emit_line)
        alerts = _monitor(settings, start, end, emit_line)
        retrain = scheduler.check()
        if retrain is None:
            emit_line('  the scheduler starts no run')
        phases.append(Phase(phase, alerts, retrain))
    again = scheduler.check()
    emit_line('Checked once more: ' + ('nothing due (the alerts were answered by one retrain)' if again is None
                                       else f'another run ({again.trigger.kind})'))
    pushed = sorted(os.listdir(layout.model_base_path))
    retrained = latest_run_summary(workspace)
    if phases[-1].retrain is not None and retrained.metrics.get('auc') and retrained.baseline_metrics.get('auc'):
        emit_line(f"Retrained on the feedback span: AUC {retrained.metrics['auc']:.4f} against the serving model's "
                  f"{retrained.baseline_metrics['auc']:.4f} on that traffic: "
                  + ('pushed' if retrained.pushed_to else 'not better, so nothing was pushed'))
    emit_line(f'Pushed versions: {", ".join(pushed)}')
    return Played(first, phases + ([Phase('again', [], again)] if again else []), pushed)


def latest_run_summary(workspace: str) -> run_summary.RunSummary:
    """The newest run's summary, read back from ML Metadata."""
    from pipeline.config import PipelineConfig
    return run_summary.summarize_latest_run(PipelineConfig.for_workspace(workspace), 0.0)
