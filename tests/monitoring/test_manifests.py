"""The monitor's CronJob runs a pass the CLI accepts, over what the gateway logs
and the Pusher pushes, in the pipeline image, never two at once, and an alert
fails its Job without a retry. Parsers only: no cluster, no network."""

import os

import pytest
import yaml

from cli import main as cli
from monitoring import commands as monitoring_commands
from support.repo_files import REPO, kustomized, makefile_default

pytestmark = pytest.mark.unit


def _docs(*parts):
    with open(os.path.join(*parts)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


@pytest.fixture(scope='module')
def rendered():
    return kustomized('monitoring')


@pytest.fixture(scope='module')
def cronjob(rendered):
    (job,) = [d for (kind, _), d in rendered.items() if kind == 'CronJob']
    return job


@pytest.fixture(scope='module')
def pod(cronjob):
    return cronjob['spec']['jobTemplate']['spec']['template']['spec']


def _parsed(container):
    """The container's command line as `taxi-pipeline` parses it."""
    assert container['command'][0] == 'taxi-pipeline'
    return cli.parser().parse_args(container['command'][1:] + container['args'])


@pytest.fixture(scope='module')
def monitor_args(pod):
    (container,) = pod['containers']
    return _parsed(container)


@pytest.fixture(scope='module')
def gateway_args():
    (deployment,) = [d for d in _docs(REPO, 'serving', 'k8s', 'deployment.yaml') if d['kind'] == 'Deployment']
    (gateway,) = [c for c in deployment['spec']['template']['spec']['containers'] if c['name'] == 'gateway']
    return _parsed(gateway)


def test_the_job_runs_the_monitor_command_the_cli_accepts(monitor_args):
    assert monitor_args.handler is monitoring_commands.monitor_command
    assert monitoring_commands.parse_window(monitor_args.window) == 3600
    assert monitor_args.align  # whenever the pod starts, the pass judges the hour that ended


def test_it_reads_what_the_gateway_writes_and_the_pusher_pushes(monitor_args, gateway_args):
    assert monitor_args.request_log_dir == gateway_args.request_log_dir
    assert monitor_args.feedback_dir == gateway_args.feedback_dir
    assert monitor_args.model_base_path == makefile_default('SERVING_MODEL_DIR')
    assert monitor_args.report_dir.startswith(makefile_default('PIPELINE_BUCKET').rstrip('/') + '/')


def test_it_records_in_the_clusters_ml_metadata(monitor_args):
    host, _, port = monitor_args.metadata_grpc.rpartition(':')
    assert host.startswith('metadata-grpc-service') and port.isdigit()


def test_it_runs_in_the_pipeline_image_as_its_own_account(pod, rendered):
    (container,) = pod['containers']
    assert container['image'] == makefile_default('PIPELINE_IMAGE')
    assert ('ServiceAccount', pod['serviceAccountName']) in rendered


def test_passes_never_overlap_and_an_alert_is_not_retried(cronjob, pod):
    assert cronjob['spec']['concurrencyPolicy'] == 'Forbid'
    assert cronjob['spec']['jobTemplate']['spec']['backoffLimit'] == 0
    assert pod['restartPolicy'] == 'Never'


def test_it_runs_hourly_after_the_gateway_completed_the_hours_log_files(cronjob):
    minute, hour, *rest = cronjob['spec']['schedule'].split()
    # The gateway completes a log file within a minute (telemetry.RequestLogger's rotation).
    assert minute.isdigit() and 2 <= int(minute) < 30
    assert hour == '*' and rest == ['*', '*', '*']


def test_every_resource_carries_the_app_label(rendered):
    assert all(d['metadata']['labels']['app'] == 'chicago-taxi-monitor' for d in rendered.values())
