"""Upload the compiled pipeline to Kubeflow Pipelines, run it, and schedule it.

Uses the kfp SDK's Client (KFP v2beta1 REST API). One call does what CI does
on every push: upload the pipeline (or a new version of it), make sure the
experiment exists, and optionally start a run and create or replace the
recurring run that retrains on a schedule.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional

import kfp
import kfp_server_api
import urllib3


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
              emit_line: Callable[[str], None] = print) -> str:
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
    run = _call('starting the run', client.run_pipeline, experiment.experiment_id, run_name, params=params,
                pipeline_id=pipeline_id, version_id=chosen.pipeline_version_id)
    emit_line(f'Started run {run_name} ({run.run_id}) of version {chosen.display_name}')
    return run.run_id


def submit(client: kfp.Client, package_path: str, pipeline_name: str, version_name: str, experiment_name: str,
           run_name: Optional[str] = None, params: Optional[Dict[str, object]] = None,
           schedule: Optional[Schedule] = None, emit_line: Callable[[str], None] = print) -> SubmitResult:
    """Uploads `package_path` as a new version (creating the pipeline on first use), then runs/schedules it.

    Parameters the spec does not declare are refused before anything is uploaded:
    KFP would otherwise accept the run and silently ignore them.
    """
    params = typed_parameters(package_path, params or {})
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
                    params=params or {}, pipeline_id=pipeline_id, version_id=version.pipeline_version_id)
        result.run_id = run.run_id
        emit_line(f'Started run {run_name} ({run.run_id})')

    if schedule:
        existing = _call('listing recurring runs', client.list_recurring_runs,
                         experiment_id=experiment.experiment_id, page_size=100)
        for old in existing.recurring_runs or []:
            if old.display_name == schedule.name:
                _call('deleting the old recurring run', client.delete_recurring_run, old.recurring_run_id)
                result.replaced_recurring_run_ids.append(old.recurring_run_id)
                emit_line(f'Replaced recurring run {schedule.name} ({old.recurring_run_id})')
        recurring = _call('creating the recurring run', client.create_recurring_run, experiment.experiment_id,
                          schedule.name, cron_expression=schedule.cron, interval_second=schedule.interval_seconds,
                          max_concurrency=schedule.max_concurrency, params=params or {}, pipeline_id=pipeline_id,
                          version_id=version.pipeline_version_id, enabled=True)
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
