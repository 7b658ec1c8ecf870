"""Upload the compiled pipeline to Kubeflow Pipelines, run it, and schedule it.

Uses the kfp SDK's Client (KFP v2beta1 REST API). One call does what CI does
on every push: upload the pipeline (or a new version of it), make sure the
experiment exists, and optionally start a run and create or replace the
recurring run that retrains on a schedule.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Callable, Dict, Optional, Tuple

import kfp
import kfp_server_api
import urllib3
import yaml


class SubmitError(RuntimeError):
    """The KFP API refused or could not be reached; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Exactly one of cron (KFP's 6-field cron, seconds first) or interval."""

    name: str
    cron: Optional[str] = None
    interval_seconds: Optional[int] = None
    max_concurrency: int = 1

    def __post_init__(self):
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError('a schedule needs exactly one of cron or interval_seconds')
        if self.cron is not None and len(self.cron.split()) != 6:
            raise ValueError(f'KFP cron has 6 fields (seconds first), e.g. "0 0 3 * * *"; got {self.cron!r}')
        if self.interval_seconds is not None and self.interval_seconds <= 0:
            raise ValueError('interval_seconds must be positive')


@dataclasses.dataclass(frozen=True)
class RecurringRun:
    """The recurring run as the repository declares it (kfp/recurring_run.yaml)."""
    schedule: Schedule
    experiment: str
    parameters: Tuple[Tuple[str, object], ...] = ()
    enable_caching: bool = True


RECURRING_RUN_KEYS = {'name', 'experiment', 'cron', 'interval_seconds', 'max_concurrency', 'enable_caching',
                      'parameters'}


def load_recurring_run(path: str, package_path: str) -> RecurringRun:
    """The file's recurring run, its parameters typed and checked against the spec; ValueError naming what is wrong."""
    with open(path) as f:
        declared = yaml.safe_load(f) or {}
    if not isinstance(declared, dict):
        raise ValueError(f'{path}: a mapping of {", ".join(sorted(RECURRING_RUN_KEYS))} expected')
    unknown = sorted(set(declared) - RECURRING_RUN_KEYS)
    if unknown:
        raise ValueError(f'{path}: unknown key(s) {", ".join(unknown)}; known: {", ".join(sorted(RECURRING_RUN_KEYS))}')
    for key in ('name', 'experiment'):
        if not isinstance(declared.get(key), str) or not declared[key]:
            raise ValueError(f'{path}: {key} is required (a string)')
    if not isinstance(declared.get('enable_caching', True), bool):
        raise ValueError(f'{path}: enable_caching is true or false')
    try:
        schedule = Schedule(declared['name'], cron=declared.get('cron'),
                            interval_seconds=declared.get('interval_seconds'),
                            max_concurrency=int(declared.get('max_concurrency', 1)))
        parameters = typed_parameters(package_path, dict(declared.get('parameters') or {}))
    except ValueError as e:
        raise ValueError(f'{path}: {e}') from None
    return RecurringRun(schedule, declared['experiment'], tuple(sorted(parameters.items())),
                        declared.get('enable_caching', True))


def _described(recurring) -> Dict[str, object]:
    """A recurring run on the cluster as the fields the file declares, to say what a push changed."""
    trigger = recurring.trigger
    return {'cron': trigger.cron_schedule.cron if trigger and trigger.cron_schedule else None,
            'interval_seconds': (int(trigger.periodic_schedule.interval_second)
                                 if trigger and trigger.periodic_schedule else None),
            'max_concurrency': int(recurring.max_concurrency or 0),
            'parameters': dict((recurring.runtime_config.parameters or {}) if recurring.runtime_config else {}),
            'enable_caching': recurring.pipeline_spec is None}


def _declared(wanted: 'RecurringRun') -> Dict[str, object]:
    return {'cron': wanted.schedule.cron, 'interval_seconds': wanted.schedule.interval_seconds,
            'max_concurrency': wanted.schedule.max_concurrency, 'parameters': dict(wanted.parameters),
            'enable_caching': wanted.enable_caching}


@dataclasses.dataclass
class SubmitResult:
    pipeline_id: str
    version_id: str
    experiment_id: str
    run_id: Optional[str] = None
    recurring_run_id: Optional[str] = None
    replaced_recurring_run_ids: list = dataclasses.field(default_factory=list)


def _explain(action: str, error: Exception) -> SubmitError:
    if isinstance(error, kfp_server_api.ApiException):
        reason = {401: 'not authenticated (check the token)', 403: 'not allowed (check the token\'s permissions)',
                  404: 'not found (check the host, the API path and the ids)',
                  400: 'rejected as invalid'}.get(error.status, error.reason)
        body = (error.body or '').strip()
        return SubmitError(f'{action} failed: HTTP {error.status}, {reason}' + (f': {body[:500]}' if body else ''))
    if isinstance(error, (urllib3.exceptions.HTTPError, ConnectionError, OSError)):
        return SubmitError(f'{action} failed: cannot reach the KFP API ({error})')
    return SubmitError(f'{action} failed: {error}')


def _call(action: str, fn: Callable, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # every API error becomes one clear SubmitError
        raise _explain(action, e) from e


_PARAMETER_TYPES = {'NUMBER_INTEGER': int, 'NUMBER_DOUBLE': float, 'STRING': str}


def typed_parameters(package_path: str, params: Dict[str, object]) -> Dict[str, object]:
    """`params` in the types the compiled spec declares; ValueError naming any it does not declare
    or cannot hold (KFP would otherwise accept the run and ignore or reject them later)."""
    from pipeline.kubeflow_compile import declared_parameters
    declared = declared_parameters(package_path)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f'{package_path} declares no parameter {", ".join(unknown)}; '
                         f'it declares: {", ".join(sorted(declared)) or "none"}')
    typed = {}
    for name, value in params.items():
        kind = declared[name].get('parameterType', 'STRING')
        try:
            typed[name] = _PARAMETER_TYPES.get(kind, str)(value)
        except ValueError:
            raise ValueError(f'parameter {name} is {kind}; {value!r} is not one') from None
    return typed


def connect(host: str, token: Optional[str] = None, namespace: str = 'kubeflow') -> kfp.Client:
    return _call(f'connecting to {host}', kfp.Client, host=host, existing_token=token, namespace=namespace)


def _source(package_path: str, pipeline_id: str, version_id: str, enable_caching: Optional[bool]) -> dict:
    """What a run or recurring run runs: the uploaded version, or, with caching off, that version's spec inline.

    KFP 2 has no per-run cache option (kubeflow/pipelines#10839): the SDK's `enable_caching` rewrites
    every task's `cachingOptions` in a spec it sends inline, and is silently ignored for a run of an
    uploaded version. So a run without cache carries the spec (the same file CI uploaded as this
    version, whose name the caller puts in the run's name) instead of a reference to the version.
    """
    if enable_caching is False:
        return {'pipeline_package_path': package_path, 'enable_caching': False}
    return {'pipeline_id': pipeline_id, 'version_id': version_id}


def _experiment(client: kfp.Client, name: str, emit_line: Callable[[str], None]):
    try:
        return client.get_experiment(experiment_name=name)
    except ValueError:  # the SDK's "no experiment with this name"
        experiment = _call('creating the experiment', client.create_experiment, name)
        emit_line(f'Created experiment {name}')
        return experiment
    except Exception as e:
        raise _explain('looking up the experiment', e) from e


def start_run(client: kfp.Client, package_path: str, pipeline_name: str, experiment_name: str, run_name: str,
              params: Optional[Dict[str, object]] = None, version_name: Optional[str] = None,
              emit_line: Callable[[str], None] = print, enable_caching: Optional[bool] = None) -> str:
    """Starts a run of an uploaded version (the newest, or `version_name`) of the pipeline; its run id.

    What triggers use: CI uploads the versions (`submit`), a trigger only runs one. The
    parameters are typed and checked against `package_path`, the spec CI uploads.
    """
    params = typed_parameters(package_path, params or {})
    pipeline_id = _call('looking up the pipeline', client.get_pipeline_id, pipeline_name)
    if pipeline_id is None:
        raise SubmitError(f'no pipeline {pipeline_name!r} on the cluster: upload it first (`taxi-pipeline submit`, '
                          'which CI runs on every push)')
    versions = _call('listing the pipeline versions', client.list_pipeline_versions, pipeline_id, page_size=100,
                     sort_by='created_at desc').pipeline_versions or []
    chosen = next((v for v in versions if version_name in (None, v.display_name)), None)
    if chosen is None:
        raise SubmitError(f'pipeline {pipeline_name!r} has no version {version_name!r}' if version_name
                          else f'pipeline {pipeline_name!r} has no version yet')
    experiment = _experiment(client, experiment_name, emit_line)
    if enable_caching is False:
        # The chosen version's own spec (what CI uploaded, which may be newer than `package_path`), inline.
        version = _call('reading the pipeline version', client.get_pipeline_version, pipeline_id,
                        chosen.pipeline_version_id)
        with tempfile.TemporaryDirectory() as tmp:
            package_path = os.path.join(tmp, 'pipeline.yaml')
            with open(package_path, 'w') as f:
                yaml.safe_dump(version.pipeline_spec, f)
            run = _call('starting the run', client.run_pipeline, experiment.experiment_id, run_name, params=params,
                        **_source(package_path, pipeline_id, chosen.pipeline_version_id, enable_caching))
    else:
        run = _call('starting the run', client.run_pipeline, experiment.experiment_id, run_name, params=params,
                    **_source(package_path, pipeline_id, chosen.pipeline_version_id, enable_caching))
    emit_line(f'Started run {run_name} ({run.run_id}) of version {chosen.display_name}'
              + (', caching off' if enable_caching is False else ''))
    return run.run_id


def submit(client: kfp.Client, package_path: str, pipeline_name: str, version_name: str, experiment_name: str,
           run_name: Optional[str] = None, params: Optional[Dict[str, object]] = None,
           schedule: Optional[Schedule] = None, emit_line: Callable[[str], None] = print,
           enable_caching: Optional[bool] = None, declared: Optional[RecurringRun] = None,
           declared_path: str = 'the recurring run file') -> SubmitResult:
    """Uploads `package_path` as a new version (creating the pipeline on first use), then runs/schedules it.

    Parameters the spec does not declare are refused before anything is uploaded:
    KFP would otherwise accept the run and silently ignore them. With `declared` (a recurring run
    kept as code), the recurring run is reconciled to it: left alone when the cluster's already is
    it on this version, else replaced (KFP cannot update one in place).
    """
    params = typed_parameters(package_path, params or {})
    schedule_params, schedule_caching, schedule_experiment = params, enable_caching, None
    if declared is not None:
        schedule = declared.schedule
        schedule_params = dict(declared.parameters)
        schedule_caching = None if declared.enable_caching else False
        schedule_experiment = declared.experiment
    pipeline_id = _call('looking up the pipeline', client.get_pipeline_id, pipeline_name)
    if pipeline_id is None:
        pipeline = _call('uploading the pipeline', client.upload_pipeline, package_path, pipeline_name=pipeline_name)
        pipeline_id = pipeline.pipeline_id
        emit_line(f'Created pipeline {pipeline_name} ({pipeline_id})')
    version = _call('uploading the pipeline version', client.upload_pipeline_version, package_path,
                    pipeline_version_name=version_name, pipeline_id=pipeline_id)
    emit_line(f'Uploaded version {version_name} ({version.pipeline_version_id})')

    experiment = _experiment(client, experiment_name, emit_line)
    result = SubmitResult(pipeline_id, version.pipeline_version_id, experiment.experiment_id)

    if run_name:
        run = _call('starting the run', client.run_pipeline, experiment.experiment_id, run_name,
                    params=params or {}, **_source(package_path, pipeline_id, version.pipeline_version_id,
                                                   enable_caching))
        result.run_id = run.run_id
        emit_line(f'Started run {run_name} ({run.run_id})' + (', caching off' if enable_caching is False else ''))

    if schedule:
        if schedule_experiment and schedule_experiment != experiment_name:
            experiment = _experiment(client, schedule_experiment, emit_line)
        existing = _call('listing recurring runs', client.list_recurring_runs,
                         experiment_id=experiment.experiment_id, page_size=100)
        # Every recurring run of this name goes (KFP cannot update one; duplicates are left-overs):
        # the new one runs the version just uploaded.
        for old in existing.recurring_runs or []:
            if old.display_name == schedule.name:
                _call('deleting the old recurring run', client.delete_recurring_run, old.recurring_run_id)
                result.replaced_recurring_run_ids.append(old.recurring_run_id)
                emit_line(f'Replaced recurring run {schedule.name} ({old.recurring_run_id})')
                if declared is not None:
                    before, after = _described(old), _declared(declared)
                    changed = [f'{key} {before[key]!r} -> {after[key]!r}' for key in after if before[key] != after[key]]
                    emit_line(f'  as {declared_path} declares: ' + ('; '.join(changed) if changed else
                                                                     'unchanged but for the version'))
        recurring = _call('creating the recurring run', client.create_recurring_run, experiment.experiment_id,
                          schedule.name, cron_expression=schedule.cron, interval_second=schedule.interval_seconds,
                          max_concurrency=schedule.max_concurrency, params=schedule_params or {}, enabled=True,
                          **_source(package_path, pipeline_id, version.pipeline_version_id, schedule_caching))
        result.recurring_run_id = recurring.recurring_run_id
        emit_line(f'Scheduled {schedule.name} ({recurring.recurring_run_id}): '
                  f'{schedule.cron or f"every {schedule.interval_seconds}s"}')
    return result


def parse_params(items) -> dict:
    """Run parameters given as KEY=VALUE strings (the CLI's --param), untyped."""
    params = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ValueError(f'--param takes KEY=VALUE, got {item!r}')
        params[key] = value
    return params
