"""The compiled KFP spec runs end to end on both backends it is written for:
open-source Kubeflow Pipelines 2 (input artifacts as its driver reads them back
from ML Metadata: no schema, numeric names, ints as doubles; no
preCacheCheck; the run recorded in ML Metadata over gRPC) and Vertex AI
(inputs typed by the consuming component, ExampleGen's driver as a
preCacheCheck). Each task runs the image's entry point with the image's
environment (the Dockerfile's ENV) and nothing of this process's, and the run
sets its parameters as a Kubeflow Pipelines UI user would. Both train, bless
and push a model that serves, as the local runner does, and leave the views
the Kubeflow Pipelines UI renders. Against the store the open-source backend
populated, served over ML Metadata's gRPC API as on a cluster, the operate
commands answer: runs, lineage, the registry, model cards, monitoring passes
and the continuous-training trigger.

The open-source run also sets the `tune` parameter, as a Kubeflow Pipelines UI user sets it, on a spec
compiled with the cluster's metadata service: the Tuner searches (one trial: the budget is a parameter
too), its best values reach the Trainer, every trial is in the cluster's ML Metadata, and the
BulkInferrer scores the new span with the blessed candidate into PredictionLogs carrying the outlier
flags. Then runs that do not tune, their upstream tasks reused as the backend's cache would (only Tuner
and Trainer execute): on open-source KFP the Tuner hands on the tuning ML Metadata knows and passes over
a record whose artifact was never published; on Vertex AI (no store a task reaches) the records
directory alone decides. One tuned run serves both, rather than a third full run of the spec."""

import contextlib
import json
import os
import pathlib
import shutil
import time

import pytest
import tensorflow as tf
import yaml
from ml_metadata.proto import metadata_store_pb2 as pb

import schemas
from components.baseline_model import latest_pushed_version
from components.bulk_inferrer import scoring
from components.tuner import tuning_records
from cli import main as cli
from foundation import metadata_store
from foundation.model_files import TRAINING_RECORD
from pipeline import data, kubeflow_compile
from pipeline.config import PipelineConfig
from support.kfp_api_server import FakeKfpApi
from support.kubeflow.metadata_service import MetadataService
from support.kubeflow.open_source import OpenSourceKfpBackend
from support.kubeflow.run import KfpRun, TaskFailed, image_environment
from support.kubeflow.vertex import VertexBackend
from support.served_traffic import LogWriter
from taxi_model import contract
from taxi_model.hyperparameters import SEARCH_SPACE
from taxi_model.inputs import VALIDATION_BATCH

pytestmark = pytest.mark.e2e


ROWS = 2000
TRAIN_STEPS = 200
EVAL_STEPS = 20
TUNING_TRIAL_STEPS = 60
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNPUBLISHED = {'learning_rate': 0.01, 'hidden_units': '32-16', 'embedding_dim': 4}


def _compile(root, name, **settings):
    # Compiled for a bucket the run never sees: the run's data_root parameter points to root/data instead.
    config = PipelineConfig.for_kubeflow(
        'chicago-taxi-pipeline:test', str(root / 'pipeline_root'), 'gs://never-read/data',
        str(root / 'serving_model'), schema_file=schemas.CURATED_SCHEMA, tuning_trial_steps=TUNING_TRIAL_STEPS,
        **settings)
    return config, kubeflow_compile.compile_pipeline(config, str(root / name))[0]


def _parameters(root, tune):
    return {'data_root': str(root / 'data'), 'train_steps': TRAIN_STEPS, 'eval_steps': EVAL_STEPS, 'tune': tune,
            'tuning_max_trials': 1}


