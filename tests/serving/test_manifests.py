"""The TF Serving deployment artifacts in serving/ agree with each other, with
the serving contract in serving/__init__.py and with where the Pusher writes;
the gateway in front of TF Serving is wired to it and to the bucket; every
config parses as the proto TF Serving reads it into; the label tool edits
models.config safely. Parsers only: no Docker, no cluster, no network."""

import glob
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from foundation import atomic_file
import serving
from cli import main as cli
from pipeline.config import PIPELINE_NAME, PipelineConfig
from serving import labels, protos, traffic
from support.repo_files import REPO, kustomized, makefile_default

pytestmark = pytest.mark.unit


# The served model's name is the pipeline's: the last directory of the Pusher's destination.
MODEL_NAME = PIPELINE_NAME
SERVING = os.path.join(REPO, 'serving')
CONFIG_DIR = os.path.join(SERVING, 'config')
MOUNT = '/config'


# TF Serving's protos that tensorflow-serving-api does not ship (see serving.protos).
MonitoringConfig, BatchingParameters = protos.MonitoringConfig, protos.BatchingParameters


def _parse(name, message_class):
    with open(os.path.join(CONFIG_DIR, name)) as f:
        return text_format.Parse(f.read(), message_class())


# --- fixtures ----------------------------------------------------------------

def _load_yaml(*parts):
    with open(os.path.join(SERVING, *parts)) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


@pytest.fixture(scope='module')
def kustomization():
    (doc,) = _load_yaml('kustomization.yaml')
    return doc


@pytest.fixture(scope='module')
def resources(kustomization):
    """Every resource the kustomization lists, by (kind, name)."""
    docs = [d for path in kustomization['resources'] for d in _load_yaml(path)]
    by_key = {(d['kind'], d['metadata']['name']): d for d in docs}
    assert len(by_key) == len(docs), 'duplicate resource'
    return by_key


@pytest.fixture(scope='module')
def deployment(resources):
    (deploy,) = [d for (kind, _), d in resources.items() if kind == 'Deployment']
    return deploy


@pytest.fixture(scope='module')
def container(deployment):
    """TF Serving's container."""
    (c,) = [c for c in deployment['spec']['template']['spec']['containers']
            if c['command'] == ['tensorflow_model_server']]
    return c


@pytest.fixture(scope='module')
def gateway(deployment, container):
    """The gateway's container: every other one."""
    (c,) = [c for c in deployment['spec']['template']['spec']['containers'] if c is not container]
    return c


@pytest.fixture(scope='module')
def gateway_args(gateway):
    """The gateway's command line as `taxi-pipeline` parses it: it must be one the CLI accepts."""
    (script,) = [e for e in importlib.metadata.distribution('taxi-tfx-pipeline').entry_points
                 if e.group == 'console_scripts']
    assert gateway['command'][0] == script.name  # installed in the pipeline image by `pip install -e`
    return cli.parser().parse_args(gateway['command'][1:] + gateway['args'])


def _flags(args):
    """{'--port': '8500', ...} from ['--port=8500', ...]; every arg must be --flag=value."""
    flags = {}
    for arg in args:
        match = re.fullmatch(r'(--\w+)=(.+)', arg)
        assert match, f'not a --flag=value argument: {arg!r}'
        assert match.group(1) not in flags, f'{match.group(1)} given twice'
        flags[match.group(1)] = match.group(2)
    return flags


@pytest.fixture(scope='module')
def flags(container):
    assert container['command'] == ['tensorflow_model_server']
    return _flags(container['args'])


@pytest.fixture(scope='module')
def compose():
    (doc,) = _load_yaml('docker-compose.yaml')
    (service,) = doc['services'].values()
    return service


# --- parsing -------------------------------------------------------------------

def test_every_yaml_file_parses():
    paths = glob.glob(os.path.join(SERVING, '**', '*.yaml'), recursive=True)
    assert len(paths) >= 6
    for path in paths:
        with open(path) as f:
            assert [d for d in yaml.safe_load_all(f) if d is not None], path


