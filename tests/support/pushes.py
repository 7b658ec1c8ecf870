"""Push destinations as tests need them: SavedModel-shaped directories (whole, cut short, without
saved_model.pb), a push killed mid-copy in a process of its own, and ML Metadata that records pushes
as LocalDagRunner does."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _varint(n: int) -> bytes:
    out = b''
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def saved_model_pb(size: int = 4000) -> bytes:
    """A saved_model.pb as a SavedModel lays it out on the wire: schema version 1, one meta graph of
    `size` bytes (its content is filler)."""
    meta_graph = bytes(i % 251 for i in range(size))
    return b'\x08\x01' + b'\x12' + _varint(len(meta_graph)) + meta_graph


def write_model(directory: str, saved_model: bytes = None, with_saved_model: bool = True) -> str:
    """A SavedModel-shaped directory: variables, assets, a fingerprint, and saved_model.pb unless not wanted."""
    os.makedirs(os.path.join(directory, 'variables'), exist_ok=True)
    os.makedirs(os.path.join(directory, 'assets'), exist_ok=True)
    os.makedirs(os.path.join(directory, 'assets.extra'), exist_ok=True)
    files = {'variables/variables.index': b'index' * 20, 'variables/variables.data-00000-of-00001': b'\x01' * 5000,
             'fingerprint.pb': b'\x08\x02', 'keras_metadata.pb': b'{}', 'assets.extra/tf_serving_warmup_requests': b''}
    if with_saved_model:
        files['saved_model.pb'] = saved_model_pb() if saved_model is None else saved_model
    for name, content in files.items():
        with open(os.path.join(directory, name), 'wb') as f:
            f.write(content)
    return directory


def tree(directory: str) -> dict:
    """relative path -> bytes (None for a directory) of everything under `directory`."""
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), directory)] = None
        for name in files:
            with open(os.path.join(root, name), 'rb') as f:
                found[os.path.relpath(os.path.join(root, name), directory)] = f.read()
    return found


def make_old(directory: str, seconds_ago: float) -> None:
    """Every file and directory under `directory` last written `seconds_ago`."""
    when = time.time() - seconds_ago
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (when, when))
    os.utime(directory, (when, when))


_KILLED_PUSH = textwrap.dedent('''
    import sys, time
    from components.pusher import push_destination

    copy = push_destination._copy_file_synced
    copied = []

    def copy_then_stall(source, target):
        copy(source, target)
        copied.append(target)
        if len(copied) == 2:
            print('copying', flush=True)
            time.sleep(120)

    push_destination._copy_file_synced = copy_then_stall
    push_destination.push(sys.argv[1], sys.argv[2], sys.argv[3])
''')


def kill_push_mid_copy(model_dir: str, base: str, version: str, while_copying=None) -> None:
    """Starts a push of `model_dir` to `base` in a process of its own, SIGKILLs it after two files are
    copied, and waits for it. `while_copying()` runs while the push is alive, before the kill."""
    child = subprocess.Popen([sys.executable, '-c', _KILLED_PUSH, model_dir, base, version], cwd=REPO,
                             stdout=subprocess.PIPE, env={**os.environ, 'PYTHONPATH': REPO})
    try:
        assert child.stdout.readline().strip() == b'copying', 'the push did not start copying'
        if while_copying is not None:
            while_copying()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def record_push(store, base: str, version, pushed: int = 1, kubeflow: bool = False) -> int:
    """A PushedModel as TFX's Pusher leaves it: LocalDagRunner's ints, or Kubeflow's doubles and type name."""
    name = 'tfx.PushedModel' if kubeflow else 'PushedModel'
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name=name))
    artifact = metadata_store_pb2.Artifact(type_id=type_id, uri=f'/pipeline_root/Pusher/pushed_model/{version}')
    artifact.custom_properties['pushed_destination'].string_value = f'{base.rstrip("/")}/{version}'
    artifact.custom_properties['pushed_version'].string_value = str(version)
    if kubeflow:
        artifact.custom_properties['pushed'].double_value = float(pushed)
    else:
        artifact.custom_properties['pushed'].int_value = pushed
    return store.put_artifacts([artifact])[0]


def new_store(path: str):
    return metadata_store.connect(path)
