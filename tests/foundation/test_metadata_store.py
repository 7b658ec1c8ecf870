"""foundation.metadata_store: one way to open ML Metadata, and properties read right as either runner stores them."""

import pytest
from google.protobuf import struct_pb2
from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store

pytestmark = pytest.mark.unit


def _properties(**values):
    execution = metadata_store_pb2.Execution()
    for name, value in values.items():
        target = execution.custom_properties[name]
        if isinstance(value, bool) or isinstance(value, int):
            target.int_value = int(value)
        elif isinstance(value, float):
            target.double_value = value
        else:
            target.string_value = value
    return execution


def test_numbers_read_the_same_whether_a_runner_stored_ints_or_doubles():
    local = _properties(train_steps=628, blessed=1, pushed=0, rate=0.25)
    kubeflow = _properties(train_steps=628.0, blessed=1.0, pushed=0.0, rate=0.25)
    for execution in (local, kubeflow):
        p = execution.custom_properties
        assert metadata_store.number(p, 'train_steps') == 628 and isinstance(metadata_store.number(p, 'train_steps'), int)
        assert metadata_store.number(p, 'rate') == 0.25
        assert metadata_store.flag(p, 'blessed') is True and metadata_store.flag(p, 'pushed') is False
        assert metadata_store.number(p, 'absent', default=-1) == -1 and metadata_store.flag(p, 'absent') is False


def test_an_exec_property_is_found_on_its_own_or_in_kubeflows_inputs_struct():
    local = _properties(train_steps=628, data_root='/data')
    kubeflow = metadata_store_pb2.Execution()
    inputs = struct_pb2.Struct()
    inputs.update({'train_steps': 628.0, 'data_root': '/data', 'min_auc': 0.7})
    kubeflow.custom_properties['inputs'].struct_value.CopyFrom(inputs)
    for execution in (local, kubeflow):
        assert metadata_store.exec_property(execution, 'train_steps') == 628
        assert metadata_store.exec_property(execution, 'data_root') == '/data'
        assert metadata_store.exec_property(execution, 'nothing') is None
    assert metadata_store.exec_property(kubeflow, 'min_auc') == 0.7


def test_type_names_of_both_runners():
    assert metadata_store.type_name('tfx.PushedModel') == 'PushedModel' == metadata_store.type_name('PushedModel')
    assert metadata_store.type_names('Examples') == ('Examples', 'tfx.Examples')


def test_a_missing_store_is_refused_in_one_line_and_not_created(tmp_path):
    path = tmp_path / 'metadata.sqlite'
    with pytest.raises(metadata_store.MissingStore) as raised:
        metadata_store.connect_existing(str(path))
    assert '\n' not in str(raised.value) and 'make run' in str(raised.value)
    assert not path.exists()
    assert metadata_store.connect_if_present(str(path)) is None
    with pytest.raises(ValueError, match='HOST:PORT'):
        metadata_store.connect(grpc_address='no-port')


def test_a_reader_cannot_write(tmp_path):
    path = str(tmp_path / 'metadata.sqlite')
    writer = metadata_store.connect(path)  # created on first use
    writer.put_context_type(metadata_store_pb2.ContextType(name='made'))
    reader = metadata_store.connect_existing(path)
    assert reader.get_context_type('made').name == 'made'
    with pytest.raises(Exception):
        reader.put_context_type(metadata_store_pb2.ContextType(name='refused'))


def test_the_pushed_model_of_a_version_by_destination_else_by_version(tmp_path):
    store = metadata_store.connect(str(tmp_path / 'metadata.sqlite'))
    kubeflow_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name='tfx.PushedModel'))

    def pushed(version, destination):
        artifact = metadata_store_pb2.Artifact(type_id=kubeflow_type)
        artifact.custom_properties['pushed_version'].string_value = str(version)
        artifact.custom_properties['pushed_destination'].string_value = destination
        artifact.custom_properties['pushed'].double_value = 1.0
        return store.put_artifacts([artifact])[0]

    copied = pushed(7, '/elsewhere/7')
    assert metadata_store.find_pushed_model(store, '/models/taxi', 7)[0].id == copied
    assert metadata_store.find_pushed_model(store, '/models/taxi', 7)[1] == metadata_store.BY_VERSION
    exact = pushed(7, '/models/taxi/7')
    found, how = metadata_store.find_pushed_model(store, '/models/taxi/', 7)
    assert (found.id, how) == (exact, metadata_store.BY_DESTINATION)
    assert metadata_store.flag(found.custom_properties, 'pushed')
    assert metadata_store.pushed_model(store, '/models/taxi', 8) is None


def test_pushed_versions_are_those_pushed_to_this_base_as_either_runner_records_them(tmp_path):
    store = metadata_store.connect(str(tmp_path / 'metadata.sqlite'))
    local = store.put_artifact_type(metadata_store_pb2.ArtifactType(name='PushedModel'))
    kubeflow = store.put_artifact_type(metadata_store_pb2.ArtifactType(name='tfx.PushedModel'))

    def pushed(type_id, destination, flag_value):
        artifact = metadata_store_pb2.Artifact(type_id=type_id)
        artifact.custom_properties['pushed_destination'].string_value = destination
        artifact.custom_properties['pushed_version'].string_value = destination.rstrip('/').rsplit('/', 1)[1]
        if type_id == local:
            artifact.custom_properties['pushed'].int_value = flag_value
        else:
            artifact.custom_properties['pushed'].double_value = float(flag_value)
        store.put_artifacts([artifact])

    pushed(local, '/models/taxi/7', 1)
    pushed(kubeflow, '/models/taxi/9/', 1)
    pushed(local, '/models/taxi/8', 0)          # not blessed: nothing pushed
    pushed(local, '/models/taxi-2/10', 1)       # another base that shares a prefix
    pushed(local, '/models/taxi/.push-11-x', 1)
    assert metadata_store.pushed_versions(store, '/models/taxi', by_version=False) == {7, 9}
    assert metadata_store.pushed_versions(store, '/models/taxi/', by_version=False) == {7, 9}
    assert metadata_store.pushed_versions(store, '/elsewhere', by_version=False) == set()
    # By version too, as find_pushed_model falls back: a version copied here from another destination.
    assert metadata_store.pushed_versions(store, '/models/taxi') == {7, 9, 10}
    assert metadata_store.pushed_versions(store, '/elsewhere') == {7, 9, 10}


def test_a_task_reaches_the_store_through_one_string(tmp_path):
    path = str(tmp_path / 'metadata.sqlite')
    assert metadata_store.connection_parameter() == ''
    assert metadata_store.connect_parameter('') is None
    assert metadata_store.connection_parameter(grpc_address='metadata:8080', metadata_path=path) == 'grpc:metadata:8080'
    parameter = metadata_store.connection_parameter(metadata_path=path)
    assert parameter == f'sqlite:{path}'
    with pytest.raises(metadata_store.MissingStore):  # told there is a registry: never run without it
        metadata_store.connect_parameter(parameter)
    metadata_store.connect(path).put_context_type(metadata_store_pb2.ContextType(name='made'))
    reader = metadata_store.connect_parameter(parameter)
    assert reader.get_context_type('made').name == 'made'
    with pytest.raises(Exception):
        reader.put_context_type(metadata_store_pb2.ContextType(name='refused'))
    with pytest.raises(ValueError, match='sqlite:PATH or grpc:HOST:PORT'):
        metadata_store.connect_parameter('/just/a/path')