def test_config_files_parse_as_tf_serving_protos():
    models = _parse('models.config', model_server_config_pb2.ModelServerConfig)
    assert len(models.model_config_list.config) == 1
    monitoring = _parse('monitoring.config', MonitoringConfig)
    assert monitoring.prometheus_config.enable
    batching = _parse('batching.config', BatchingParameters)
    for field in ('max_batch_size', 'batch_timeout_micros', 'max_enqueued_batches', 'num_batch_threads'):
        assert batching.HasField(field) and getattr(batching, field).value > 0, field
    assert not batching.pad_variable_length_inputs


def test_batching_proto_rejects_what_tf_serving_rejects():
    # The transcription is strict enough to catch the common mistakes.
    for bad in ('max_batch_size: 256', 'max_batch_size { value: "x" }', 'max_batch_sizes { value: 1 }'):
        with pytest.raises(text_format.ParseError):
            text_format.Parse(bad, BatchingParameters())


# --- the ConfigMap and the Deployment --------------------------------------------

def test_configmap_generator_holds_every_config_file_under_a_fixed_name(kustomization):
    (generator,) = kustomization['configMapGenerator']
    files = sorted(os.path.join(SERVING, p) for p in generator['files'])
    assert files == sorted(glob.glob(os.path.join(CONFIG_DIR, '*')))
    # A hashed name would restart the pods on a label change instead of letting
    # TF Serving's config polling pick it up.
    assert kustomization['generatorOptions']['disableNameSuffixHash'] is True


def test_deployment_reads_exactly_the_generated_files_from_the_mount(kustomization, deployment, container, flags,
                                                                     gateway_args):
    (generator,) = kustomization['configMapGenerator']
    (volume,) = [v for v in deployment['spec']['template']['spec']['volumes'] if 'configMap' in v]
    assert volume['configMap']['name'] == generator['name']
    (mount,) = container['volumeMounts']
    assert mount['name'] == volume['name'] and mount['mountPath'] == MOUNT
    # Files under a subPath mount never see ConfigMap updates.
    assert 'subPath' not in mount
    referenced = {v for v in flags.values() if v.startswith(MOUNT + '/')}
    # TF Serving reads every generated file but the canary split, which is the gateway's.
    assert referenced | {gateway_args.traffic_config} == {f'{MOUNT}/{os.path.basename(p)}' for p in generator['files']}
    assert flags['--model_config_file'] == f'{MOUNT}/models.config'
    assert flags['--batching_parameters_file'] == f'{MOUNT}/batching.config'
    assert flags['--monitoring_config_file'] == f'{MOUNT}/monitoring.config'
    assert flags['--enable_batching'] == 'true'
    # Label changes arrive only through config polling.
    assert int(flags['--model_config_file_poll_wait_seconds']) > 0


def test_labelled_config_can_start(flags):
    # models.config has labels; a starting pod applies them before its versions load.
    assert set(labels.read_labels(os.path.join(CONFIG_DIR, 'models.config'))) == {serving.STABLE_LABEL,
                                                                                  serving.CANARY_LABEL}
    assert flags['--allow_version_labels_for_unavailable_models'] == 'true'


def test_the_gateway_splits_traffic_from_the_mounted_configmap(kustomization, deployment, gateway, gateway_args):
    # The split lives in the gateway: TF Serving alone would send every unaddressed
    # request to the latest version, the canary.
    (generator,) = kustomization['configMapGenerator']
    assert gateway_args.traffic_config == f'{MOUNT}/{traffic.TRAFFIC_FILE}'
    assert f'config/{traffic.TRAFFIC_FILE}' in generator['files']
    volumes = {v['name']: v for v in deployment['spec']['template']['spec']['volumes']}
    (mount,) = [m for m in gateway['volumeMounts'] if m['mountPath'] == MOUNT]
    assert volumes[mount['name']]['configMap']['name'] == generator['name']
    assert 'subPath' not in mount  # or a new split would never reach the running gateway
    # The committed split parses, and sends nothing to a canary until the registry says so.
    (model,) = _parse('models.config', model_server_config_pb2.ModelServerConfig).model_config_list.config
    assert traffic.read_split(os.path.join(CONFIG_DIR, traffic.TRAFFIC_FILE)) == {model.name: 0.0}


