"""cloudbuild.yaml parses, its steps run in a safe order, and its commands do what CI needs."""

import os
import re
import shlex
import subprocess

import pytest
import yaml

from cli import main as cli
from support.kfp_api_server import FakeKfpApi

pytestmark = pytest.mark.unit


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def build():
    with open(os.path.join(REPO, 'cloudbuild.yaml')) as f:
        return yaml.safe_load(f)


def _substitute(text, build, **extra):
    values = dict(build['substitutions'], SHORT_SHA='abc1234', PROJECT_ID='example-project', **extra)
    for _ in range(3):  # substitutions may refer to each other
        text = re.sub(r'\$\{(\w+)\}', lambda m: values[m.group(1)], text)
    return text


def _steps(build):
    return {s['id']: s for s in build['steps']}


def test_nothing_ships_before_the_tests_pass_and_the_image_exists(build):
    order = [s['id'] for s in build['steps']]
    assert order.index('test') < order.index('build-image') < order.index('push-image')
    assert order.index('push-image') < order.index('compile') < order.index('upload')


@pytest.mark.parametrize('step_id', ['test', 'e2e-small', 'compile'])
def test_make_steps_are_targets_make_can_run(build, step_id):
    step = _steps(build)[step_id]
    assert step['entrypoint'] == 'make'
    dry_run = subprocess.run(['make', '-n'] + step['args'], cwd=REPO, capture_output=True, text=True)
    assert dry_run.returncode == 0, dry_run.stderr


def test_every_substitution_used_is_declared(build):
    with open(os.path.join(REPO, 'cloudbuild.yaml')) as f:
        used = set(re.findall(r'\$\{(_\w+)\}', f.read()))
    assert used <= set(build['substitutions'])


def test_the_spec_names_the_image_this_build_pushes(build):
    steps = _steps(build)
    args = steps['build-image']['args']
    tags = [_substitute(args[i + 1], build) for i, arg in enumerate(args) if arg == '-t']
    commit_tag = next(tag for tag in tags if tag.endswith(':abc1234'))
    compile_settings = dict(arg.split('=', 1) for arg in steps['compile']['args'][1:])
    assert _substitute(compile_settings['PIPELINE_IMAGE'], build) == commit_tag
    assert commit_tag in [_substitute(image, build) for image in build['images']]


def _run_upload_step(build, monkeypatch, submit_args=''):
    step = _steps(build)['upload']
    assert step['secretEnv'] == ['KFP_TOKEN']  # the token reaches the CLI through this secret
    assert build['availableSecrets']['secretManager'][0]['env'] == 'KFP_TOKEN'
    monkeypatch.chdir(REPO)
    monkeypatch.setenv('KFP_TOKEN', 'from-secret-manager')
    with FakeKfpApi() as api:
        command = shlex.split(_substitute(step['args'][1], build, _KFP_HOST=api.host, _SUBMIT_ARGS=submit_args))
        assert os.path.basename(command[0]) == 'taxi-pipeline'
        code = cli.main(command[1:])
    return code, api


def test_upload_step_uploads_the_compiled_spec_as_the_commits_version(build, monkeypatch):
    code, api = _run_upload_step(build, monkeypatch)
    assert code == cli.EXIT_OK
    assert [v['display_name'] for v in api.versions.values()] == ['abc1234']
    # ... and reconciles the recurring run kept as code to it.
    with open(os.path.join(REPO, 'kfp', 'recurring_run.yaml')) as f:
        declared = yaml.safe_load(f)
    (schedule,) = api.recurring_runs.values()
    assert schedule['display_name'] == declared['name'] and schedule['trigger'] == {
        'cron_schedule': {'cron': declared['cron']}}
    assert schedule['pipeline_version_reference']['pipeline_version_id'] == next(iter(api.versions))
    assert all({k.lower(): v for k, v in r.headers.items()}.get('authorization') == 'Bearer from-secret-manager'
               for r in api.requests)


def test_submit_args_substitution_starts_a_run(build, monkeypatch):
    code, api = _run_upload_step(build, monkeypatch, '--run ci-abc --no-cache')
    assert code == cli.EXIT_OK
    assert [r['display_name'] for r in api.runs.values()] == ['ci-abc']
    assert len(api.recurring_runs) == 1


def test_the_image_tells_every_model_it_trains_which_commit_and_image_it_is(build, monkeypatch):
    """CI's build arguments become the environment the pipeline's code version is read from."""
    from dockerfile_parse import DockerfileParser
    from components import code_version
    args = _steps(build)['build-image']['args']
    build_args = dict(_substitute(args[i + 1], build, COMMIT_SHA='abc1234def').split('=', 1)
                      for i, arg in enumerate(args) if arg == '--build-arg')
    envs = DockerfileParser(path=os.path.join(REPO, 'Dockerfile'), build_args=build_args).envs
    for name in (code_version.COMMIT_VARIABLE, code_version.IMAGE_VARIABLE):
        monkeypatch.setenv(name, envs.get(name, ''))
    found = code_version.current()
    tags = [_substitute(args[i + 1], build) for i, arg in enumerate(args) if arg == '-t']
    assert found.commit == 'abc1234def' and found.image in tags and found.image.endswith(':abc1234')
