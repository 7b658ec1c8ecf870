"""On Kubeflow, a due trigger starts a run of the newest uploaded pipeline version
through the kfp Client, named for its trigger, with the spec's typed parameters."""

import pytest
import yaml

from cli import main as cli
from pipeline import data, kubeflow_compile
from pipeline.config import PipelineConfig
from support.kfp_api_server import FakeKfpApi

pytestmark = pytest.mark.unit


@pytest.fixture(scope='module')
def package(tmp_path_factory):
    config = PipelineConfig.for_kubeflow('gcr.io/p/chicago-taxi-pipeline:abc123', 'gs://b/root', 'gs://b/data',
                                         'gs://b/serving')
    yaml_path, _ = kubeflow_compile.compile_pipeline(config, str(tmp_path_factory.mktemp('spec')))
    return yaml_path


def _schedule_once(api, package, workspace, *extra):
    return cli.main(['schedule', '--once', '--workspace', str(workspace), '--no-alert-trigger', '--kubeflow-host',
                     api.host, '--package', package, *extra])


def test_a_new_span_starts_a_run_of_the_newest_uploaded_version(package, tmp_path, capsys):
    data.prepare_sample(str(tmp_path / 'data'), rows=10)
    with FakeKfpApi() as api:
        for version in ('v1', 'v2'):  # what CI uploads on every push
            assert cli.main(['submit', '--host', api.host, '--package', package, '--version', version]) == 0
        assert _schedule_once(api, package, tmp_path, '--param', 'train_steps=5000') == 0
    (run,) = api.runs.values()
    newest = next(v for v in api.versions.values() if v['display_name'] == 'v2')
    assert run['pipeline_version_reference']['pipeline_version_id'] == newest['pipeline_version_id']
    assert run['display_name'].startswith('chicago-taxi-new_span-')
    assert run['runtime_config']['parameters'] == {'train_steps': 5000}
    assert 'new_span {"last_trained_span": null, "span": 1}' in capsys.readouterr().out


def test_a_trigger_with_nothing_uploaded_fails_to_start_and_says_why(package, tmp_path, capsys):
    data.prepare_sample(str(tmp_path / 'data'), rows=10)
    with FakeKfpApi() as api:
        assert _schedule_once(api, package, tmp_path) == 1
    assert api.runs == {}
    assert 'upload it first' in capsys.readouterr().out


def test_parameters_the_spec_does_not_declare_are_refused(package, tmp_path, capsys):
    data.prepare_sample(str(tmp_path / 'data'), rows=10)
    with FakeKfpApi() as api:
        assert cli.main(['submit', '--host', api.host, '--package', package, '--version', 'v1']) == 0
        assert _schedule_once(api, package, tmp_path, '--param', 'learning_rate=0.1') == 1
    assert api.runs == {}
    assert 'learning_rate' in capsys.readouterr().out


def test_no_cache_triggers_run_the_newest_uploaded_versions_spec_with_caching_off(package, tmp_path):
    data.prepare_sample(str(tmp_path / 'data'), rows=10)
    other = tmp_path / 'newer.yaml'
    with open(package) as f:
        newer = yaml.safe_load(f)
    newer['pipelineInfo']['description'] = 'uploaded by a later push'
    other.write_text(yaml.safe_dump(newer))
    with FakeKfpApi() as api:
        assert cli.main(['submit', '--host', api.host, '--package', package, '--version', 'v1']) == 0
        assert cli.main(['submit', '--host', api.host, '--package', str(other), '--version', 'v2']) == 0
        assert _schedule_once(api, package, tmp_path, '--kubeflow-no-cache') == 0
    (run,) = api.runs.values()
    spec = run['pipeline_spec']
    assert spec['pipelineInfo']['description'] == 'uploaded by a later push'  # the newest version, not --package
    # As KFP's driver reads it: false when absent (the SDK writes proto3 JSON, which omits false).
    tasks = spec['root']['dag']['tasks'].values()
    assert {t.get('cachingOptions', {}).get('enableCache', False) for t in tasks} == {False}