def _ports(c):
    return {p['name']: p['containerPort'] for p in c['ports']}


def test_ports_match_the_serving_contract(resources, deployment, gateway, gateway_args):
    # Clients reach the gateway on TF Serving's standard ports.
    assert (gateway_args.grpc_port, gateway_args.rest_port) == (serving.GRPC_PORT, serving.REST_PORT)
    assert gateway_args.host == '0.0.0.0'  # the Service reaches it on the pod's address
    ports = _ports(gateway)
    assert ports == {'grpc': serving.GRPC_PORT, 'http': serving.REST_PORT}

    services = [d for (kind, _), d in resources.items() if kind == 'Service']
    assert {s['spec'].get('type', 'ClusterIP') for s in services} == {'ClusterIP'}
    pod_labels = deployment['spec']['template']['metadata']['labels']
    for service in services:
        assert service['spec']['selector'].items() <= pod_labels.items(), service['metadata']['name']
        for port in service['spec']['ports']:
            target = port['targetPort']
            assert ports.get(target, target) == port['port'] == ports[port['name']], port
    main = resources[('Service', 'chicago-taxi-serving')]
    assert {p['name']: p['port'] for p in main['spec']['ports']} == ports


def test_the_gateway_forwards_to_tf_servings_grpc_port_in_the_pod(resources, gateway, gateway_args, container, flags):
    host, port = gateway_args.upstream.rsplit(':', 1)
    assert host in ('localhost', '127.0.0.1')  # the same pod, over loopback
    assert int(port) == int(flags['--port'])
    tf_serving_ports = _ports(container)
    assert tf_serving_ports == {'tfs-grpc': int(flags['--port']), 'tfs-http': int(flags['--rest_api_port'])}
    # No port of the pod twice, and no Service bypasses the gateway.
    assert not set(tf_serving_ports.values()) & set(_ports(gateway).values())
    assert not set(tf_serving_ports) & set(_ports(gateway))
    targets = {p['targetPort'] for (kind, _), d in resources.items() if kind == 'Service' for p in d['spec']['ports']}
    assert not targets & (set(tf_serving_ports) | set(tf_serving_ports.values()))


def test_the_gateway_logs_and_takes_feedback_under_the_pipeline_bucket(gateway, gateway_args):
    assert gateway['image'] == makefile_default('PIPELINE_IMAGE')  # the image that has this project
    bucket = makefile_default('PIPELINE_BUCKET').rstrip('/') + '/'
    logs, feedback = gateway_args.request_log_dir, gateway_args.feedback_dir
    assert logs.startswith(bucket) and feedback.startswith(bucket)
    assert logs.rstrip('/') != feedback.rstrip('/')
    for path in (logs, feedback):  # nothing written among the models TF Serving watches
        assert not path.startswith(makefile_default('SERVING_MODEL_DIR'))
    # Missing-value markers are read where TF Serving loads the model, under the name clients use.
    (model,) = _parse('models.config', model_server_config_pb2.ModelServerConfig).model_config_list.config
    assert gateway_args.model_base_path == model.base_path
    assert (gateway_args.model_name or os.path.basename(gateway_args.model_base_path.rstrip('/'))) == model.name


def _patience(probe):  # seconds of failures before the probe acts
    return probe.get('periodSeconds', 10) * probe.get('failureThreshold', 3)


def test_tf_serving_probes_ask_for_the_model_on_its_rest_port(container, flags):
    probes = {k: container[k] for k in ('startupProbe', 'readinessProbe', 'livenessProbe') if k in container}
    assert {'readinessProbe', 'livenessProbe'} <= probes.keys()
    ports = _ports(container)
    for name, probe in probes.items():
        port = probe['httpGet']['port']
        assert ports.get(port, port) == int(flags['--rest_api_port']), name
        assert probe['httpGet']['path'] == f'/v1/models/{MODEL_NAME}', name
    assert _patience(probes['livenessProbe']) > _patience(probes['readinessProbe'])


