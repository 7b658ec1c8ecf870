"""The compiled KFP spec: valid for the real SDKs, same DAG as the local
pipeline, runtime parameters a Kubeflow Pipelines UI user can set, hermetic,
deterministic, and committed in kfp/ as `make compile` writes it."""

import importlib
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import tempfile

import pytest
import tfx
import yaml
from dockerfile_parse import DockerfileParser
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.components.statistics_gen.executor import Executor as StatisticsGenExecutor
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

from cli import main as cli
from pipeline import dag, kubeflow_compile
from pipeline.config import (BeamSettings, DEFAULT_RESOURCES, IMAGE_PROJECT_DIR, IMAGE_SCHEMA_FILE,
                             PipelineConfig, Resources, Thresholds)

pytestmark = pytest.mark.unit


IMAGE = 'gcr.io/example-project/chicago-taxi-pipeline:0123abc'
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(tmp_path, **overrides):
    return PipelineConfig.for_kubeflow(IMAGE, str(tmp_path / 'never_created_root'), 'gs://example-bucket/data',
                                       'gs://example-bucket/serving/chicago-taxi', **overrides)


def _load(yaml_path):
    with open(yaml_path) as f:
        text = f.read()
    return text, json_format.ParseDict(yaml.safe_load(text), pipeline_spec_pb2.PipelineSpec())


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('kfp')
    config = _config(tmp, train_steps=1234, thresholds=Thresholds(min_auc=0.75))
    yaml_path, json_path = kubeflow_compile.compile_pipeline(config, str(tmp / 'out'))
    text, spec = _load(yaml_path)
    return config, yaml_path, json_path, text, spec


def _executors(spec):
    return json_format.MessageToDict(spec.deployment_spec)['executors']


def test_yaml_is_a_pipeline_spec_the_kfp_sdk_loads(compiled):
    config, yaml_path, _, _, spec = compiled
    import kfp
    component = kfp.components.load_component_from_file(yaml_path)
    assert component.name == config.pipeline_name
    assert spec.pipeline_info.name == config.pipeline_name
    assert spec.schema_version.startswith('2.')


def test_job_json_is_a_vertex_pipeline_job_of_the_same_spec(compiled):
    config, yaml_path, json_path, _, spec = compiled
    with open(json_path) as f:
        job = json_format.Parse(f.read(), pipeline_spec_pb2.PipelineJob())
    assert job.runtime_config.gcs_output_directory == config.pipeline_root
    assert json_format.MessageToDict(job.pipeline_spec) == json_format.MessageToDict(spec)
    # Vertex takes parameter values from the job, not from the spec's defaults.
    assert job.runtime_config.parameter_values['train_steps'].number_value == 1234


def test_run_parameters_are_declared_with_the_configs_values_as_defaults(compiled):
    config, yaml_path, _, _, spec = compiled
    declared = kubeflow_compile.declared_parameters(yaml_path)
    assert set(declared) == {p.name for p in dag.RUNTIME_PARAMETERS}
    kinds = {int: 'NUMBER_INTEGER', float: 'NUMBER_DOUBLE', str: 'STRING'}
    for parameter in dag.RUNTIME_PARAMETERS:
        assert declared[parameter.name]['parameterType'] == kinds[parameter.ptype], parameter.name
        assert declared[parameter.name]['defaultValue'] == parameter.value(config), parameter.name
        assert declared[parameter.name]['isOptional'] is True
    assert declared['train_steps']['defaultValue'] == 1234 and declared['min_auc']['defaultValue'] == 0.75


def test_tasks_read_the_run_parameters(compiled):
    _, _, _, _, spec = compiled
    bound = {(task_name, key): source.component_input_parameter
             for task_name, task in spec.root.dag.tasks.items()
             for key, source in task.inputs.parameters.items() if source.component_input_parameter}
    assert bound == {('CsvExampleGen', 'input_base'): 'data_root',
                     ('Trainer', 'train_steps'): 'train_steps', ('Trainer', 'eval_steps'): 'eval_steps',
                     ('Trainer', 'train_epochs'): 'train_epochs',
                     ('Evaluator', 'min_auc'): 'min_auc', ('Evaluator', 'min_accuracy'): 'min_accuracy',
                     ('Evaluator', 'max_auc_drop'): 'max_auc_drop', ('DriftCheck', 'drift_policy'): 'drift_policy',
                     ('Tuner', 'tune'): 'tune', ('Tuner', 'max_trials'): 'tuning_max_trials',
                     ('Tuner', 'max_seconds'): 'tuning_max_seconds', ('Tuner', 'eval_steps'): 'eval_steps'}


