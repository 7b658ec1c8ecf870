"""Our Pusher executor against TFX's own on the same inputs (the same PushedModel, the same files), and
what it adds: the sweep first, every leftover named, and with the registry, unrecorded versions."""

import json
import logging
import os
import time

import pytest
import tensorflow as tf
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.baseline_model import latest_pushed_version
from components.pusher import executor as our_pusher
from components.pusher import push_destination as pd
from foundation import metadata_store
from support.pushes import kill_push_mid_copy, make_old, record_push, tree, write_model

pytestmark = pytest.mark.component

NOW = 1796551205


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A Model artifact's directory holding a real (small) SavedModel under Format-Serving."""
    uri = str(tmp_path_factory.mktemp('model') / 'model')
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.serve = tf.function(lambda x: {'y': x * module.scale}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, os.path.join(uri, 'Format-Serving'), signatures={'serving_default': module.serve})
    return uri


def _inputs(trained, tmp_path, blessed=1):
    model = standard_artifacts.Model()
    model.uri = trained
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / 'blessing')
    blessing.set_int_custom_property('blessed', blessed)
    return {'model': [model], 'model_blessing': [blessing]}


def _push(executor_class, inputs, base, tmp_path, name, custom_config=None):
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / name / 'pushed_model')
    exec_properties = {
        'push_destination': proto_utils.proto_to_json(pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))),
        'custom_config': json.dumps(custom_config)}
    executor_class().Do(inputs, {'pushed_model': [pushed]}, exec_properties)
    return pushed


def _properties(artifact, base):
    found = {}
    for key, value in artifact.mlmd_artifact.custom_properties.items():
        kind = value.WhichOneof('value')
        found[key] = getattr(value, kind).replace(base, '<base>') if kind == 'string_value' else getattr(value, kind)
    return found


@pytest.fixture
def frozen_time(monkeypatch):
    monkeypatch.setattr(time, 'time', lambda: float(NOW))


@pytest.mark.parametrize('blessed', [1, 0])
def test_the_pushed_model_and_the_files_are_tfxs_own(trained, tmp_path, frozen_time, blessed):
    inputs = _inputs(trained, tmp_path, blessed)
    bases = {name: str(tmp_path / name / 'serving') for name in ('tfx', 'ours')}
    theirs = _push(tfx_pusher.Executor, inputs, bases['tfx'], tmp_path, 'tfx')
    ours = _push(our_pusher.Executor, inputs, bases['ours'], tmp_path, 'ours')
    assert _properties(ours, bases['ours']) == _properties(theirs, bases['tfx'])
    assert _properties(ours, bases['ours'])['pushed'] == blessed
    if blessed:
        assert _properties(ours, bases['ours'])['pushed_destination'] == f'<base>/{NOW}'
        assert os.listdir(bases['ours']) == os.listdir(bases['tfx']) == [str(NOW)]
        assert tree(os.path.join(bases['ours'], str(NOW))) == tree(os.path.join(bases['tfx'], str(NOW)))
        assert tree(ours.uri) == tree(theirs.uri)
        loaded = tf.saved_model.load(os.path.join(bases['ours'], str(NOW)))
        assert loaded.signatures['serving_default'](tf.constant([1.5]))['y'].numpy().tolist() == [3.0]
    else:
        assert not os.path.exists(bases['ours']) and not os.path.exists(bases['tfx'])


def test_an_existing_version_is_skipped_as_tfx_skips_it(trained, tmp_path, frozen_time):
    inputs = _inputs(trained, tmp_path)
    found = {}
    for name, executor in (('tfx', tfx_pusher.Executor), ('ours', our_pusher.Executor)):
        base = str(tmp_path / name / 'serving')
        write_model(os.path.join(base, str(NOW)))
        before = tree(os.path.join(base, str(NOW)))
        found[name] = _properties(_push(executor, inputs, base, tmp_path, name), base)
        assert tree(os.path.join(base, str(NOW))) == before
    assert found['ours'] == found['tfx']


class Killed(BaseException):
    """The process dying mid-write, as far as the code above the copy can tell."""