def test_the_gateway_is_ready_through_tf_serving_and_alive_on_its_own(gateway):
    ports = _ports(gateway)
    readiness, liveness = gateway['readinessProbe']['httpGet'], gateway['livenessProbe']['httpGet']
    for probe in (readiness, liveness):
        assert ports.get(probe['port'], probe['port']) == serving.REST_PORT
    # Ready only when TF Serving answers for the model (the gateway forwards status calls) ...
    assert readiness['path'] == f'/v1/models/{MODEL_NAME}'
    # ... but alive whatever TF Serving does: the gateway's own metrics, never forwarded.
    assert liveness['path'] == serving.METRICS_PATH
    assert _patience(gateway['livenessProbe']) > _patience(gateway['readinessProbe'])


def test_tf_serving_outlives_the_gateway_on_shutdown(deployment, gateway, container, gateway_args):
    def delay(c):
        command = c['lifecycle']['preStop']['exec']['command']
        assert command[0] == 'sleep'
        return int(command[1])

    # The gateway gets SIGTERM after its preStop delay and then drains (serving/gateway.py stop):
    # TF Serving must still answer until the gateway's last forwarded call is done.
    assert delay(gateway) + gateway_args.drain_seconds < delay(container)
    assert deployment['spec']['template']['spec']['terminationGracePeriodSeconds'] > delay(container)


def test_prometheus_annotations_point_at_the_monitoring_endpoint(deployment, gateway, gateway_args):
    annotations = deployment['spec']['template']['metadata']['annotations']
    monitoring = _parse('monitoring.config', MonitoringConfig)
    assert annotations['prometheus.io/scrape'] == 'true'
    # The gateway's metrics: requests by the version that answered, and the upstream's errors.
    assert int(annotations['prometheus.io/port']) == gateway_args.rest_port == _ports(gateway)['http']
    assert annotations['prometheus.io/path'] == monitoring.prometheus_config.path == serving.METRICS_PATH


def test_rollout_never_drops_below_the_serving_replicas(deployment):
    assert deployment['spec']['strategy']['rollingUpdate']['maxUnavailable'] == 0
    assert 'replicas' not in deployment['spec']  # the HPA owns the replica count


def test_the_autoscaler_scales_the_deployment_on_cpu(resources, deployment):
    (hpa,) = [d for (kind, _), d in resources.items() if kind == 'HorizontalPodAutoscaler']
    assert hpa['apiVersion'] == 'autoscaling/v2'
    target = hpa['spec']['scaleTargetRef']
    assert (target['kind'], target['name']) == ('Deployment', deployment['metadata']['name'])
    assert 2 <= hpa['spec']['minReplicas'] <= hpa['spec']['maxReplicas']  # two or more: a node can go
    (metric,) = hpa['spec']['metrics']
    assert metric['resource']['name'] == 'cpu' and metric['resource']['target']['type'] == 'Utilization'


def _cores(quantity):
    return float(quantity[:-1]) / 1000 if str(quantity).endswith('m') else float(quantity)


def test_cpu_request_backs_the_utilization_target_and_batching_threads(container):
    # Utilization is relative to the request; one batching thread per core the pod may use.
    requested, limit = (_cores(container['resources'][kind]['cpu']) for kind in ('requests', 'limits'))
    assert 0 < requested <= limit
    batching = _parse('batching.config', BatchingParameters)
    assert batching.num_batch_threads.value <= limit


def test_pods_run_as_the_workload_identity_service_account(resources, deployment):
    name = deployment['spec']['template']['spec']['serviceAccountName']
    account = resources[('ServiceAccount', name)]
    assert account['metadata']['annotations']['iam.gke.io/gcp-service-account'].endswith('.iam.gserviceaccount.com')


def test_every_resource_carries_the_app_label(kustomization, resources):
    (entry,) = kustomization['labels']
    assert entry['pairs'] == {'app': 'chicago-taxi-serving'}
    selector = next(d for (k, _), d in resources.items() if k == 'Deployment')['spec']['selector']['matchLabels']
    assert selector == entry['pairs']


