"""A local run's progress lines, read from ML Metadata as the launcher records executions."""

import time

import pytest
from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store
from pipeline import run_progress
from pipeline.config import PipelineConfig

pytestmark = pytest.mark.unit


def _types(store):
    run_type = store.put_context_type(metadata_store_pb2.ContextType(name='pipeline_run'))
    node_type = store.put_context_type(metadata_store_pb2.ContextType(name='node'))
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name='Component'))
    return run_type, node_type, execution_type


def _start(store, config, types, run_id, node_id):
    run_type, node_type, execution_type = types
    execution = metadata_store_pb2.Execution(type_id=execution_type,
                                             last_known_state=metadata_store_pb2.Execution.RUNNING)
    node = metadata_store_pb2.Context(type_id=node_type, name=f'{config.pipeline_name}.{node_id}')
    execution_id, _, _ = store.put_execution(execution, [], [node])
    store.put_attributions_and_associations([], [metadata_store_pb2.Association(context_id=run_id,
                                                                                  execution_id=execution_id)])
    return execution_id


def test_progress_follows_the_store_and_outlives_a_failed_poll(tmp_path, monkeypatch):
    config = PipelineConfig.for_workspace(str(tmp_path))
    lines = []
    progress = run_progress.MetadataProgress(config, lines.append)
    progress.poll()  # no store yet: nothing, no error
    assert lines == []

    store = metadata_store.connect(config.metadata_path)
    types = _types(store)
    [run_id] = store.put_contexts([metadata_store_pb2.Context(type_id=types[0], name='run-1')])
    first = _start(store, config, types, run_id, 'CsvExampleGen')
    progress.poll()
    assert lines == ['  ▶ CsvExampleGen ...']

    # The store refuses a poll (the runner holding SQLite's lock): no line, and the next poll reads again.
    monkeypatch.setattr(run_progress.run_summary, 'latest_run', _raise)
    progress.poll()
    monkeypatch.undo()
    store.put_executions([metadata_store_pb2.Execution(id=first, type_id=types[2],
                                                       last_known_state=metadata_store_pb2.Execution.COMPLETE)])
    time.sleep(0.01)
    _start(store, config, types, run_id, 'StatisticsGen')
    progress.poll()
    assert lines[1].startswith('  ✔ CsvExampleGen done (') and lines[2:] == ['  ▶ StatisticsGen ...']
    progress.poll()  # nothing changed: nothing printed again
    assert len(lines) == 3


def _raise(*args, **kwargs):
    raise RuntimeError('database is locked')