def _cut_short(source, target):
    with open(source, 'rb') as f:
        data = f.read()
    with open(target, 'wb') as f:
        f.write(data[:len(data) // 4])
    raise Killed()


def test_a_copy_that_dies_writing_saved_model_leaves_a_version_with_tfxs_pusher_and_none_with_ours(
        trained, tmp_path, monkeypatch, frozen_time):
    inputs = _inputs(trained, tmp_path)
    copy_file = tfx_pusher.io_utils.copy_file
    monkeypatch.setattr(tfx_pusher.io_utils, 'copy_file', lambda source, target, overwrite=False: (
        _cut_short(source, target) if target.endswith('saved_model.pb') else copy_file(source, target, overwrite)))
    copy_synced = pd._copy_file_synced
    monkeypatch.setattr(pd, '_copy_file_synced', lambda source, target: (
        _cut_short(source, target) if target.endswith('saved_model.pb') else copy_synced(source, target)))
    bases = {name: str(tmp_path / name / 'serving') for name in ('tfx', 'ours')}
    for name, executor in (('tfx', tfx_pusher.Executor), ('ours', our_pusher.Executor)):
        with pytest.raises(Killed):
            _push(executor, inputs, bases[name], tmp_path, name)
    # TFX's writes into the version directory: the finding, a version with a cut-short saved_model.pb.
    assert os.listdir(bases['tfx']) == [str(NOW)] and not pd.is_complete(os.path.join(bases['tfx'], str(NOW)))
    assert [(f.name, f.kind) for f in pd.leftovers(bases['tfx'])] == [(str(NOW), pd.INCOMPLETE)]
    assert latest_pushed_version(bases['tfx']) is None
    # Ours never had a version directory; what it copied is quarantined with the reason.
    assert os.listdir(bases['ours']) == [pd.QUARANTINE_DIR]
    [note] = pd.quarantined(bases['ours'])
    assert note['kind'] == pd.TEMPORARY and note['reason'].startswith('push failed: Killed')
    assert note['by'].startswith('Pusher, ')


def test_a_push_killed_mid_copy_is_quarantined_and_named_by_the_next_push(trained, tmp_path, caplog):
    base = str(tmp_path / 'serving')
    source = os.path.join(trained, 'Format-Serving')
    kill_push_mid_copy(source, base, '1796551000')
    write_model(os.path.join(base, '1796550000'), saved_model=b'\x08\x01\x12\xff\xff\x01')  # cut short
    assert not any(name.isdigit() and pd.is_complete(os.path.join(base, name)) for name in os.listdir(base))

    with caplog.at_level(logging.WARNING):
        pushed = _push(our_pusher.Executor, _inputs(trained, tmp_path), base, tmp_path, 'next')
    quarantined = json.loads(pushed.get_string_custom_property(our_pusher.QUARANTINED))
    assert {q['kind'] for q in quarantined} == {pd.TEMPORARY, pd.INCOMPLETE}
    for q in quarantined:  # each named in one line: what, where it went, why
        [line] = [r.getMessage() for r in caplog.records if q['path'] in r.getMessage()]
        assert q['moved_to'] in line and q['reason'] in line and '\n' not in line
    version = pushed.get_string_custom_property('pushed_version')
    assert sorted(os.listdir(base)) == [pd.QUARANTINE_DIR, version]
    assert latest_pushed_version(base) == version


def test_with_the_registry_the_pusher_quarantines_versions_it_never_recorded(trained, tmp_path):
    base = str(tmp_path / 'serving')
    store = metadata_store.connect(str(tmp_path / 'metadata.sqlite'))
    for version in ('1700000000', '1700000100', '1700000200'):
        write_model(os.path.join(base, version))
        make_old(os.path.join(base, version), 3600)
    record_push(store, base, '1700000000')
    record_push(store, base, '1700000100', kubeflow=True)
    write_model(os.path.join(base, '1700000300'))  # just renamed into place by a live push: within the grace
    connection = metadata_store.connection_parameter(metadata_path=str(tmp_path / 'metadata.sqlite'))

    pushed = _push(our_pusher.Executor, _inputs(trained, tmp_path), base, tmp_path, 'next',
                   custom_config={our_pusher.METADATA_CONNECTION: connection})
    [quarantined] = json.loads(pushed.get_string_custom_property(our_pusher.QUARANTINED))
    assert (quarantined['kind'], os.path.basename(quarantined['path'])) == (pd.UNREGISTERED, '1700000200')
    version = pushed.get_string_custom_property('pushed_version')
    assert sorted(os.listdir(base)) == sorted([pd.QUARANTINE_DIR, '1700000000', '1700000100', '1700000300', version])
    # Nothing swept without the registry, or when nothing was left over: the property is TFX's set alone.
    clean = _push(our_pusher.Executor, _inputs(trained, tmp_path), str(tmp_path / 'clean'), tmp_path, 'clean')
    assert our_pusher.QUARANTINED not in clean.mlmd_artifact.custom_properties
