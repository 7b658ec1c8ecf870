"""components/pusher/push_destination: versions appear whole, and what killed or unrecorded pushes
leave is found, named and quarantined (issue 24: a push killed mid-copy left a version with a
truncated saved_model.pb that the next runs took for their baseline)."""

import json
import os
import time

import pytest

from components.pusher import push_destination as pd
from support.pushes import kill_push_mid_copy, make_old, saved_model_pb, tree, write_model

pytestmark = pytest.mark.unit

VERSION = '1796551205'


@pytest.fixture
def model(tmp_path):
    return write_model(str(tmp_path / 'model'))


def _entries(base):
    return sorted(os.listdir(base))


def _note(path):
    with open(path + '.json') as f:
        return json.load(f)


def test_a_push_appears_whole_under_its_version_and_leaves_nothing_beside_it(model, tmp_path):
    base = str(tmp_path / 'serving')
    assert pd.push(model, base, VERSION) == os.path.join(base, VERSION)
    assert _entries(base) == [VERSION]  # no temporary directory, no lock file
    assert tree(os.path.join(base, VERSION)) == tree(model)
    assert pd.is_complete(os.path.join(base, VERSION)) and pd.leftovers(base) == []


def test_a_push_killed_mid_copy_leaves_no_version_and_the_next_sweep_names_and_quarantines_it(model, tmp_path):
    base = str(tmp_path / 'serving')
    alive = []
    kill_push_mid_copy(model, base, VERSION, while_copying=lambda: alive.append(pd.leftovers(base)))
    assert alive == [[]]  # while it copied, its lock said so: not a leftover
    [temporary] = [name for name in _entries(base) if not name.endswith(pd.LOCK_SUFFIX)]
    assert temporary.startswith(f'.push-{VERSION}-') and not any(name.isdigit() for name in _entries(base))

    [leftover] = pd.leftovers(base)
    assert (leftover.name, leftover.kind) == (temporary, pd.TEMPORARY) and 'lock is free' in leftover.reason
    lines = []
    [(_, moved)] = pd.sweep(base, log=lines.append, by='a test')
    assert _entries(base) == [pd.QUARANTINE_DIR]  # the free lock file went with it
    assert os.path.dirname(moved) == os.path.join(base, pd.QUARANTINE_DIR)
    assert os.path.basename(moved).startswith(temporary.lstrip('.') + '-')
    assert len(os.listdir(moved)) >= 1  # what was copied is kept for an auditor
    note = _note(moved)
    assert note['kind'] == pd.TEMPORARY and note['was'] == leftover.path and note['by'] == 'a test'
    assert note['reason'] == leftover.reason and note['quarantined_at'].endswith('+00:00')
    assert lines == [pd.describe(leftover, moved)] and leftover.path in lines[0] and moved in lines[0]
    assert pd.leftovers(base) == [] and pd.sweep(base) == []


def test_a_push_that_fails_is_quarantined_at_once_with_its_error(model, tmp_path, monkeypatch):
    base = str(tmp_path / 'serving')
    copy = pd._copy_file_synced
    copied = []

    def copy_then_fail(source, target):
        if copied:
            raise OSError(28, 'No space left on device')
        copy(source, target)
        copied.append(target)

    monkeypatch.setattr(pd, '_copy_file_synced', copy_then_fail)
    lines = []
    with pytest.raises(OSError, match='No space left'):
        pd.push(model, base, VERSION, by='the test', log=lines.append)
    assert _entries(base) == [pd.QUARANTINE_DIR]
    [note] = pd.quarantined(base)
    assert note['reason'].startswith('push failed: OSError') and 'No space left' in note['reason']
    assert note['by'] == 'the test' and os.path.isdir(note['path']) and note['path'] in lines[0]


def test_a_version_with_a_cut_short_or_missing_saved_model_is_incomplete(model, tmp_path):
    base = str(tmp_path / 'serving')
    whole = saved_model_pb(20_000)
    write_model(os.path.join(base, '1796551205'), saved_model=whole[:8192])  # as the auditor found it
    write_model(os.path.join(base, '1796550000'), with_saved_model=False)    # killed earlier: 5 files
    write_model(os.path.join(base, '1796540000'), saved_model=whole)
    assert not pd.is_complete(os.path.join(base, '1796551205'))
    assert pd.version_names(base) == ['1796551205', '1796550000', '1796540000']

    found = {leftover.name: leftover for leftover in pd.leftovers(base)}
    assert set(found) == {'1796551205', '1796550000'} and {f.kind for f in found.values()} == {pd.INCOMPLETE}
    assert 'a cut-short saved_model.pb' in found['1796551205'].reason
    assert 'has no saved_model.pb' in found['1796550000'].reason
    lines = []
    moved = dict((leftover.name, target) for leftover, target in pd.sweep(base, log=lines.append))
    assert _entries(base) == [pd.QUARANTINE_DIR, '1796540000'] and len(lines) == 2
    with open(os.path.join(moved['1796551205'], 'saved_model.pb'), 'rb') as f:
        assert f.read() == whole[:8192]  # kept as it was
    assert {n['name'] for n in pd.quarantined(base)} == {'1796551205', '1796550000'}


