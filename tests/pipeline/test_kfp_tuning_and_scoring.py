"""The compiled spec's Tuner and BulkInferrer tasks on both Kubeflow backends (tests/support/kubeflow).

One open-source KFP run sets the `tune` parameter, as a Kubeflow Pipelines UI user sets it: the Tuner
searches (one trial: the budget is a parameter too), its best values reach the Trainer, every trial is
in the cluster's ML Metadata, and the BulkInferrer scores the new span with the blessed candidate into
PredictionLogs carrying the outlier flags. Then runs that do not tune, their upstream tasks reused as
the backend's cache would (only Tuner and Trainer execute): on open-source KFP, compiled with the
cluster's metadata service, the Tuner hands on the tuning ML Metadata knows and passes over a record
whose artifact was never published; on Vertex AI (no store a task reaches) the records directory alone
decides."""

import contextlib
import json
import os

import pytest

import schemas
from components.bulk_inferrer import scoring
from components.tuner import tuning_records
from pipeline import data, kubeflow_compile
from pipeline.config import PipelineConfig
from foundation import metadata_store
from support.kubeflow.metadata_service import MetadataService
from support.kubeflow.open_source import OpenSourceKfpBackend
from support.kubeflow.run import KfpRun, image_environment
from support.kubeflow.vertex import VertexBackend
from taxi_model import contract
from taxi_model.hyperparameters import SEARCH_SPACE

pytestmark = pytest.mark.e2e

ROWS = 2000
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNPUBLISHED = {'learning_rate': 0.01, 'hidden_units': '32-16', 'embedding_dim': 4}


def _parameters(root, tune):
    return {'data_root': str(root / 'data'), 'train_steps': 150, 'eval_steps': 10, 'tune': tune,
            'tuning_max_trials': 1}


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
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('kfp_tuning')
    data.prepare_sample(str(root / 'data'), rows=ROWS)
    (root / 'tmp').mkdir()
    env = {**image_environment(os.path.join(REPO, 'Dockerfile')), 'TMPDIR': str(root / 'tmp')}

    def compiled(name, **settings):
        config = PipelineConfig.for_kubeflow(
            'chicago-taxi-pipeline:test', str(root / 'pipeline_root'), 'gs://never-read/data',
            str(root / 'serving_model'), schema_file=schemas.CURATED_SCHEMA, tuning_trial_steps=60, **settings)
        return config, kubeflow_compile.compile_pipeline(config, str(root / name))[0]
    with contextlib.ExitStack() as stack:
        service = stack.enter_context(MetadataService(str(root / 'metadata.sqlite')))
        store = metadata_store.connect(grpc_address=service.address)
        config, spec = compiled('open_source', metadata_grpc=service.address)
        backend = OpenSourceKfpBackend(store)
        tuning = KfpRun(spec, config.pipeline_root, backend, env=env, parameters=_parameters(root, 1))
        tuned = tuning.run()
        # A newer record whose artifact was never published (a run killed after writing it).
        tuning_records.write(config.tuning_records_dir, tuning_records.new_record(
            UNPUBLISHED, [], 'val_auc', str(root / 'never-published'), 0.0, 1, 60.0, 60))
        reused = OpenSourceKfpBackend(store)
        reused.executions = dict(backend.executions)
        open_source = _rerun(spec, config, reused, _parameters(root, 0), env, tuning)
        vertex_config, vertex_spec = compiled('vertex')
        vertex = _rerun(vertex_spec, vertex_config, VertexBackend(), _parameters(root, 0), env, tuning)
        yield {'tuned': tuned, 'open_source': open_source, 'vertex': vertex, 'store': store}


def _best(results):
    return results['Tuner'].outputs['best_hyperparameters'][0]


def _trained_with(results):
    return results['Trainer'].outputs['model'][0]['metadata']


def test_a_tuning_run_searches_and_the_trainer_trains_with_its_best(runs):
    tuned, store = runs['tuned'], runs['store']
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


def test_the_bulk_inferrer_scores_the_span_with_the_blessed_candidate_and_its_flags(runs):
    tuned = runs['tuned']
    assert tuned['Evaluator'].outputs['blessing'][0]['metadata']['blessed'] == 1
    scored = tuned['BulkInferrer'].outputs['inference_result'][0]
    assert scored['metadata']['inferred'] == 1 and scored['metadata']['splits'] == 'eval'
    logs = scoring.read_prediction_logs(scored['uri'])
    assert len(logs) == scored['metadata']['examples'] > 0
    outputs = logs[0].predict_log.response.outputs
    assert {contract.PROBABILITIES, contract.IS_OUTLIER, contract.OUTLIER_SCORE} <= set(outputs)
    assert sum(log.predict_log.response.outputs[contract.IS_OUTLIER].bool_val[0] for log in logs) == \
        scored['metadata']['outliers']


def test_on_open_source_kfp_a_run_that_does_not_tune_hands_on_the_tuning_ml_metadata_knows(runs):
    best = _best(runs['open_source'])
    assert best['metadata']['source'] == tuning_records.PREVIOUS
    assert best['metadata']['tuned_uri'] == _best(runs['tuned'])['uri']  # not the unpublished newer record
    model = _trained_with(runs['open_source'])
    assert model['hyperparameters_source'] == tuning_records.PREVIOUS
    assert json.loads(model['hyperparameters']) == json.loads(_trained_with(runs['tuned'])['hyperparameters'])


def test_on_vertex_the_records_directory_alone_decides(runs):
    best = _best(runs['vertex'])
    assert best['metadata']['source'] == tuning_records.PREVIOUS
    assert json.loads(best['metadata']['hyperparameters']) == UNPUBLISHED
    trained = json.loads(_trained_with(runs['vertex'])['hyperparameters'])
    assert trained['hidden_units'] == [32, 16] and trained['embedding_dim'] == 4
