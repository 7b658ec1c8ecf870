"""The long-running scheduler: APScheduler fires the checks and the cron schedule; runs
are `taxi-pipeline run` child processes, one at a time, or, with a Kubeflow target,
runs of the uploaded pipeline started through the kfp Client (`submit`'s code).

A run in its own process: a crash or a leak in one run (TensorFlow, Beam) cannot take
the scheduler down, and the workspace lock keeps it from ever overlapping a run
started by hand. Every job goes through one worker thread, so a check never starts a
run while another is going. A failed run is reported and scheduling goes on; SIGTERM
stops the scheduler after asking a running run to stop (its executions are marked
abandoned by the next run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, List, Optional

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from foundation import metadata_store
from foundation.workspace import Workspace
from monitoring import feedback_span
from pipeline.run_trigger import ALERT, SCHEDULE, Trigger
from scheduler import triggers

# Retraining on feedback: the challenger must beat the serving model on that traffic, not
# merely come close (the Evaluator's change threshold: AUC at least this much higher).
CHALLENGER_MARGIN = 1e-6
# A trigger whose detail says so runs with the Tuner searching (the run parameter's name).
TUNE = 'tune'


@dataclasses.dataclass(frozen=True)
class KubeflowTarget:
    """Where triggered runs go instead of this machine: the newest uploaded version of the pipeline."""

    host: str
    package: str  # the spec CI uploads: run parameters are checked and typed against it
    pipeline_name: str
    experiment: str
    token: Optional[str] = None
    namespace: str = 'kubeflow'
    params: tuple = ()  # of (name, value)
    # The cluster's ML Metadata, where runs and monitoring passes are recorded (triggers read it).
    metadata_grpc: Optional[str] = None
    # False: triggered runs re-execute every task. KFP caches by input artifact ids, so a retrain on
    # alerts over an unchanged span would otherwise reuse every task and train nothing new.
    enable_caching: bool = True


@dataclasses.dataclass(frozen=True)
class Settings:
    workspace: str
    data_root: str
    policy: triggers.Policy = triggers.Policy()
    cron: Optional[str] = None
    # Runs on this cron also tune the hyperparameters (`run --tune`; the `tune` parameter on Kubeflow).
    tune_cron: Optional[str] = None
    poll_seconds: float = 60.0
    # On alerts: write the labelled serving traffic as the next span and train on it.
    feedback_span: bool = False
    request_log_dir: Optional[str] = None
    feedback_dir: Optional[str] = None
    # Passed to every `taxi-pipeline run` (e.g. --train-steps 200).
    run_args: tuple = ()
    # How long a triggered run waits for a run started by hand to release the workspace.
    wait_seconds: float = 3600.0
    kubeflow: Optional[KubeflowTarget] = None

    @property
    def metadata_path(self) -> str:
        return Workspace(self.workspace).metadata_path


@dataclasses.dataclass(frozen=True)
class Outcome:
    trigger: Trigger
    exit_code: int
    span: Optional[int] = None


class Scheduler:
    def __init__(self, settings: Settings, emit_line: Callable[[str], None] = print):
        self.settings = settings
        self.emit_line = emit_line
        self.outcomes: List[Outcome] = []
        self._child: Optional[subprocess.Popen] = None
        self._stopping = threading.Event()

    # -- one decision, one run ------------------------------------------------

    def check(self) -> Optional[Outcome]:
        """Runs the pipeline if a trigger is due; the run's outcome, or None."""
        kubeflow = self.settings.kubeflow
        store = (metadata_store.connect(grpc_address=kubeflow.metadata_grpc) if kubeflow and kubeflow.metadata_grpc
                 else metadata_store.connect_if_present(self.settings.metadata_path))
        decision = triggers.due(store, self.settings.data_root, self.settings.policy, int(time.time() * 1000))
        if decision.trigger is None:
            if decision.note != 'nothing due':
                self.emit_line(f'{_now()} {decision.note}')
            return None
        return self.run(decision.trigger)

    def run(self, trigger: Trigger) -> Outcome:
        if self._stopping.is_set():
            return Outcome(trigger, -1)
        self.emit_line(f'{_now()} run due: {trigger.describe()}')
        if self.settings.kubeflow is not None:
            return self._run_on_kubeflow(trigger)
        span = None
        if trigger.kind == ALERT and self.settings.feedback_span:
            span = self._feedback_span()
            if span is not None:
                trigger = Trigger(trigger.kind, {**trigger.detail, 'feedback_span': span})
        # Whatever started it, a run on served traffic ships only a model that beats the serving one there.
        extra = [f'--max-auc-drop={-CHALLENGER_MARGIN}'] if _latest_is_feedback(self.settings.data_root) else []
        if trigger.detail.get(TUNE):
            extra.append('--tune')
        command = [os.path.join(os.path.dirname(sys.executable), 'taxi-pipeline'), 'run',
                   '--workspace', self.settings.workspace, '--data-root', self.settings.data_root,
                   '--trigger', trigger.kind, '--trigger-detail', json.dumps(trigger.detail, sort_keys=True),
                   '--wait', str(self.settings.wait_seconds), *self.settings.run_args, *extra]
        self._child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self._child.stdout:
            self.emit_line(f'  | {line.rstrip()}')
        code = self._child.wait()
        self._child = None
        self.emit_line(f'{_now()} run ' + ('succeeded' if code == 0 else f'FAILED (exit {code}); scheduling goes on'))
        outcome = Outcome(trigger, code, span)
        self.outcomes.append(outcome)
        return outcome

    def _run_on_kubeflow(self, trigger: Trigger) -> Outcome:
        """A run of the newest uploaded version, named for its trigger (the detail is in this log)."""
        from pipeline import kubeflow_submit
        target = self.settings.kubeflow
        run_name = f'{target.pipeline_name}-{trigger.kind}-{time.strftime("%Y%m%d-%H%M%S", time.gmtime())}'
        try:
            client = kubeflow_submit.connect(target.host, token=target.token, namespace=target.namespace)
            params = {**dict(target.params), **({TUNE: 1} if trigger.detail.get(TUNE) else {})}
            kubeflow_submit.start_run(client, target.package, target.pipeline_name, target.experiment, run_name,
                                      params, emit_line=lambda line: self.emit_line(f'  | {line}'),
                                      enable_caching=None if target.enable_caching else False)
            code = 0
        except (kubeflow_submit.SubmitError, ValueError) as e:
            self.emit_line(f'{_now()} run FAILED to start on Kubeflow: {e}; scheduling goes on')
            code = 1
        outcome = Outcome(trigger, code)
        self.outcomes.append(outcome)
        return outcome

    def _feedback_span(self) -> Optional[int]:
        try:
            written = feedback_span.write_next_span(self.settings.feedback_dir, self.settings.request_log_dir,
                                                    self.settings.data_root)
        except ValueError as e:  # nothing to learn from yet: retrain on the data there is
            self.emit_line(f'{_now()} no feedback span: {e}')
            return None
        left = ', '.join(f'{count} {reason}' for reason, count in written.left_out.items())
        self.emit_line(f'{_now()} wrote span {written.span} from feedback: {written.rows} labelled served example(s)'
                       + (f'; left out {left}' if left else ''))
        return written.span

    # -- the long-running service -------------------------------------------------

    def serve_forever(self) -> int:
        """Until SIGINT or SIGTERM."""
        done = threading.Event()

        def stop(*_):
            self._stopping.set()
            done.set()
            if self._child is not None:
                self.emit_line(f'{_now()} stopping: asking the running run to stop')
                self._child.send_signal(signal.SIGTERM)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        # One worker: a check and a cron firing never run the pipeline at the same time.
        service = BackgroundScheduler(executors={'default': ThreadPoolExecutor(1)},
                                      job_defaults={'coalesce': True, 'max_instances': 1, 'misfire_grace_time': None},
                                      timezone='UTC')
        service.add_job(self._guarded(self.check), IntervalTrigger(seconds=self.settings.poll_seconds),
                        id='triggers', next_run_time=_utcnow())
        if self.settings.cron:
            cron = CronTrigger.from_crontab(self.settings.cron, timezone='UTC')
            service.add_job(self._guarded(lambda: self.run(Trigger(SCHEDULE, {'cron': self.settings.cron}))), cron,
                            id='schedule')
        if self.settings.tune_cron:
            service.add_job(self._guarded(lambda: self.run(self.tuning_trigger())),
                            CronTrigger.from_crontab(self.settings.tune_cron, timezone='UTC'), id='tuning')
        service.start()
        self.emit_line(f'{_now()} scheduling on {self.settings.workspace}: ' + ', '.join(self._describe()))
        done.wait()
        service.shutdown(wait=True)
        self.emit_line(f'{_now()} stopped after {len(self.outcomes)} run(s)')
        return 0

    def tuning_trigger(self) -> Trigger:
        """What the tuning cron starts: a scheduled run that tunes, recorded as such."""
        return Trigger(SCHEDULE, {'cron': self.settings.tune_cron, TUNE: True})

    def _guarded(self, job):
        def guarded():
            try:
                job()
            except Exception as e:  # a broken check must not end the schedule
                self.emit_line(f'{_now()} check failed: {type(e).__name__}: {e}; scheduling goes on')
        return guarded

    def _describe(self) -> List[str]:
        parts = []
        if self.settings.cron:
            parts.append(f'cron {self.settings.cron!r} (UTC)')
        if self.settings.tune_cron:
            parts.append(f'tuning runs on cron {self.settings.tune_cron!r} (UTC)')
        if self.settings.policy.watch_spans:
            parts.append(f'new spans in {self.settings.data_root}')
        if self.settings.policy.on_alerts:
            parts.append(f'monitoring alerts ({", ".join(self.settings.policy.alert_kinds)}; cooldown '
                         f'{self.settings.policy.cooldown_seconds:.0f} s)'
                         + (', retraining on a feedback span' if self.settings.feedback_span else ''))
        return parts + [f'checked every {self.settings.poll_seconds:g} s']


def _latest_is_feedback(data_root: str) -> bool:
    from monitoring.feedback_span import MANIFEST
    from pipeline import data
    spans = data.span_dirs(data_root)
    return bool(spans) and os.path.exists(os.path.join(spans[-1][1], MANIFEST))


def _utcnow():
    import datetime
    return datetime.datetime.now(datetime.timezone.utc)


def _now() -> str:
    return time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())