def _run(backend: str, tmp_path_factory, stack: contextlib.ExitStack):
    root = tmp_path_factory.mktemp(f'kfp_{backend}')
    data.prepare_sample(str(root / 'data'), rows=ROWS)
    # A container's /tmp is its own: the tasks' temp files stay in this run's directory.
    (root / 'tmp').mkdir()
    env = {**image_environment(os.path.join(REPO, 'Dockerfile')), 'TMPDIR': str(root / 'tmp')}
    if backend == 'vertex':
        config, spec_path = _compile(root, 'compiled')
        run = KfpRun(spec_path, config.pipeline_root, VertexBackend(), env=env, parameters=_parameters(root, 0))
        return config, run, run.run(), None, None
    service = stack.enter_context(MetadataService(str(root / 'metadata.sqlite')))
    store = metadata_store.connect(grpc_address=service.address)
    config, spec_path = _compile(root, 'compiled', metadata_grpc=service.address)
    run = KfpRun(spec_path, config.pipeline_root, OpenSourceKfpBackend(store), env=env,
                 parameters=_parameters(root, 1))
    return config, run, run.run(), store, service.address


@pytest.fixture(scope='module')
def backend_runs(tmp_path_factory):
    """One run per backend for the whole module, made when first asked for."""
    made = {}
    with contextlib.ExitStack() as stack:
        def run_on(backend):
            if backend not in made:
                made[backend] = _run(backend, tmp_path_factory, stack)
            return made[backend]
        yield run_on


@pytest.fixture(scope='module', params=['open_source', 'vertex'])
def kfp_run(request, backend_runs):
    return backend_runs(request.param)


@pytest.fixture(scope='module')
def open_source_run(backend_runs):
    """The open-source backend's run, with its ML Metadata served over gRPC (Vertex keeps its own)."""
    return backend_runs('open_source')


def test_every_task_runs_once_after_the_tasks_it_depends_on(kfp_run):
    _, run, results, _, _ = kfp_run
    tasks = run.spec['root']['dag']['tasks']
    ran = list(results)
    assert sorted(ran) == sorted(tasks)
    for name, task in tasks.items():
        assert all(ran.index(upstream) < ran.index(name) for upstream in task.get('dependentTasks', [])), name


def test_the_runs_parameters_reach_the_tasks(kfp_run):
    _, _, results, _, _ = kfp_run
    model = results['Trainer'].outputs['model'][0]
    assert int(model['metadata']['train_steps']) == TRAIN_STEPS  # not the compiled default
    # The drift check's result reached the model (read from an input's JSON-valued custom properties).
    assert model['metadata']['drift_verdict'] == 'no baseline'
    # ... and run_fn got them: what it planned is in the model run's training record.
    run_dir = results['Trainer'].outputs['model_run'][0]['uri']
    with open(os.path.join(run_dir, TRAINING_RECORD)) as f:
        record = json.load(f)
    assert record['steps_planned'] == TRAIN_STEPS
    assert record['validation_examples'] == EVAL_STEPS * VALIDATION_BATCH


def test_example_gen_resolved_the_span_pattern_and_records_the_span(kfp_run):
    # Without ExampleGen's driver, `span-{SPAN}/*.csv` matches no file: open-source KFP
    # never runs the preCacheCheck, so the image's entry point runs it.
    _, _, results, _, _ = kfp_run
    examples = results['CsvExampleGen'].outputs['examples'][0]
    assert json.loads(examples['metadata']['split_names']) == ['train', 'eval']
    assert examples['metadata']['span'] == 1
    files = tf.io.gfile.glob(os.path.join(examples['uri'], 'Split-*', '*.gz'))
    count = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP'))
    assert count == ROWS