def test_dag_matches_the_local_pipeline(compiled, tmp_path):
    _, _, _, _, spec = compiled
    local = dag.create_pipeline(PipelineConfig.for_workspace(str(tmp_path)), None).components
    expected = {c.id: sorted(u.id for u in c.upstream_nodes) for c in local}
    tasks = spec.root.dag.tasks
    assert set(tasks) == set(expected)
    for name, task in tasks.items():
        assert sorted(task.dependent_tasks) == expected[name], name
    assert 'AnomaliesGate' in tasks['Transform'].dependent_tasks


def test_no_tasks_that_open_source_kfp_cannot_run(compiled):
    _, _, _, _, spec = compiled
    class_paths = [args[args.index('--executor_class_path') + 1] if '--executor_class_path' in args else ''
                   for args in (e['container'].get('args', []) for e in _executors(spec).values())]
    assert not any('resolver' in name.lower() or 'infravalidator' in name.lower()
                   for name in list(spec.root.dag.tasks) + class_paths)
    # Importer nodes are the only non-container executors TFX emits; a resolver would be one too.
    assert all('container' in executor for executor in _executors(spec).values())


def test_every_executor_uses_the_image_and_importable_user_code(compiled):
    _, _, _, _, spec = compiled
    executors = _executors(spec)
    assert len(executors) == len(spec.root.dag.tasks)
    for name, executor in executors.items():
        container = executor['container']
        assert container['image'] == IMAGE, name
        args = container['args']
        class_path = args[args.index('--executor_class_path') + 1]
        module, _, attribute = class_path.rpartition('.')
        assert hasattr(importlib.import_module(module), attribute), class_path


def _constant(spec, task, key):
    return json_format.MessageToDict(spec.root.dag.tasks[task].inputs.parameters[key].runtime_value.constant)


def test_user_code_comes_by_module_path_and_the_schema_from_the_image(compiled):
    _, _, _, _, spec = compiled
    assert _constant(spec, 'ImportSchemaGen', 'schema_file') == IMAGE_SCHEMA_FILE
    for task, key in (('Transform', 'preprocessing_fn'), ('Trainer', 'run_fn')):
        assert 'module_file' not in spec.root.dag.tasks[task].inputs.parameters
        module, _, function = _constant(spec, task, key).rpartition('.')
        assert callable(getattr(importlib.import_module(module), function))


def test_resources_and_beam_args_are_in_the_spec(compiled):
    _, _, _, _, spec = compiled
    executors = _executors(spec)
    for component, limits in DEFAULT_RESOURCES.items():
        assert executors[f'{component}_executor']['container']['resources'] == {
            'cpuLimit': limits.cpu, 'memoryLimit': limits.memory_gb}


@pytest.mark.parametrize('workers', [1, 2])
def test_beam_runs_in_process_without_tfx_packaging_itself(workers, tmp_path, monkeypatch):
    # Beam args without a dependency flag make every TFX Beam executor build a
    # 52 MB sdist of TFX under the temp dir for remote workers; there are none here.
    monkeypatch.setenv('TMPDIR', str(tmp_path))
    monkeypatch.setattr(tempfile, 'tempdir', None)
    beam = BeamSettings(direct_workers=workers)
    # In an image, KFP's entrypoint passes the flags it does not know on as Beam args.
    for args in ([beam.args(None)] if workers == 1 else []) + [
            beam.args(IMAGE), beam.args(IMAGE) + ['--json_serialized_inputs_spec_args', '{}']]:
        executor = StatisticsGenExecutor(BaseBeamExecutor.Context(beam_pipeline_args=args))
        options = executor._make_beam_pipeline().options.get_all_options()
        assert (options['direct_num_workers'], options['extra_packages']) == (workers, None)
        assert options['direct_running_mode'] == ('in_memory' if workers == 1 else 'multi_threading')
    assert list(tmp_path.rglob('tfx_ephemeral*')) == []


