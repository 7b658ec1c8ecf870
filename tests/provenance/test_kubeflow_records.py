"""Runs as Kubeflow Pipelines v2 records them read like local ones: `system.PipelineRun` contexts, tasks
named by `task_name`, parameters in one `inputs` struct, `tfx.` type names, every number a double."""

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from foundation import metadata_store
from provenance import run_record

pytestmark = pytest.mark.unit


BASE = 'gs://bucket/serving_model/chicago-taxi'


@pytest.fixture
def store(tmp_path):
    store = metadata_store.connect(str(tmp_path / 'kfp.sqlite'))
    run_type = store.put_context_type(pb.ContextType(name='system.PipelineRun'))
    container = store.put_execution_type(pb.ExecutionType(name='system.ContainerExecution'))
    dag = store.put_execution_type(pb.ExecutionType(name='system.DAGExecution'))
    [run_id] = store.put_contexts([pb.Context(type_id=run_type, name='3f2c-run-uuid')])
    run = store.get_contexts_by_id([run_id])[0]
    # The run's root DAG, still RUNNING as KFP leaves it while tasks report: not a component.
    store.put_execution(pb.Execution(type_id=dag, last_known_state=pb.Execution.RUNNING), [], [run])

    def task(name, outputs, parameters):
        execution = pb.Execution(type_id=container, last_known_state=pb.Execution.COMPLETE)
        execution.custom_properties['task_name'].string_value = name
        for key, value in parameters.items():
            execution.custom_properties['inputs'].struct_value.fields[key].number_value = value
        events = []
        for key, artifact in outputs:
            event = pb.Event(type=pb.Event.OUTPUT)
            event.path.steps.add().key = key
            events.append((artifact, event))
        store.put_execution(execution, events, [run])

    blessing_type = store.put_artifact_type(pb.ArtifactType(name='tfx.ModelBlessing'))
    pushed_type = store.put_artifact_type(pb.ArtifactType(name='tfx.PushedModel'))
    blessing = pb.Artifact(type_id=blessing_type, uri='gs://bucket/Evaluator/blessing')
    blessing.custom_properties['blessed'].double_value = 1.0
    task('Evaluator', [('blessing', blessing)], {'min_auc': 0.7, 'max_auc_drop': 0.01})
    task('Trainer', [], {'train_steps': 5000.0})
    pushed = pb.Artifact(type_id=pushed_type, uri='gs://bucket/Pusher/pushed_model')
    pushed.custom_properties['pushed'].double_value = 1.0
    pushed.custom_properties['pushed_version'].string_value = '1700000000'
    pushed.custom_properties['pushed_destination'].string_value = f'{BASE}/1700000000'
    task('Pusher', [('pushed_model', pushed)], {})
    return store


def test_a_kubeflow_run_reads_like_a_local_one(store):
    [run] = run_record.all_runs(store)
    assert set(run.steps) == {'Evaluator', 'Trainer', 'Pusher'}  # the DAG execution is no component
    assert run.outcome == 'succeeded'
    assert run.parameters() == {'train_steps': 5000, 'min_auc': 0.7, 'max_auc_drop': 0.01}
    assert run.blessed is True and run.pushed_version == 1700000000
    assert metadata_store.pushed_model(store, BASE, 1700000000) is not None