def test_model_is_blessed_and_pushed_and_serves(kfp_run, taxi_rows):
    config, _, results, _, _ = kfp_run
    blessing = results['Evaluator'].outputs['blessing'][0]
    assert blessing['metadata']['blessed'] == 1
    # The candidate was served, called over REST and gRPC and behaviour-tested inside the task, on both backends.
    infra = results['InfraValidation'].outputs['blessing'][0]
    assert infra['metadata']['blessed'] == 1, infra['metadata'].get('reason')
    assert infra['metadata']['checks_passed'] >= 18 and json.loads(infra['metadata']['checks_failed']) == []
    pushed = results['Pusher'].outputs['pushed_model'][0]
    assert pushed['metadata']['pushed'] == 1
    version = latest_pushed_version(config.serving_model_dir)
    assert pushed['metadata']['pushed_destination'] == os.path.join(config.serving_model_dir, version)
    model = tf.saved_model.load(os.path.join(config.serving_model_dir, version))
    header, rows = taxi_rows
    inputs = contract.raw_inputs([dict(zip(header, r)) for r in rows[-20:]])
    outputs = model.signatures[contract.PREDICT_RAW](**{k: tf.constant(v) for k, v in inputs.items()})
    assert outputs[contract.PROBABILITIES].shape == (20, 1)


def test_open_source_kfp_recorded_the_run_in_ml_metadata_as_its_driver_and_launcher_do(open_source_run):
    _, run, results, store, _ = open_source_run
    [run_context] = store.get_contexts_by_type('system.PipelineRun')
    assert run_context.name == run.run_id
    assert run_context.custom_properties['pipeline_root'].string_value.endswith(f'{run.pipeline_name}/{run.run_id}')
    [pipeline_context] = store.get_parent_contexts_by_context(run_context.id)
    assert pipeline_context.name == run.pipeline_name and pipeline_context.type == 'system.Pipeline'
    [dag] = store.get_executions_by_type('system.DAGExecution')
    assert dag.name == f'run/{run.run_id}' and dag.last_known_state == pb.Execution.COMPLETE
    tasks = {e.custom_properties['task_name'].string_value: e for e in store.get_executions_by_type(
        'system.ContainerExecution')}
    assert set(tasks) == set(results)
    trainer = tasks['Trainer']
    assert trainer.last_known_state == pb.Execution.COMPLETE
    assert trainer.custom_properties['parent_dag_id'].int_value == dag.id
    assert trainer.custom_properties['inputs'].struct_value['train_steps'] == TRAIN_STEPS
    assert trainer.custom_properties['image'].string_value == 'chicago-taxi-pipeline:test'
    # Inputs and outputs by event, path = the key; types named by schema title, numbers as doubles.
    events = store.get_events_by_execution_ids([trainer.id])
    inputs = {e.path.steps[0].key for e in events if e.type == pb.Event.INPUT}
    outputs = {e.path.steps[0].key: e.artifact_id for e in events if e.type == pb.Event.OUTPUT}
    assert {'examples', 'transform_graph', 'schema'} <= inputs
    assert set(outputs) == {'model', 'model_run', 'executor-logs'}  # the launcher's log, too
    [model] = store.get_artifacts_by_id([outputs['model']])
    assert model.type == 'tfx.Model' and model.state == pb.Artifact.LIVE and not model.name
    assert model.custom_properties['display_name'].string_value == 'model'
    [pushed] = store.get_artifacts_by_type('tfx.PushedModel')
    assert pushed.custom_properties['pushed'].double_value == 1.0
    [logs] = store.get_artifacts_by_id([outputs['executor-logs']])
    assert logs.type == 'system.Artifact' and 'Starting executor' in open(logs.uri).read()
    example_gen = [e for e in store.get_events_by_execution_ids([tasks['CsvExampleGen'].id])
                   if e.type == pb.Event.OUTPUT and e.path.steps[0].key == 'examples']
    [examples] = store.get_artifacts_by_id([e.artifact_id for e in example_gen])
    assert examples.type == 'tfx.Examples' and metadata_store.number(examples.custom_properties, 'span') == 1