def test_compiling_is_hermetic(compiled):
    config, _, _, text, _ = compiled
    assert not os.path.exists(config.pipeline_root)  # nothing written there
    for local_path in {REPO, os.path.expanduser('~'), os.getcwd()}:
        assert local_path not in text


def test_two_compiles_give_identical_bytes(compiled, tmp_path):
    config, yaml_path, json_path, _, _ = compiled
    again = kubeflow_compile.compile_pipeline(config, str(tmp_path))
    for first, second in zip((yaml_path, json_path), again):
        with open(first, 'rb') as a, open(second, 'rb') as b:
            assert a.read() == b.read()


def test_committed_spec_is_what_make_compile_writes(tmp_path):
    """kfp/ holds the compiled spec; editing the pipeline without `make compile` fails here."""
    dry_run = subprocess.run(['make', '-n', 'compile'], cwd=REPO, capture_output=True, text=True, check=True).stdout
    command = shlex.split(next(line for line in dry_run.replace('\\\n', ' ').splitlines()
                               if 'taxi-pipeline compile' in line))
    args = command[command.index('compile'):]
    args[args.index('--output-dir') + 1] = str(tmp_path)
    assert cli.main(args) == cli.EXIT_OK
    for name in (kubeflow_compile.PIPELINE_FILE, kubeflow_compile.PIPELINE_JOB_FILE):
        with open(os.path.join(REPO, 'kfp', name), 'rb') as committed, open(tmp_path / name, 'rb') as fresh:
            assert committed.read() == fresh.read(), f'kfp/{name} is stale: run `make compile` and commit it'


def test_dataflow_runner_needs_and_gets_its_options():
    with pytest.raises(ValueError, match='gcp_project, gcp_region, temp_location'):
        BeamSettings(runner='DataflowRunner')
    beam = BeamSettings(runner='DataflowRunner', gcp_project='p', gcp_region='us-central1',
                        temp_location='gs://example-bucket/tmp')
    assert '--runner=DataflowRunner' in beam.args(IMAGE)
    # Dataflow workers start from the pipeline image, so user code imports there too.
    assert f'--sdk_container_image={IMAGE}' in beam.args(IMAGE)


def test_relative_cluster_paths_are_rejected(tmp_path):
    with pytest.raises(ValueError, match='data_root'):
        PipelineConfig.for_kubeflow(IMAGE, 'gs://b/root', 'data', 'gs://b/serving')


def test_compile_command_reports_missing_settings(capsys, monkeypatch):
    for name in ('PIPELINE_IMAGE', 'PIPELINE_ROOT', 'DATA_ROOT', 'SERVING_MODEL_DIR'):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(['compile']) == cli.EXIT_BAD_INPUT
    assert '--image' in capsys.readouterr().err


def test_resources_are_settable_per_component_from_the_command_line(tmp_path):
    code = cli.main(['compile', '--image', IMAGE, '--pipeline-root', 'gs://b/root', '--data-root', 'gs://b/data',
                     '--serving-model-dir', 'gs://b/serving', '--resources', 'Trainer=8,16',
                     '--resources', 'Evaluator=2,4', '--output-dir', str(tmp_path)])
    assert code == cli.EXIT_OK
    with open(tmp_path / kubeflow_compile.PIPELINE_FILE) as f:
        executors = yaml.safe_load(f)['deploymentSpec']['executors']
    assert executors['Trainer_executor']['container']['resources'] == {'cpuLimit': 8.0, 'memoryLimit': 16.0}
    assert executors['Evaluator_executor']['container']['resources'] == {'cpuLimit': 2.0, 'memoryLimit': 4.0}
    transform = DEFAULT_RESOURCES['Transform']
    assert executors['Transform_executor']['container']['resources'] == {
        'cpuLimit': transform.cpu, 'memoryLimit': transform.memory_gb}


REGISTRY_READERS = (('LatestBlessedModel', 'metadata_connection'), ('DriftCheck', 'metadata_connection'))


def _pusher_custom_config(spec):
    return json.loads(_constant(spec, 'Pusher', 'custom_config')) or {}


