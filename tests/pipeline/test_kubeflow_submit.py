"""Contract test: the submit command against a loopback server speaking the
KFP v2beta1 REST paths the kfp SDK's Client uses. Assertions are on what the
server ends up holding, not on the order of the SDK's calls."""

import os

import pytest
import yaml

from cli import main as cli
from pipeline import kubeflow_compile, kubeflow_submit
from pipeline.config import PipelineConfig
from support.kfp_api_server import FakeKfpApi

pytestmark = pytest.mark.unit


@pytest.fixture(scope='module')
def package(tmp_path_factory):
    config = PipelineConfig.for_kubeflow('gcr.io/p/chicago-taxi-pipeline:abc123', 'gs://b/root', 'gs://b/data',
                                         'gs://b/serving')
    yaml_path, _ = kubeflow_compile.compile_pipeline(config, str(tmp_path_factory.mktemp('spec')))
    return yaml_path


def _submit(api, package, *extra, version='abc123'):
    return cli.main(['submit', '--host', api.host, '--token', 'secret-token', '--package', package,
                     '--version', version, '--experiment', 'taxi'] + list(extra))


@pytest.fixture(scope='module')
def first_submit(package):
    with FakeKfpApi() as api:
        code = _submit(api, package, '--run', 'ci-abc123', '--param', 'train_steps=5000',
                       '--param', 'data_root=gs://b/other-data', '--cron', '0 0 3 * * *')
    return code, api


def test_first_submit_uploads_the_spec_as_pipeline_and_version(first_submit, package):
    code, api = first_submit
    assert code == cli.EXIT_OK
    (pipeline,) = api.pipelines.values()
    assert pipeline['display_name'] == 'chicago-taxi'
    (version,) = api.versions.values()
    assert (version['display_name'], version['pipeline_id']) == ('abc123', pipeline['pipeline_id'])
    with open(package, 'rb') as f:
        spec = f.read()
    assert api.uploaded_specs[version['pipeline_version_id']] == spec  # the compiled spec, byte for byte
    assert yaml.safe_load(spec)['pipelineInfo']['name'] == 'chicago-taxi'


def test_every_request_carries_the_token(first_submit):
    _, api = first_submit
    for request in api.requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers.get('authorization') == 'Bearer secret-token', request.path


def test_first_submit_starts_a_run_of_that_version_with_typed_parameters(first_submit):
    _, api = first_submit
    (experiment,) = api.experiments.values()
    (version,) = api.versions.values()
    (run,) = api.runs.values()
    assert experiment['display_name'] == 'taxi'
    assert run['display_name'] == 'ci-abc123'
    assert run['experiment_id'] == experiment['experiment_id']
    assert run['pipeline_version_reference']['pipeline_version_id'] == version['pipeline_version_id']
    # In the types the spec declares: KFP 2 refuses a string for a NUMBER_INTEGER parameter.
    assert run['runtime_config']['parameters'] == {'train_steps': 5000, 'data_root': 'gs://b/other-data'}


def test_first_submit_schedules_continuous_training(first_submit):
    _, api = first_submit
    (version,) = api.versions.values()
    (schedule,) = api.recurring_runs.values()
    assert schedule['display_name'] == 'chicago-taxi-continuous-training'
    assert schedule['trigger'] == {'cron_schedule': {'cron': '0 0 3 * * *'}}
    assert schedule['mode'] == 'ENABLE'
    assert int(schedule['max_concurrency']) == 1
    assert schedule['pipeline_version_reference']['pipeline_version_id'] == version['pipeline_version_id']


def test_next_push_adds_a_version_and_replaces_the_schedule(package):
    with FakeKfpApi() as api:
        assert _submit(api, package, '--interval-seconds', '3600') == cli.EXIT_OK
        first_schedule = next(iter(api.recurring_runs))
        assert _submit(api, package, '--interval-seconds', '7200', version='def456') == cli.EXIT_OK
    assert len(api.pipelines) == 1  # the pipeline exists: only a new version
    assert [v['display_name'] for v in api.versions.values()] == ['abc123', 'def456']
    assert first_schedule not in api.recurring_runs
    (schedule,) = api.recurring_runs.values()
    assert int(schedule['trigger']['periodic_schedule']['interval_second']) == 7200
    assert schedule['pipeline_version_reference']['pipeline_version_id'] == list(api.versions)[-1]


@pytest.mark.parametrize('param, message', [
    ('note=from-ci', 'declares no parameter note'),
    ('train_steps=many', 'train_steps is NUMBER_INTEGER'),
    ('min_auc', 'KEY=VALUE'),
])
def test_parameters_the_spec_cannot_take_are_refused_before_anything_is_uploaded(package, capsys, param, message):
    with FakeKfpApi() as api:
        code = _submit(api, package, '--run', 'r', '--param', param)
    assert code == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert api.requests == []


@pytest.mark.parametrize('status, message', [
    (401, 'HTTP 401, not authenticated'),
    (403, 'HTTP 403, not allowed'),
    (400, 'HTTP 400, rejected as invalid'),
])
def test_api_errors_are_reported_clearly(package, capsys, status, message):
    with FakeKfpApi(fail={'POST /apis/v2beta1/pipelines/upload': status}) as api:
        code = _submit(api, package)
    assert code == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert 'uploading the pipeline failed' in err and message in err