@pytest.mark.skipif(shutil.which('kubectl') is None, reason='kubectl not installed')
def test_kustomize_renders_the_configmap_under_its_fixed_name():
    # kubectl's built-in kustomize runs locally; it needs no cluster.
    out = subprocess.run(['kubectl', 'kustomize', SERVING], capture_output=True, text=True, timeout=30, check=True)
    docs = list(yaml.safe_load_all(out.stdout))
    (configmap,) = [d for d in docs if d['kind'] == 'ConfigMap']
    (deployment,) = [d for d in docs if d['kind'] == 'Deployment']
    # The name the Deployment mounts is the one kustomize renders (no hash suffix).
    mounted = {v['configMap']['name'] for v in deployment['spec']['template']['spec']['volumes'] if 'configMap' in v}
    assert configmap['metadata']['name'] in mounted
    with open(os.path.join(CONFIG_DIR, 'models.config')) as f:
        assert configmap['data']['models.config'] == f.read()
    assert all(d['metadata']['labels']['app'] == 'chicago-taxi-serving' for d in docs)


# --- access control: tokens from a Secret, TF Serving's ports closed ------------------

TOKENS_SECRET = 'chicago-taxi-serving-tokens'


@pytest.fixture(scope='module')
def rendered():
    """What `kubectl apply -k serving/` applies, by (kind, name)."""
    if shutil.which('kubectl') is None:
        pytest.skip('kubectl not installed')
    return kustomized('serving')


def _rendered_containers(rendered):
    """(gateway, TF Serving) of the rendered Deployment."""
    spec = rendered[('Deployment', 'chicago-taxi-serving')]['spec']['template']['spec']
    (tf_serving,) = [c for c in spec['containers'] if c['command'] == ['tensorflow_model_server']]
    (gateway,) = [c for c in spec['containers'] if c is not tf_serving]
    return gateway, tf_serving


def test_the_gateway_checks_tokens_from_the_mounted_secret(rendered):
    from serving import access
    gateway, tf_serving = _rendered_containers(rendered)
    args = cli.parser().parse_args(gateway['command'][1:] + gateway['args'])
    assert args.auth_tokens and not args.no_auth
    access.check_exposure(args.host, args.auth_tokens, args.no_auth)  # `serve` accepts --host 0.0.0.0 with it
    # The file is inside the whole mounted Secret (a subPath mount would never see a rotation).
    (mount,) = [m for m in gateway['volumeMounts'] if os.path.dirname(args.auth_tokens) == m['mountPath']]
    assert 'subPath' not in mount and mount['readOnly'] is True
    volumes = {v['name']: v for v in rendered[('Deployment', 'chicago-taxi-serving')]['spec']['template']['spec']
               ['volumes']}
    secret = volumes[mount['name']]['secret']
    assert secret['secretName'] == TOKENS_SECRET and secret['optional'] is False
    # The key that `kubectl create secret generic ... --from-file=tokens.json=FILE` gives, as the README says.
    assert 'items' not in secret
    with open(os.path.join(SERVING, 'README.md')) as f:
        assert (f'kubectl create secret generic {TOKENS_SECRET} --from-file='
                f'{os.path.basename(args.auth_tokens)}=') in f.read()
    # Created by hand, never committed: nothing in the kustomization renders a Secret.
    assert not [name for kind, name in rendered if kind == 'Secret']
    # TF Serving takes no tokens, and gets none.
    assert mount['name'] not in {m['name'] for m in tf_serving.get('volumeMounts', [])}