def test_on_vertex_the_registry_readers_get_no_store_and_the_pusher_is_ours(compiled):
    _, _, _, _, spec = compiled
    for task, key in REGISTRY_READERS:
        assert _constant(spec, task, key) == ''
    assert _pusher_custom_config(spec) == {}
    args = _executors(spec)['Pusher_executor']['container']['args']
    assert args[args.index('--executor_class_path') + 1] == 'components.pusher.executor.Executor'


def test_with_the_clusters_metadata_service_the_registry_readers_connect_to_it(tmp_path):
    code = cli.main(['compile', '--image', IMAGE, '--pipeline-root', 'gs://b/root', '--data-root', 'gs://b/data',
                     '--serving-model-dir', 'gs://b/serving', '--metadata-grpc', 'metadata-grpc-service.kubeflow:8080',
                     '--output-dir', str(tmp_path)])
    assert code == cli.EXIT_OK
    _, spec = _load(str(tmp_path / kubeflow_compile.PIPELINE_FILE))
    for task, key in REGISTRY_READERS:
        assert _constant(spec, task, key) == 'grpc:metadata-grpc-service.kubeflow:8080'
    assert _pusher_custom_config(spec) == {'metadata_connection': 'grpc:metadata-grpc-service.kubeflow:8080'}
    with pytest.raises(ValueError, match='HOST:PORT'):
        PipelineConfig.for_kubeflow(IMAGE, 'gs://b/root', 'gs://b/data', 'gs://b/serving', metadata_grpc='no-port')


def test_locally_the_registry_readers_get_the_runs_sqlite_store(tmp_path):
    config = PipelineConfig.for_workspace(str(tmp_path))
    components = {c.id: c for c in dag.create_components(config)}
    expected = f'sqlite:{config.metadata_path}'
    for task, key in REGISTRY_READERS:
        assert components[task].exec_properties[key] == expected
    assert json.loads(components['Pusher'].exec_properties['custom_config']) == {'metadata_connection': expected}


def test_resources_for_a_node_the_dag_does_not_have_are_refused(tmp_path):
    with pytest.raises(ValueError, match='Trainr'):
        kubeflow_compile.compile_pipeline(_config(tmp_path, resources={'Trainr': Resources(1, 1)}), str(tmp_path))


def test_the_image_holds_every_installed_package_where_the_spec_expects_it():
    dockerfile = DockerfileParser(path=os.path.join(REPO, 'Dockerfile'))
    assert dockerfile.baseimage == f'tensorflow/tfx:{tfx.__version__}'  # the TFX this project is tested with
    instructions = [(i['instruction'], i['value']) for i in dockerfile.structure]
    workdirs = [value for kind, value in instructions if kind == 'WORKDIR']
    assert workdirs[-1] == IMAGE_PROJECT_DIR
    copied = {source.rstrip('/') for kind, value in instructions if kind == 'COPY'
              for source in value.split()[:-1]}
    top_level = importlib.metadata.distribution('taxi-tfx-pipeline').read_text('top_level.txt').split()
    missing = [name for name in top_level if name not in copied and f'{name}.py' not in copied]
    assert not missing, f'the image would lack {missing}'
    installs = [value for kind, value in instructions if kind == 'RUN' and 'pip install' in value]
    assert any(IMAGE_PROJECT_DIR in value for value in installs)


def test_the_image_chooses_keras_2_for_every_task():
    envs = DockerfileParser(path=os.path.join(REPO, 'Dockerfile')).envs
    assert envs.get('TF_USE_LEGACY_KERAS') == '1'


def test_what_the_image_adds_to_tfxs_is_pinned_as_the_tested_set():
    instructions = DockerfileParser(path=os.path.join(REPO, 'Dockerfile')).structure
    pinned = dict(re.findall(r'([A-Za-z0-9_.-]+)==([^\s]+)', ' '.join(
        i['value'] for i in instructions if i['instruction'] == 'RUN' and 'pip install' in i['value'])))
    with open(os.path.join(REPO, 'constraints.txt')) as f:
        tested = dict(re.findall(r'^([A-Za-z0-9_.-]+)==(\S+)', f.read(), re.M))
    normal = {name.lower().replace('_', '-'): version for name, version in tested.items()}
    assert pinned and all(normal.get(name.lower().replace('_', '-')) == version for name, version in pinned.items())