def test_the_run_leaves_views_of_the_types_the_kubeflow_ui_renders(kfp_run):
    _, run, results, store, _ = kfp_run
    outputs = run.component('RunViews')['outputDefinitions']['artifacts']
    titles = {key: yaml.safe_load(d['artifactType']['instanceSchema'])['title'] for key, d in outputs.items()}
    assert titles == {'metrics': 'system.Metrics', 'classification_metrics': 'system.ClassificationMetrics',
                      'report': 'system.HTML', 'summary': 'system.Markdown'}
    views = {key: artifacts[0] for key, artifacts in results['RunViews'].outputs.items()}
    assert 0.5 < views['metrics']['metadata']['auc'] <= 1 and views['metrics']['metadata']['rows | train'] > 0
    roc = views['classification_metrics']['metadata']['confidenceMetrics']
    assert len(roc) == 21 and set(roc[0]) == {'confidenceThreshold', 'recall', 'falsePositiveRate'}
    # The HTML and Markdown are the one file at the artifact's URI, which the UI reads.
    with open(views['report']['uri']) as f:
        page = f.read()
    assert '<h2>ROC curve</h2>' in page and '<h2>Per slice</h2>' in page and 'Confusion matrix' in page
    with open(views['summary']['uri']) as f:
        assert f.read().startswith('## Model: blessed, pushed to ')
    if store is None:
        return
    # As open-source KFP records them: typed by title, named for the UI, lists and dicts wrapped.
    for key, title in titles.items():
        [artifact] = store.get_artifacts_by_type(title)
        assert artifact.custom_properties['display_name'].string_value == key
    [classification] = store.get_artifacts_by_type('system.ClassificationMetrics')
    matrix = classification.custom_properties['confusionMatrix'].struct_value['struct']
    assert [spec['displayName'] for spec in matrix['annotationSpecs']] == ['no tip', 'tip']
    assert len(classification.custom_properties['confidenceMetrics'].struct_value['list']) == 21
    [metrics] = store.get_artifacts_by_type('system.Metrics')
    # ML Metadata's store here keeps a double's fraction to 6 significant digits.
    assert metrics.custom_properties['auc'].double_value == pytest.approx(views['metrics']['metadata']['auc'], rel=1e-5)


