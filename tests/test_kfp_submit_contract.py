"""Contract test: the submit command against a loopback server speaking the
KFP v2beta1 REST paths the kfp SDK's Client uses."""

import pytest
import yaml

from pipeline import cli, kfp_submit

from kfp_api_server import API, FakeKfpApi


@pytest.fixture(scope='module')
def package(tmp_path_factory):
    from pipeline import kubeflow
    settings = kubeflow.KubeflowSettings(image='gcr.io/p/chicago-taxi-pipeline:abc123', pipeline_root='gs://b/root',
                                         data_root='gs://b/data', serving_model_dir='gs://b/serving')
    yaml_path, _ = kubeflow.compile_pipeline(settings, str(tmp_path_factory.mktemp('spec')))
    return yaml_path


def _submit(api, package, *extra):
    return cli.main(['submit', '--host', api.host, '--token', 'secret-token', '--package', package,
                     '--version', 'abc123', '--experiment', 'taxi'] + list(extra))


def test_first_submit_uploads_runs_and_schedules(package, capsys):
    with FakeKfpApi() as api:
        code = _submit(api, package, '--run', 'ci-abc123', '--param', 'note=from-ci', '--cron', '0 0 3 * * *')
    assert code == cli.EXIT_OK
    assert api.calls() == [
        f'GET {API}/healthz',
        f'GET {API}/pipelines',
        f'POST {API}/pipelines/upload',
        f'POST {API}/pipelines/upload_version',
        f'GET {API}/experiments',
        f'GET {API}/experiments',
        f'POST {API}/experiments',
        f'POST {API}/runs',
        f'GET {API}/recurringruns',
        f'POST {API}/recurringruns',
    ]
    upload = api.requests[2]
    assert upload.query['name'] == ['chicago-taxi']
    with open(package, 'rb') as f:
        assert upload.uploaded == f.read()  # the compiled spec, byte for byte
    assert yaml.safe_load(upload.uploaded)['pipelineInfo']['name'] == 'chicago-taxi'
    assert api.requests[3].query == {'name': ['abc123'], 'pipelineid': ['pipeline-1']}
    for request in api.requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers.get('authorization') == 'Bearer secret-token', request.path

    run = api.requests[7].json
    assert run['display_name'] == 'ci-abc123'
    assert run['experiment_id'] == 'experiment-3'
    assert run['pipeline_version_reference'] == {'pipeline_id': 'pipeline-1', 'pipeline_version_id': 'version-2'}
    assert run['runtime_config']['parameters'] == {'note': 'from-ci'}

    recurring = api.requests[9].json
    assert recurring['display_name'] == 'chicago-taxi-continuous-training'
    assert recurring['trigger'] == {'cron_schedule': {'cron': '0 0 3 * * *'}}
    assert recurring['mode'] == 'ENABLE'
    assert recurring['max_concurrency'] == '1' or recurring['max_concurrency'] == 1
    assert recurring['pipeline_version_reference']['pipeline_version_id'] == 'version-2'
    assert 'Started run ci-abc123' in capsys.readouterr().out


def test_next_push_adds_a_version_and_replaces_the_schedule(package):
    with FakeKfpApi() as api:
        assert _submit(api, package, '--interval-seconds', '3600') == cli.EXIT_OK
        first_schedule = next(iter(api.recurring_runs))
        del api.requests[:]
        assert cli.main(['submit', '--host', api.host, '--package', package, '--version', 'def456',
                         '--experiment', 'taxi', '--interval-seconds', '7200']) == cli.EXIT_OK
    assert f'POST {API}/pipelines/upload' not in api.calls()  # the pipeline exists: only a new version
    assert f'DELETE {API}/recurringruns/{first_schedule}' in api.calls()
    assert len(api.recurring_runs) == 1
    (schedule,) = api.recurring_runs.values()
    assert schedule['trigger'] == {'periodic_schedule': {'interval_second': '7200'}} or \
        schedule['trigger'] == {'periodic_schedule': {'interval_second': 7200}}
    assert [v['display_name'] for v in api.versions.values()] == ['abc123', 'def456']


@pytest.mark.parametrize('status, message', [
    (401, 'HTTP 401, not authenticated'),
    (403, 'HTTP 403, not allowed'),
    (400, 'HTTP 400, rejected as invalid'),
])
def test_api_errors_are_reported_clearly(package, capsys, status, message):
    with FakeKfpApi(fail={f'POST {API}/pipelines/upload': status}) as api:
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


def test_bad_schedules_and_missing_packages_are_rejected(tmp_path, capsys):
    with pytest.raises(ValueError, match='6 fields'):
        kfp_submit.Schedule('s', cron='0 3 * * *')
    with pytest.raises(ValueError, match='exactly one'):
        kfp_submit.Schedule('s')
    code = cli.main(['submit', '--host', 'http://127.0.0.1:9', '--package', str(tmp_path / 'none.yaml'),
                     '--version', 'v'])
    assert code == cli.EXIT_BAD_INPUT
    assert 'run `taxi-pipeline compile` first' in capsys.readouterr().err
