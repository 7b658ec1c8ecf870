"""The compiled KFP spec, executed task by task through TFX's container entry
points (pipeline/kfp_local_runner.py), trains, blesses and pushes a model like
the local runner does. Each task gets the image's environment (the
Dockerfile's ENV) and nothing of this process's, and the run sets its
parameters as a Kubeflow Pipelines UI user would."""

import json
import os

import pytest
import tensorflow as tf

import schemas
from components.baseline_model import latest_pushed_version
from foundation.model_files import TRAINING_RECORD
from pipeline import data, kubeflow_compile
from pipeline.config import PipelineConfig
from pipeline.kfp_local_runner import LocalKfpRun, TaskFailed, image_environment
from taxi_model import contract

pytestmark = pytest.mark.e2e


ROWS = 2000
TRAIN_STEPS = 200
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def kfp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('kfp_run')
    data.prepare_sample(str(root / 'data'), rows=ROWS)
    # Compiled for a bucket the run never sees: the run's data_root parameter points here instead.
    config = PipelineConfig.for_kubeflow(
        'chicago-taxi-pipeline:test', str(root / 'pipeline_root'), 'gs://never-read/data',
        str(root / 'serving_model'), schema_file=schemas.CURATED_SCHEMA)
    spec_path, _ = kubeflow_compile.compile_pipeline(config, str(root / 'compiled'))
    # A container's /tmp is its own: the tasks' temp files stay in this run's directory.
    (root / 'tmp').mkdir()
    env = {**image_environment(os.path.join(REPO, 'Dockerfile')), 'TMPDIR': str(root / 'tmp')}
    run = LocalKfpRun(spec_path, config.pipeline_root, env=env,
                      parameters={'data_root': str(root / 'data'), 'train_steps': TRAIN_STEPS, 'eval_steps': 20})
    results = run.run()
    return config, run, results


def test_every_task_runs_once_after_the_tasks_it_depends_on(kfp_run):
    _, run, results = kfp_run
    tasks = run.spec['root']['dag']['tasks']
    ran = list(results)
    assert sorted(ran) == sorted(tasks)
    for name, task in tasks.items():
        assert all(ran.index(upstream) < ran.index(name) for upstream in task.get('dependentTasks', [])), name


def test_the_runs_parameters_reach_the_tasks(kfp_run):
    _, _, results = kfp_run
    model = results['Trainer'].outputs['model'][0]
    assert int(model['metadata']['train_steps']) == TRAIN_STEPS  # not the compiled default
    # ... and run_fn got them: what it planned is in the model run's training record.
    run_dir = results['Trainer'].outputs['model_run'][0]['uri']
    with open(os.path.join(run_dir, TRAINING_RECORD)) as f:
        assert json.load(f)['steps_planned'] == TRAIN_STEPS


def test_example_gen_driver_resolved_the_span_pattern(kfp_run):
    # Without the preCacheCheck driver, `span-{SPAN}/*.csv` matches no file.
    _, _, results = kfp_run
    examples = results['CsvExampleGen'].outputs['examples'][0]
    assert json.loads(examples['metadata']['split_names']) == ['train', 'eval']
    files = tf.io.gfile.glob(os.path.join(examples['uri'], 'Split-*', '*.gz'))
    count = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP'))
    assert count == ROWS


def test_model_is_blessed_and_pushed_and_serves(kfp_run, taxi_rows):
    config, _, results = kfp_run
    blessing = results['Evaluator'].outputs['blessing'][0]
    assert blessing['metadata']['blessed'] == 1
    pushed = results['Pusher'].outputs['pushed_model'][0]
    assert pushed['metadata']['pushed'] == 1
    version = latest_pushed_version(config.serving_model_dir)
    assert pushed['metadata']['pushed_destination'] == os.path.join(config.serving_model_dir, version)
    model = tf.saved_model.load(os.path.join(config.serving_model_dir, version))
    header, rows = taxi_rows
    inputs = contract.raw_inputs([dict(zip(header, r)) for r in rows[-20:]])
    outputs = model.signatures[contract.PREDICT_RAW](**{k: tf.constant(v) for k, v in inputs.items()})
    assert outputs[contract.PROBABILITIES].shape == (20, 1)


def test_a_failing_task_stops_the_run_before_its_downstream_tasks(tmp_path):
    def component(code):
        return {'executorLabel': f'exit{code}', 'outputDefinitions': {}}

    def executor(code):
        return {'container': {'image': 'x', 'command': ['python', '-c', f'import sys; sys.exit({code})'],
                              'args': ['{{$}}']}}

    spec = {
        'components': {'ok': component(0), 'bad': component(3)},
        'deploymentSpec': {'executors': {'exit0': executor(0), 'exit3': executor(3)}},
        'root': {'dag': {'tasks': {
            'first': {'componentRef': {'name': 'ok'}},
            'second': {'componentRef': {'name': 'bad'}, 'dependentTasks': ['first']},
            'third': {'componentRef': {'name': 'ok'}, 'dependentTasks': ['second']},
        }}},
    }
    path = tmp_path / 'spec.yaml'
    path.write_text(json.dumps(spec))  # JSON is YAML
    run = LocalKfpRun(str(path), str(tmp_path / 'root'))
    with pytest.raises(TaskFailed, match='second'):
        run.run()
    assert list(run.results) == ['first', 'second']
