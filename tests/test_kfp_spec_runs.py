"""The compiled KFP spec, executed task by task through TFX's container entry
points (tests/kfp_harness.py), trains, blesses and pushes a model like the
local runner does."""

import json
import os

import pytest
import tensorflow as tf

import schemas
from components.baseline_model import latest_pushed_version
from pipeline import data, kubeflow, requests
from pipeline.model import PREDICTION_KEY, RAW_SIGNATURE

from kfp_harness import LocalKfpRun, TaskFailed, topological_order

ROWS = 2000


@pytest.fixture(scope='module')
def kfp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('kfp_run')
    data.prepare_sample(str(root / 'data'), rows=ROWS)
    settings = kubeflow.KubeflowSettings(
        image='chicago-taxi-pipeline:test', pipeline_root=str(root / 'pipeline_root'),
        data_root=str(root / 'data'), serving_model_dir=str(root / 'serving_model'),
        train_steps=200, eval_steps=20, schema_file=schemas.CURATED_SCHEMA)
    spec_path, _ = kubeflow.compile_pipeline(settings, str(root / 'compiled'))
    run = LocalKfpRun(spec_path, settings.pipeline_root, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    results = run.run()
    return settings, run, results


def test_every_task_runs_in_dependency_order(kfp_run):
    _, run, results = kfp_run
    tasks = run.spec['root']['dag']['tasks']
    assert list(results) == topological_order(tasks)
    assert all(r.returncode == 0 for r in results.values())


def test_example_gen_driver_resolved_the_span_pattern(kfp_run):
    # Without the preCacheCheck driver, `span-{SPAN}/*.csv` matches no file.
    _, _, results = kfp_run
    examples = results['CsvExampleGen'].outputs['examples'][0]
    assert json.loads(examples['metadata']['split_names']) == ['train', 'eval']
    files = tf.io.gfile.glob(os.path.join(examples['uri'], 'Split-*', '*.gz'))
    count = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP'))
    assert count == ROWS


def test_model_is_blessed_and_pushed_and_serves(kfp_run, taxi_rows):
    settings, _, results = kfp_run
    blessing = results['Evaluator'].outputs['blessing'][0]
    assert blessing['metadata']['blessed'] == 1
    pushed = results['Pusher'].outputs['pushed_model'][0]
    assert pushed['metadata']['pushed'] == 1
    version = latest_pushed_version(settings.serving_model_dir)
    assert pushed['metadata']['pushed_destination'] == os.path.join(settings.serving_model_dir, version)
    model = tf.saved_model.load(os.path.join(settings.serving_model_dir, version))
    header, rows = taxi_rows
    batch = requests.raw_batch([dict(zip(header, r)) for r in rows[-20:]])
    assert model.signatures[RAW_SIGNATURE](**batch)[PREDICTION_KEY].shape == (20, 1)


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
    with pytest.raises(TaskFailed, match='task second exited 3'):
        run.run()
    assert list(run.results) == ['first', 'second']
