"""cloudbuild.yaml parses, and every step's command exists in this repo."""

import os
import re
import shlex

import pytest
import yaml

from pipeline import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def build():
    with open(os.path.join(REPO, 'cloudbuild.yaml')) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def make_targets():
    with open(os.path.join(REPO, 'Makefile')) as f:
        return set(re.findall(r'^([a-z][\w-]*):', f.read(), re.M))


def _substitute(text, build):
    values = dict(build['substitutions'], SHORT_SHA='abc1234', PROJECT_ID='example-project')
    for _ in range(3):  # substitutions may refer to each other
        text = re.sub(r'\$\{(\w+)\}', lambda m: values[m.group(1)], text)
    return text


def test_steps_run_in_the_ci_cd_order(build):
    assert [s['id'] for s in build['steps']] == ['test', 'e2e-small', 'build-image', 'push-image', 'compile',
                                                  'upload']


def test_make_steps_name_existing_targets(build, make_targets):
    for step in build['steps']:
        if step.get('entrypoint') == 'make':
            assert step['args'][0] in make_targets, step['id']
    assert {'test', 'e2e-small', 'compile', 'ci-local', 'run'} <= make_targets


def test_every_substitution_used_is_declared(build):
    with open(os.path.join(REPO, 'cloudbuild.yaml')) as f:
        used = set(re.findall(r'\$\{(_\w+)\}', f.read()))
    assert used <= set(build['substitutions'])


def test_image_is_built_pushed_and_compiled_with_the_commit_tag(build):
    steps = {s['id']: s for s in build['steps']}
    tag = '${_IMAGE}:${SHORT_SHA}'
    assert tag in steps['build-image']['args']
    assert os.path.isfile(os.path.join(REPO, 'Dockerfile'))
    assert f'PIPELINE_IMAGE={tag}' in steps['compile']['args']
    assert tag in build['images']


def test_upload_step_is_a_valid_submit_command(build):
    step = next(s for s in build['steps'] if s['id'] == 'upload')
    command = shlex.split(_substitute(step['args'][1], build))
    assert command[0] == '.venv/bin/taxi-pipeline'
    args = cli._parser().parse_args(command[1:])
    assert args.command == 'submit' and args.version == 'abc1234'
    assert args.package == os.path.join('kfp', 'build', 'chicago_taxi_pipeline.yaml')
    # The token reaches the CLI through the secret the step declares.
    assert step['secretEnv'] == ['KFP_TOKEN']
    assert build['availableSecrets']['secretManager'][0]['env'] == 'KFP_TOKEN'


def test_submit_args_substitution_accepts_run_and_schedule(build):
    step = next(s for s in build['steps'] if s['id'] == 'upload')
    build = dict(build, substitutions=dict(build['substitutions'],
                                           _SUBMIT_ARGS='--run ci-abc --cron "0 0 3 * * *"'))
    args = cli._parser().parse_args(shlex.split(_substitute(step['args'][1], build))[1:])
    assert args.run == 'ci-abc' and args.cron == '0 0 3 * * *'