def test_the_network_policy_admits_only_the_gateways_ports(rendered):
    gateway, tf_serving = _rendered_containers(rendered)
    deployment = rendered[('Deployment', 'chicago-taxi-serving')]
    (policy,) = [d for (kind, _), d in rendered.items() if kind == 'NetworkPolicy']
    selector = policy['spec']['podSelector']['matchLabels']
    assert selector and selector.items() <= deployment['spec']['template']['metadata']['labels'].items()
    assert policy['spec']['policyTypes'] == ['Ingress']
    gateway_ports = _ports(gateway)
    admitted = set()
    for rule in policy['spec']['ingress']:
        assert rule.get('ports'), 'a rule without ports admits every port'
        for port in rule['ports']:
            assert port.get('protocol', 'TCP') == 'TCP' and 'endPort' not in port
            admitted.add(gateway_ports.get(port['port'], port['port']))
    assert admitted == set(gateway_ports.values()) == {serving.GRPC_PORT, serving.REST_PORT}
    # TF Serving's own ports, which check no token, are reachable only inside the pod.
    assert not admitted & set(_ports(tf_serving).values())
    # The probes that must work without a token ask what stays open.
    for probe in ('readinessProbe', 'livenessProbe'):
        assert gateway[probe]['httpGet']['path'] in (f'/v1/models/{MODEL_NAME}', serving.METRICS_PATH)


# --- models.config -------------------------------------------------------------------

def test_model_base_path_is_where_the_pusher_writes():
    (model,) = _parse('models.config', model_server_config_pb2.ModelServerConfig).model_config_list.config
    assert model.name == MODEL_NAME
    assert model.model_platform == 'tensorflow'
    assert model.base_path == makefile_default('SERVING_MODEL_DIR')
    assert model.base_path.startswith('gs://') and model.base_path.rstrip('/').endswith('/' + MODEL_NAME)


def test_labels_point_at_loaded_versions():
    (model,) = _parse('models.config', model_server_config_pb2.ModelServerConfig).model_config_list.config
    assert model.model_version_policy.WhichOneof('policy_choice') == 'specific'
    versions = set(model.model_version_policy.specific.versions)
    assert set(model.version_labels) == {serving.STABLE_LABEL, serving.CANARY_LABEL}
    assert set(model.version_labels.values()) <= versions


# --- running locally -------------------------------------------------------------------

def test_compose_serves_the_local_push_destination_with_the_cluster_image(compose, container, flags):
    assert compose['image'] == container['image']
    assert compose['entrypoint'] == container['command']
    local = _flags(compose['command'])
    assert local['--model_name'] == MODEL_NAME
    assert int(local['--port']) == serving.GRPC_PORT and int(local['--rest_api_port']) == serving.REST_PORT
    assert {f'{p}:{p}' for p in (serving.GRPC_PORT, serving.REST_PORT)} == set(compose['ports'])
    for flag in ('--enable_batching', '--batching_parameters_file', '--monitoring_config_file',
                 '--enable_model_warmup'):
        assert local[flag] == flags[flag], flag

    # Resolve the container's model path through the volumes to a host path.
    mounts = {}
    for volume in compose['volumes']:
        host, target, mode = volume.split(':')
        assert mode == 'ro'
        mounts[target] = os.path.normpath(os.path.join(SERVING, host))
    model_root, rest = local['--model_base_path'].lstrip('/').split('/', 1)
    host_model_dir = os.path.join(mounts['/' + model_root], rest)
    pusher = PipelineConfig.for_workspace(os.path.join(REPO, 'workspace')).serving_model_dir
    assert host_model_dir == pusher
    assert os.path.normpath(mounts[MOUNT]) == CONFIG_DIR


def _run_script(tmp_path, path_dirs, *args):
    env = {'PATH': os.pathsep.join(map(str, path_dirs)), 'HOME': str(tmp_path)}
    return subprocess.run([shutil.which('bash'), os.path.join(SERVING, 'run_tf_serving.sh'), *args],
                          capture_output=True, text=True, env=env, timeout=30)