def test_the_operate_commands_answer_from_the_store_open_source_kfp_populated_over_grpc(open_source_run, tmp_path,
                                                                                       capsys, release_identities,
                                                                                       monkeypatch):
    from support.release_users import ALICE, BOB
    config, run, _, _, address = open_source_run
    base = config.serving_model_dir
    version = latest_pushed_version(base)
    grpc = ['--metadata-grpc', address]
    registry = [*grpc, '--model-base-path', base, '--serving-config', str(tmp_path / 'serving' / 'models.config')]
    reports = ['--reports-dir', str(tmp_path / 'reports')]

    def run_cli(*args):
        capsys.readouterr()
        code = cli.main(list(args))
        return code, capsys.readouterr().out

    code, out = run_cli('runs', *grpc, '--json')
    [listed] = json.loads(out)
    assert code == 0 and listed['run'] == run.run_id and listed['blessed'] is True and listed['span'] == 1
    assert listed['parameters']['train_steps'] == TRAIN_STEPS
    # What differs from a local run is shown: the image the tasks ran in, from the driver's record.
    assert listed['code']['image'] == 'chicago-taxi-pipeline:test'
    code, out = run_cli('lineage', version, *grpc, '--model-base-path', base, '--json')
    lineage = json.loads(out)
    assert code == 0 and lineage['run']['name'] == run.run_id and lineage['training']['train_steps'] == TRAIN_STEPS
    assert lineage['data']['span'] == 1 and lineage['evaluation']['blessed'] is True
    identities = release_identities.install(monkeypatch)
    assert run_cli('models', 'approve', version, *registry, *identities.flags(ALICE), '--reason', 'ok')[0] == 0
    assert run_cli('models', 'promote', version, '--to', 'stable', *registry, *identities.flags(BOB),
                   '--reason', 'go')[0] == 0
    code, out = run_cli('models', 'list', *registry)
    assert code == 0 and f'{version}  stable' in out and 'history verified' in out
    code, out = run_cli('model-card', version, *grpc, '--model-base-path', base, *reports)
    assert code == 0 and (tmp_path / 'reports' / f'model-card-{version}.html').exists()
    # A monitoring pass over traffic the pushed model answered is recorded in the same store.
    header, rows = data.read_rows(data.taxi_sample_path())
    now = int(time.time() * 1e6)
    LogWriter(base, int(version)).write(str(tmp_path / 'logs'), [dict(zip(header, r)) for r in rows[:200]],
                                        now - 600_000_000, 'r1')
    code, out = run_cli('monitor', '--request-log-dir', str(tmp_path / 'logs'), '--model-base-path', base,
                        '--window', '1h', *grpc, '--report-dir', str(tmp_path / 'reports'),
                        '--feedback-dir', str(tmp_path / 'feedback'))
    assert code in (0, 3) and 'Recorded in ML Metadata' in out  # 3: it alerted; recorded either way
    code, out = run_cli('lineage', version, *grpc, '--model-base-path', base, '--json')
    [window] = json.loads(out)['live']
    assert window['examples'] == 200 and window['model_version'] == int(version)
    # The continuous-training trigger reads the trained span from the same store.
    data_root = lineage['data']['data_root']
    schedule = ['schedule', '--once', '--workspace', str(tmp_path / 'ws'), '--data-root', data_root,
                '--no-alert-trigger', *grpc, '--package', run.spec_path]
    with FakeKfpApi() as api:
        assert run_cli('submit', '--host', api.host, '--package', run.spec_path, '--version', 'v1')[0] == 0
        code, out = run_cli(*schedule, '--kubeflow-host', api.host)
        assert code == 0 and 'Nothing due' in out and not api.runs  # span 1 is trained
        shutil.copytree(os.path.join(data_root, 'span-1'), os.path.join(data_root, 'span-2'))
        try:
            code, out = run_cli(*schedule, '--kubeflow-host', api.host)
        finally:
            shutil.rmtree(os.path.join(data_root, 'span-2'))
    assert code == 0 and '"last_trained_span": 1, "span": 2' in out and len(api.runs) == 1


def _rerun(spec, config, backend, parameters, env, upstream):
    """Tuner and Trainer of a new run, every other task's outputs taken from `upstream` (a cache hit)."""
    run = KfpRun(spec, config.pipeline_root, backend, env=env, parameters=parameters)
    run.results = dict(upstream.results)
    backend.run_started(run)
    for name in ('Tuner', 'Trainer'):
        assert run.run_task(name).returncode == 0, open(run.results[name].log_path).read()[-3000:]
    backend.run_finished(run, None)
    return run.results


@pytest.fixture(scope='module')
def untuned_reruns(open_source_run, tmp_path_factory):
    """After the tuned open-source run, a newer tuning record whose artifact was never published (a run
    killed after writing it), then a run that does not tune on each backend. The open-source one runs
    against a copy of the cluster's store as the tuned run left it, so the tuned run's own records stay
    as its tests read them."""
    config, tuned, _, _, _ = open_source_run
    origin = pathlib.Path(tuned.parameters['data_root']).parent  # the pipeline root and records are the tuned run's
    copy = tmp_path_factory.mktemp('kfp_reruns') / 'metadata.sqlite'
    tuning_records.write(config.tuning_records_dir, tuning_records.new_record(
        UNPUBLISHED, [], 'val_auc', str(copy.parent / 'never-published'), 0.0, 1, 60.0, TUNING_TRIAL_STEPS))
    shutil.copy(origin / 'metadata.sqlite', copy)
    parameters = dict(tuned.parameters, tune=0)
    with MetadataService(str(copy)) as service:
        _, spec = _compile(origin, 'rerun_open_source', metadata_grpc=service.address)
        reused = OpenSourceKfpBackend(metadata_store.connect(grpc_address=service.address))
        reused.executions = dict(tuned.backend.executions)  # the same ids in the copy
        open_source = _rerun(spec, config, reused, parameters, tuned.env, tuned)
    _, vertex_spec = _compile(origin, 'rerun_vertex')
    vertex = _rerun(vertex_spec, config, VertexBackend(), parameters, tuned.env, tuned)
    return {'open_source': open_source, 'vertex': vertex}