def test_unreachable_host_is_reported_clearly(package, capsys):
    with FakeKfpApi() as api:
        host = api.host
    code = cli.main(['submit', '--host', host, '--package', package, '--version', 'v'])
    assert code == cli.EXIT_FAILED
    assert 'cannot reach the KFP API' in capsys.readouterr().err


@pytest.mark.parametrize('kwargs, message', [
    (dict(cron='0 3 * * *'), '6 fields'),
    (dict(), 'exactly one'),
    (dict(interval_seconds=0), 'positive'),
])
def test_bad_schedules_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kubeflow_submit.Schedule('s', **kwargs)


def test_a_missing_package_says_to_compile_first(tmp_path, capsys):
    code = cli.main(['submit', '--host', 'http://127.0.0.1:9', '--package', str(tmp_path / 'none.yaml'),
                     '--version', 'v'])
    assert code == cli.EXIT_BAD_INPUT
    assert 'run `taxi-pipeline compile` first' in capsys.readouterr().err


def _caching(spec: dict) -> set:
    """Each task's cachingOptions.enableCache, as KFP's driver reads it (false when absent)."""
    return {task.get('cachingOptions', {}).get('enableCache', False) for task in spec['root']['dag']['tasks'].values()}


def test_no_cache_runs_the_uploaded_spec_with_every_task_off_the_cache(package):
    # KFP 2 has no per-run cache option (kubeflow/pipelines#10839); a version reference would
    # silently keep the compiled caching, so the run carries the spec with caching off.
    with FakeKfpApi() as api:
        assert _submit(api, package, '--run', 'fresh', '--no-cache', '--cron', '0 0 3 * * *') == cli.EXIT_OK
    with open(package) as f:
        compiled = yaml.safe_load(f)
    assert _caching(compiled) == {True}  # what a cached run would do
    (run,) = api.runs.values()
    (schedule,) = api.recurring_runs.values()
    for started in (run, schedule):
        assert _caching(started['pipeline_spec']) == {False}
        assert started['pipeline_spec']['root'] == {**compiled['root'], 'dag': started['pipeline_spec']['root']['dag']}
        assert set(started['pipeline_spec']['root']['dag']['tasks']) == set(compiled['root']['dag']['tasks'])


def test_a_cached_run_refers_to_the_uploaded_version(package):
    with FakeKfpApi() as api:
        assert _submit(api, package, '--run', 'cached') == cli.EXIT_OK
    (run,) = api.runs.values()
    assert 'pipeline_spec' not in run or run['pipeline_spec'] is None
    assert run['pipeline_version_reference']['pipeline_version_id'] == next(iter(api.versions))


RECURRING_RUN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                             'kfp', 'recurring_run.yaml')


def test_the_recurring_run_kept_as_code_is_reconciled_on_every_push(package, tmp_path, capsys):
    with open(RECURRING_RUN) as f:
        declared = yaml.safe_load(f)
    with FakeKfpApi() as api:
        assert _submit(api, package, '--recurring-run', RECURRING_RUN) == cli.EXIT_OK
        (first,) = api.recurring_runs.values()
        changed = tmp_path / 'recurring_run.yaml'
        changed.write_text(yaml.safe_dump(dict(declared, cron='0 30 4 * * *', parameters={'train_steps': 800})))
        capsys.readouterr()
        assert _submit(api, package, '--recurring-run', str(changed), version='def456') == cli.EXIT_OK
    (schedule,) = api.recurring_runs.values()  # replaced, not added
    assert first['recurring_run_id'] not in api.recurring_runs
    assert first['trigger'] == {'cron_schedule': {'cron': declared['cron']}}
    assert first['runtime_config']['parameters'] == declared['parameters']
    assert schedule['display_name'] == declared['name'] and schedule['trigger'] == {
        'cron_schedule': {'cron': '0 30 4 * * *'}}
    assert schedule['runtime_config']['parameters'] == {'train_steps': 800}
    assert schedule['pipeline_version_reference']['pipeline_version_id'] == list(api.versions)[-1]
    experiment = api.experiments[schedule['experiment_id']]
    assert experiment['display_name'] == declared['experiment']
    out = capsys.readouterr().out
    assert "cron '0 0 3 * * *' -> '0 30 4 * * *'" in out
    assert "parameters {'train_steps': 5000} -> {'train_steps': 800}" in out


@pytest.mark.parametrize('content, message', [
    ({'name': 'x', 'experiment': 'e', 'cron': '0 3 * * *'}, 'KFP cron has 6 fields'),
    ({'name': 'x', 'experiment': 'e', 'cron': '0 0 3 * * *', 'parameters': {'learning_rate': 1}},
     'declares no parameter learning_rate'),
    ({'name': 'x', 'experiment': 'e', 'cron': '0 0 3 * * *', 'schedule': 'nightly'}, 'unknown key(s) schedule'),
    ({'experiment': 'e', 'cron': '0 0 3 * * *'}, 'name is required'),
])
def test_a_recurring_run_file_that_is_wrong_uploads_nothing_and_says_what(package, tmp_path, capsys, content, message):
    path = tmp_path / 'recurring_run.yaml'
    path.write_text(yaml.safe_dump(content))
    with FakeKfpApi() as api:
        assert _submit(api, package, '--recurring-run', str(path)) == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err and api.requests == []