@pytest.fixture
def fake_docker(tmp_path):
    """A `docker` that records its arguments, one per line."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    script = bin_dir / 'docker'
    script.write_text(f'#!{shutil.which("bash")}\nprintf "%s\\n" "$@" > {tmp_path}/docker-args\n')
    script.chmod(0o755)
    return bin_dir, tmp_path / 'docker-args'


def test_run_script_runs_what_compose_runs(tmp_path, fake_docker, compose):
    bin_dir, args_file = fake_docker
    model_dir = tmp_path / 'serving_model' / MODEL_NAME
    (model_dir / '1795432478').mkdir(parents=True)
    (model_dir / '1795432478' / 'saved_model.pb').write_bytes(b'')
    result = _run_script(tmp_path, [bin_dir], str(model_dir))
    assert result.returncode == 0, result.stderr
    args = args_file.read_text().splitlines()
    image = args.index(compose['image'])
    assert args[:2] == ['run', '--rm']
    assert args[args.index('--entrypoint') + 1] == compose['entrypoint'][0]
    assert _flags(args[image + 1:]) == _flags(compose['command'])
    volumes = {args[i + 1] for i, a in enumerate(args[:image]) if a == '-v'}
    assert volumes == {f'{model_dir}:/models/{MODEL_NAME}:ro', f'{CONFIG_DIR}:{MOUNT}:ro'}
    assert {args[i + 1] for i, a in enumerate(args[:image]) if a == '-p'} == set(compose['ports'])


@pytest.mark.parametrize('case, messages', [
    ('no_docker', ['docker not found']),
    ('no_model', ['no model directory', 'make run']),
    ('no_version', ['no version directories']),
])
def test_run_script_explains_what_is_missing(tmp_path, fake_docker, case, messages):
    bin_dir, args_file = fake_docker
    path_dirs, model_dir = {'no_docker': ([tmp_path / 'empty'], str(tmp_path)),
                            'no_model': ([bin_dir], str(tmp_path / 'nowhere')),
                            'no_version': ([bin_dir], str(tmp_path / 'bin'))}[case]
    result = _run_script(tmp_path, path_dirs, model_dir)
    assert result.returncode == 1
    assert all(message in result.stderr for message in messages), result.stderr
    assert not args_file.exists()  # docker was never started


# --- the label tool --------------------------------------------------------------------

@pytest.fixture
def config_copy(tmp_path):
    path = tmp_path / 'models.config'
    shutil.copy(os.path.join(CONFIG_DIR, 'models.config'), path)
    return str(path)


def _policy(path):
    with open(path) as f:
        (model,) = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig()).model_config_list.config
    return sorted(model.model_version_policy.specific.versions)


def _header(path):
    with open(path) as f:
        return [line for line in f if line.startswith('#')]


def test_set_labels_round_trip_keeps_the_file_and_its_header(config_copy):
    with open(config_copy) as f:
        original = f.read()
    # The shipped labels, written again: nothing to stage, identical bytes.
    shipped = labels.read_labels(config_copy)
    assert labels.set_labels(config_copy, shipped['stable'], shipped['canary']) == frozenset()
    with open(config_copy) as f:
        assert f.read() == original

    assert labels.set_labels(config_copy, 200, 300, staged=False) == frozenset()
    assert labels.read_labels(config_copy) == {'stable': 200, 'canary': 300}
    assert _policy(config_copy) == [200, 300]
    assert _header(config_copy) == [line for line in original.splitlines(keepends=True) if line.startswith('#')]
    # Everything else about the model is untouched.
    (model,) = _parse('models.config', model_server_config_pb2.ModelServerConfig).model_config_list.config
    with open(config_copy) as f:
        (edited,) = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig()).model_config_list.config
    assert (edited.name, edited.base_path, edited.model_platform) == (model.name, model.base_path,
                                                                      model.model_platform)


def test_canary_then_promotion_then_rollback(config_copy):
    labels.set_labels(config_copy, 100, staged=False)
    assert labels.read_labels(config_copy) == {'stable': 100} and _policy(config_copy) == [100]

    # A new canary: first load it, labels untouched ...
    assert labels.set_labels(config_copy, 100, 200) == {200}
    assert labels.read_labels(config_copy) == {'stable': 100} and _policy(config_copy) == [100, 200]
    # ... then, once loaded, label it.
    assert labels.set_labels(config_copy, 100, 200) == frozenset()
    assert labels.read_labels(config_copy) == {'stable': 100, 'canary': 200}

    # Promotion moves stable to a loaded version: one step; the canary label goes.
    assert labels.set_labels(config_copy, 200) == frozenset()
    assert labels.read_labels(config_copy) == {'stable': 200} and _policy(config_copy) == [200]

    # Rollback to the older version: reload it first while 200 keeps serving.
    assert labels.set_labels(config_copy, 100) == {100}
    assert labels.read_labels(config_copy) == {'stable': 200} and _policy(config_copy) == [100, 200]
    assert labels.set_labels(config_copy, 100) == frozenset()
    assert labels.read_labels(config_copy) == {'stable': 100} and _policy(config_copy) == [100]


def test_canary_removal(config_copy):
    shipped = labels.read_labels(config_copy)
    assert labels.set_labels(config_copy, shipped['stable']) == frozenset()
    assert labels.read_labels(config_copy) == {'stable': shipped['stable']}
    assert _policy(config_copy) == [shipped['stable']]


@pytest.mark.parametrize('kwargs, message', [
    ({'stable': 0}, 'stable.*positive integer'),
    ({'stable': -5}, 'stable.*positive integer'),
    ({'stable': 3, 'canary': 0}, 'canary.*positive integer'),
    ({'stable': '3'}, 'stable.*positive integer'),
    ({'stable': True}, 'stable.*positive integer'),
    ({'stable': 3, 'model_name': 'chicago-taxis'}, 'chicago-taxis'),
])
def test_bad_input_is_refused_and_changes_nothing(config_copy, kwargs, message):
    with open(config_copy) as f:
        original = f.read()
    with pytest.raises(ValueError, match=message):
        labels.set_labels(config_copy, **kwargs)
    with open(config_copy) as f:
        assert f.read() == original


def test_a_config_that_is_not_a_model_server_config_is_refused(tmp_path):
    path = tmp_path / 'models.config'
    path.write_text('model_config_list { config { nmae: "x" } }\n')
    with pytest.raises(ValueError, match='not a ModelServerConfig'):
        labels.read_labels(str(path))


@pytest.mark.parametrize('failing', ['fsync', 'replace'])
def test_a_failed_write_leaves_the_original_file(config_copy, monkeypatch, failing):
    with open(config_copy) as f:
        original = f.read()

    def fail(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(atomic_file.os, failing, fail)
    with pytest.raises(OSError):
        labels.set_labels(config_copy, 7, 8, staged=False)
    monkeypatch.undo()
    with open(config_copy) as f:
        assert f.read() == original
    assert os.listdir(os.path.dirname(config_copy)) == ['models.config']  # no temporary file left


@pytest.mark.parametrize('argv, code, labels_after', [
    (['--stable', '5', '--canary', '6', '--direct'], 0, {'stable': 5, 'canary': 6}),
    (['--stable', '0'], 2, None),
    (['--stable', '5', '--model-name', 'other'], 2, None),
])
def test_serving_labels_command(config_copy, argv, code, labels_after):
    before = labels.read_labels(config_copy)
    assert cli.main(['serving-labels', '--config', config_copy] + argv) == code
    assert labels.read_labels(config_copy) == (labels_after if labels_after is not None else before)


def test_serving_labels_command_stages_a_move_to_an_unloaded_version(config_copy, capsys):
    before = labels.read_labels(config_copy)
    assert cli.main(['serving-labels', '--config', config_copy, '--stable', '9']) == 0
    assert labels.read_labels(config_copy) == before  # labels wait until 9 is loaded
    assert 9 in _policy(config_copy)
    assert '9' in capsys.readouterr().out


def test_serving_labels_command_on_a_missing_config_is_bad_input(config_copy, capsys):
    assert cli.main(['serving-labels', '--config', config_copy + '.missing', '--stable', '5']) == 2
    assert config_copy + '.missing' in capsys.readouterr().err


def test_label_tool_does_not_import_tensorflow():
    out = subprocess.run([sys.executable, '-c',
                          'import sys, serving.labels; print("tensorflow" in sys.modules)'],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == 'False', out.stderr