def _best(results):
    return results['Tuner'].outputs['best_hyperparameters'][0]


def _trained_with(results):
    return results['Trainer'].outputs['model'][0]['metadata']


def test_a_tuning_run_searches_and_the_trainer_trains_with_its_best(open_source_run):
    _, _, tuned, store, _ = open_source_run
    best = _best(tuned)
    assert best['metadata']['source'] == tuning_records.TUNED
    [trial] = json.loads(best['metadata']['trials'])
    assert set(trial['values']) == set(SEARCH_SPACE) and 0.5 < trial['score'] <= 1
    model = _trained_with(tuned)
    assert model['hyperparameters_source'] == tuning_records.TUNED and model['hyperparameters_tuned_uri'] == best['uri']
    trained = json.loads(model['hyperparameters'])
    assert trained['learning_rate'] == trial['values']['learning_rate']
    assert trained['hidden_units'] == [int(u) for u in trial['values']['hidden_units'].split('-')]
    # Every trial is in the cluster's ML Metadata, on the artifact the launcher recorded.
    [recorded] = store.get_artifacts_by_uri(best['uri'])
    assert json.loads(recorded.custom_properties['trials'].string_value) == [trial]


def test_the_bulk_inferrer_scores_the_span_with_the_blessed_candidate_and_its_flags(open_source_run):
    _, _, tuned, _, _ = open_source_run
    assert tuned['Evaluator'].outputs['blessing'][0]['metadata']['blessed'] == 1
    scored = tuned['BulkInferrer'].outputs['inference_result'][0]
    assert scored['metadata']['inferred'] == 1 and scored['metadata']['splits'] == 'eval'
    logs = scoring.read_prediction_logs(scored['uri'])
    assert len(logs) == scored['metadata']['examples'] > 0
    outputs = logs[0].predict_log.response.outputs
    assert {contract.PROBABILITIES, contract.IS_OUTLIER, contract.OUTLIER_SCORE} <= set(outputs)
    assert sum(log.predict_log.response.outputs[contract.IS_OUTLIER].bool_val[0] for log in logs) == \
        scored['metadata']['outliers']


def test_on_open_source_kfp_a_run_that_does_not_tune_hands_on_the_tuning_ml_metadata_knows(open_source_run,
                                                                                         untuned_reruns):
    _, _, tuned, _, _ = open_source_run
    rerun = untuned_reruns['open_source']
    best = _best(rerun)
    assert best['metadata']['source'] == tuning_records.PREVIOUS
    assert best['metadata']['tuned_uri'] == _best(tuned)['uri']  # not the unpublished newer record
    model = _trained_with(rerun)
    assert model['hyperparameters_source'] == tuning_records.PREVIOUS
    assert json.loads(model['hyperparameters']) == json.loads(_trained_with(tuned)['hyperparameters'])


def test_on_vertex_the_records_directory_alone_decides(untuned_reruns):
    best = _best(untuned_reruns['vertex'])
    assert best['metadata']['source'] == tuning_records.PREVIOUS
    assert json.loads(best['metadata']['hyperparameters']) == UNPUBLISHED
    trained = json.loads(_trained_with(untuned_reruns['vertex'])['hyperparameters'])
    assert trained['hidden_units'] == [32, 16] and trained['embedding_dim'] == 4


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
    run = KfpRun(str(path), str(tmp_path / 'root'), VertexBackend())
    with pytest.raises(TaskFailed, match='second'):
        run.run()
    assert list(run.results) == ['first', 'second']