def test_a_complete_version_unknown_to_ml_metadata_is_a_leftover_only_past_the_grace_period(tmp_path):
    base = str(tmp_path / 'serving')
    write_model(os.path.join(base, '1796540000'))
    write_model(os.path.join(base, '1796551205'))  # the push's process died before its artifact was published
    make_old(os.path.join(base, '1796540000'), 3600)
    now = time.time()
    assert pd.leftovers(base, now=now + 3600) == []  # without the registry, complete is all one can tell
    assert pd.leftovers(base, known_versions={1796540000}, now=now) == []  # a live run may publish it yet
    [late] = pd.leftovers(base, known_versions={'1796540000'}, now=now + pd.GRACE_SECONDS + 1)
    assert (late.name, late.kind) == ('1796551205', pd.UNREGISTERED) and 'no PushedModel' in late.reason
    assert pd.leftovers(base, known_versions={1796540000, 1796551205}, now=now + 3600) == []
    # A store that knows no version here is not this destination's registry (a new store, a moved base).
    assert pd.leftovers(base, known_versions=set(), now=now + 3600) == []
    moved = pd.quarantine(base, late, now=now + pd.GRACE_SECONDS + 1)
    assert _entries(base) == [pd.QUARANTINE_DIR, '1796540000'] and _note(moved)['kind'] == pd.UNREGISTERED


def test_quarantine_takes_a_name_and_a_reason_and_never_overwrites(tmp_path):
    base = str(tmp_path / 'serving')
    now = time.time()
    moved = []
    for reason in ('by hand', 'again'):  # the same name twice within a second
        write_model(os.path.join(base, '17'))
        moved.append(pd.quarantine(base, '17', reason=reason, now=now))
    assert moved[0] != moved[1] and all(os.path.isdir(m) for m in moved)
    assert [_note(m)['reason'] for m in moved] == ['by hand', 'again']
    assert _note(moved[0])['by'] == pd.who() and _entries(base) == [pd.QUARANTINE_DIR]


def test_whole_message_fails_every_cut_inside_the_meta_graph():
    data = saved_model_pb(300)
    assert pd.whole_message(data)
    assert not pd.whole_message(b'')
    # A cut after the schema version alone is a whole (empty) SavedModel on the wire; every later cut is not.
    assert [n for n in range(1, len(data)) if pd.whole_message(data[:n])] == [2]


def test_names_beside_versions_are_not_versions_to_any_server(model, tmp_path):
    # TF Serving takes a child for a version only if its whole name parses as an integer
    # (file_system_storage_path_source.cc, ParseVersionNumber); ours only names of digits.
    base = str(tmp_path / 'serving')
    kill_push_mid_copy(model, base, VERSION)
    pd.sweep(base)
    pd.push(model, base, '1796551300')
    for name in _entries(base):
        assert name.isdigit() or (name.startswith('.') and not name.lstrip('.')[:1].isdigit()), name


def test_a_remote_push_renames_file_by_file_saved_model_last(model, monkeypatch):
    import shutil

    import tensorflow as tf
    # TF's ram:// file system lists by bare prefix, so `assets` would list `assets.extra`'s files as its own
    # (GCS lists `assets/`): the remote tests' model has no assets.extra.
    shutil.rmtree(os.path.join(model, 'assets.extra'))
    base = 'ram://bucket/serving'
    renamed = []
    rename = tf.io.gfile.rename
    monkeypatch.setattr(tf.io.gfile, 'rename',
                        lambda s, t, overwrite=False: (renamed.append(t), rename(s, t, overwrite)))
    assert pd.push(model, base, VERSION) == f'{base}/{VERSION}'
    assert renamed[-1] == f'{base}/{VERSION}/saved_model.pb' and len(renamed) == len(
        [v for v in tree(model).values() if v is not None])
    assert pd.version_names(base) == [VERSION] and pd.is_complete(f'{base}/{VERSION}')
    assert sorted(n.rstrip('/') for n in tf.io.gfile.listdir(base)) == [VERSION]


def test_remote_leftovers_wait_out_the_grace_period(model):
    import tensorflow as tf
    base = 'ram://bucket2/serving'
    now = int(time.time())
    # No locks on an object store: a temporary directory (and a half-renamed version) may be a live push's.
    tf.io.gfile.makedirs(f'{base}/.push-{now}-abc/variables')
    with tf.io.gfile.GFile(f'{base}/.push-{now}-abc/variables/variables.index', 'wb') as f:
        f.write(b'x')
    tf.io.gfile.makedirs(f'{base}/{now}/variables')
    assert pd.leftovers(base, now=now + 5) == []
    found = pd.leftovers(base, now=now + pd.GRACE_SECONDS + 5)
    assert {(f.name, f.kind) for f in found} == {(f'.push-{now}-abc', pd.TEMPORARY), (str(now), pd.INCOMPLETE)}
    moved = [target for _, target in pd.sweep(base, now=now + pd.GRACE_SECONDS + 5, log=lambda line: None)]
    assert all(target.startswith(f'{base}/{pd.QUARANTINE_DIR}/') for target in moved)
    assert sorted(n.rstrip('/') for n in tf.io.gfile.listdir(base)) == [pd.QUARANTINE_DIR]
    assert len(pd.quarantined(base)) == 2
