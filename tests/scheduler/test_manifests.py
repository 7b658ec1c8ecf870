"""The trigger CronJob runs one check the CLI accepts, against the cluster's KFP API and
ML Metadata, over the data root the pipeline reads, with the spec the image carries."""

import os

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from cli import main as cli
from pipeline.config import IMAGE_PROJECT_DIR
from scheduler import commands as scheduler_commands
from support.repo_files import REPO, kustomized, makefile_default

pytestmark = pytest.mark.unit


@pytest.fixture(scope='module')
def rendered():
    return kustomized('scheduler')


@pytest.fixture(scope='module')
def cronjob(rendered):
    (job,) = [d for (kind, _), d in rendered.items() if kind == 'CronJob']
    return job


@pytest.fixture(scope='module')
def container(cronjob):
    (container,) = cronjob['spec']['jobTemplate']['spec']['template']['spec']['containers']
    return container


@pytest.fixture(scope='module')
def args(container):
    return cli.parser().parse_args(container['command'][1:] + container['args'])


def test_it_runs_one_check_of_the_triggers_on_kubeflow(args, cronjob):
    assert args.handler is scheduler_commands.schedule_command and args.once
    assert args.kubeflow_host and args.metadata_grpc.startswith('metadata-grpc-service')
    assert cronjob['spec']['concurrencyPolicy'] == 'Forbid'


def test_it_watches_the_data_root_the_pipeline_reads_and_passes_it_on(args):
    assert args.data_root == makefile_default('DATA_ROOT')
    assert dict(p.split('=', 1) for p in args.param) == {'data_root': makefile_default('DATA_ROOT')}


def test_the_spec_it_checks_parameters_against_is_in_the_image(args, container):
    assert container['image'] == makefile_default('PIPELINE_IMAGE')
    assert args.package == f'{IMAGE_PROJECT_DIR}/kfp/chicago_taxi_pipeline.yaml'
    copied = [i['value'].split()[0] for i in DockerfileParser(path=os.path.join(REPO, 'Dockerfile')).structure
              if i['instruction'] == 'COPY']
    assert 'kfp/' in copied and os.path.isfile(os.path.join(REPO, 'kfp', 'chicago_taxi_pipeline.yaml'))


def test_every_resource_carries_the_app_label(rendered):
    assert all(d['metadata']['labels']['app'] == 'chicago-taxi-triggers' for d in rendered.values())
