"""The compiled KFP spec: valid for the real SDKs, same DAG as the local
pipeline, hermetic and deterministic."""

import importlib
import os
import re

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import cli, kubeflow
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

IMAGE = 'gcr.io/example-project/chicago-taxi-pipeline:0123abc'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _settings(tmp_path, **overrides):
    values = dict(image=IMAGE, pipeline_root=str(tmp_path / 'never_created_root'),
                  data_root='gs://example-bucket/data', serving_model_dir='gs://example-bucket/serving/chicago-taxi')
    values.update(overrides)
    return kubeflow.KubeflowSettings(**values)


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('kfp')
    settings = _settings(tmp)
    yaml_path, json_path = kubeflow.compile_pipeline(settings, str(tmp / 'out'))
    with open(yaml_path) as f:
        text = f.read()
    spec = json_format.ParseDict(yaml.safe_load(text), pipeline_spec_pb2.PipelineSpec())
    return settings, yaml_path, json_path, text, spec


def test_yaml_is_a_pipeline_spec_the_kfp_sdk_loads(compiled):
    _, yaml_path, _, _, spec = compiled
    import kfp
    component = kfp.components.load_component_from_file(yaml_path)
    assert component.name == 'chicago-taxi'
    assert spec.pipeline_info.name == 'chicago-taxi'
    assert spec.schema_version.startswith('2.')


def test_job_json_is_a_vertex_pipeline_job(compiled):
    settings, _, json_path, _, _ = compiled
    with open(json_path) as f:
        job = json_format.Parse(f.read(), pipeline_spec_pb2.PipelineJob())
    assert job.runtime_config.gcs_output_directory == settings.pipeline_root
    assert 'root' in job.pipeline_spec


def test_dag_matches_the_local_pipeline(compiled, tmp_path):
    settings, _, _, _, spec = compiled
    local = create_pipeline(PipelineConfig.for_workspace(str(tmp_path))).components
    expected = {c.id: sorted(u.id for u in c.upstream_nodes) for c in local}
    tasks = spec.root.dag.tasks
    assert set(tasks) == set(expected)
    for name, task in tasks.items():
        assert sorted(task.dependent_tasks) == expected[name], name
    assert 'AnomaliesGate' in tasks['Transform'].dependent_tasks
    assert set(kubeflow._COMPONENT_IDS) == set(expected)  # the names --resources accepts


def test_no_tasks_that_open_source_kfp_cannot_run(compiled):
    _, _, _, text, spec = compiled
    assert not any('resolver' in name.lower() or 'infravalidator' in name.lower()
                   for name in spec.root.dag.tasks)
    assert 'resolver' not in text.lower()


def test_every_executor_uses_the_image_and_importable_user_code(compiled):
    _, _, _, _, spec = compiled
    deployment = json_format.MessageToDict(spec.deployment_spec)
    executors = deployment['executors']
    assert len(executors) == len(spec.root.dag.tasks)
    for name, executor in executors.items():
        container = executor['container']
        assert container['image'] == IMAGE, name
        args = container['args']
        class_path = args[args.index('--executor_class_path') + 1]
        module, _, attribute = class_path.rpartition('.')
        assert hasattr(importlib.import_module(module), attribute), class_path


def test_resources_and_beam_args_are_in_the_spec(compiled):
    _, _, _, _, spec = compiled
    executors = json_format.MessageToDict(spec.deployment_spec)['executors']
    assert executors['Trainer_executor']['container']['resources'] == {'cpuLimit': 4.0, 'memoryLimit': 8.0}
    assert executors['Transform_executor']['container']['resources'] == {'cpuLimit': 2.0, 'memoryLimit': 8.0}
    assert '--direct_running_mode=in_memory' in executors['StatisticsGen_executor']['container']['args']


def test_compiling_is_hermetic(compiled):
    settings, _, _, text, _ = compiled
    assert not os.path.exists(settings.pipeline_root)  # nothing written there
    for local_path in {REPO, os.path.expanduser('~'), os.getcwd()}:
        assert local_path not in text
    assert kubeflow.IMAGE_SCHEMA_FILE in text
    assert 'module_file' not in text


def test_two_compiles_give_identical_bytes(compiled, tmp_path):
    settings, yaml_path, json_path, _, _ = compiled
    again = kubeflow.compile_pipeline(settings, str(tmp_path))
    for first, second in zip((yaml_path, json_path), again):
        with open(first, 'rb') as a, open(second, 'rb') as b:
            assert a.read() == b.read()


def test_dataflow_runner_needs_and_gets_its_options(tmp_path):
    with pytest.raises(ValueError, match='gcp_project, gcp_region, dataflow_temp_location'):
        _settings(tmp_path, beam_runner='DataflowRunner')
    settings = _settings(tmp_path, beam_runner='DataflowRunner', gcp_project='p', gcp_region='us-central1',
                         dataflow_temp_location='gs://example-bucket/tmp')
    assert '--runner=DataflowRunner' in settings.beam_args
    assert f'--sdk_container_image={IMAGE}' in settings.beam_args


def test_relative_cluster_paths_are_rejected(tmp_path):
    with pytest.raises(ValueError, match='data_root'):
        _settings(tmp_path, data_root='data')


def test_compile_command_reports_missing_settings(capsys, monkeypatch):
    for name in ('PIPELINE_IMAGE', 'PIPELINE_ROOT', 'DATA_ROOT', 'SERVING_MODEL_DIR'):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(['compile']) == cli.EXIT_BAD_INPUT
    assert '--image' in capsys.readouterr().err


def test_dockerfile_installs_the_project_where_the_spec_expects_it():
    with open(os.path.join(REPO, 'Dockerfile')) as f:
        dockerfile = f.read()
    assert re.search(rf'^WORKDIR {re.escape(kubeflow.IMAGE_PROJECT_DIR)}$', dockerfile, re.M)
    assert f'pip install --no-cache-dir --no-deps -e {kubeflow.IMAGE_PROJECT_DIR}' in dockerfile
    assert re.search(r'^FROM tensorflow/tfx:1\.16\.0$', dockerfile, re.M)
    for package in ('pipeline', 'components', 'schemas'):
        assert f'COPY {package}/ {package}/' in dockerfile


def test_resources_are_settable_per_component_from_the_command_line(tmp_path):
    code = cli.main(['compile', '--image', IMAGE, '--pipeline-root', 'gs://b/root', '--data-root', 'gs://b/data',
                     '--serving-model-dir', 'gs://b/serving', '--resources', 'Trainer=8,16',
                     '--resources', 'Evaluator=2,4', '--output-dir', str(tmp_path)])
    assert code == cli.EXIT_OK
    with open(tmp_path / kubeflow.PIPELINE_FILE) as f:
        executors = yaml.safe_load(f)['deploymentSpec']['executors']
    assert executors['Trainer_executor']['container']['resources'] == {'cpuLimit': 8.0, 'memoryLimit': 16.0}
    assert executors['Evaluator_executor']['container']['resources'] == {'cpuLimit': 2.0, 'memoryLimit': 4.0}
    assert executors['Transform_executor']['container']['resources'] == {'cpuLimit': 2.0, 'memoryLimit': 8.0}
    with pytest.raises(ValueError, match='unknown components'):
        _settings(tmp_path, resources={'Trainr': kubeflow.Resources(1, 1)})
