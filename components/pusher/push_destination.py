"""A push destination, the base directory TF Serving watches: versions appear whole, and what a
killed push leaves is found, named and moved aside. Plain logic, no TFX (the CLI imports it).

    <base>/<version>/                           a complete SavedModel, one per push
    <base>/.push-<version>-<id>/                a push being copied, or a killed push's leftover
    <base>/.push-<version>-<id>.lock            locked (fcntl) by the pusher while it copies (local paths)
    <base>/.quarantine/<name>-<UTC time>/       leftovers moved aside; nothing is deleted
    <base>/.quarantine/<name>-<UTC time>.json   why, when and by whom

Why a hidden sibling name is invisible to servers: TF Serving's file system storage path source
takes a child of the base path for a version only if its whole name parses as an integer
(tensorflow_serving/sources/storage_path/file_system_storage_path_source.cc: `ParseVersionNumber` is
`absl::SimpleAtoi` of the name; `AspireAllVersions` and `IndexChildrenByVersion` skip the others),
and our model server takes only names of digits (serving/manager.py). `.push-…` and `.quarantine`
are neither.

Locally a push is atomic: copied (and fsynced) under the temporary name, then one `os.rename` in the
same directory. On a remote file system there is no such rename: `tf.io.gfile.rename` of a directory
on GCS copies and deletes object by object, in name order, which puts `saved_model.pb` before
`variables/`. So remotely each file is renamed on its own, `saved_model.pb` last, as TFX's Pusher
orders its copy: the window in which a server sees a partial version is the server-side renames,
not the whole copy, but it is there (docs/pipeline.md#pushing-and-the-registry).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import getpass
import json
import os
import shutil
import socket
import time
import uuid
from typing import Callable, Collection, Iterator, List, Optional, Tuple, Union

from foundation.atomic_file import write_atomically

TEMP_PREFIX = '.push-'
LOCK_SUFFIX = '.lock'
QUARANTINE_DIR = '.quarantine'
SAVED_MODEL = 'saved_model.pb'
# A complete version that ML Metadata does not know is an orphan only once it is older than this: a
# live run's Pusher renames the version into place and its artifact is published when the executor
# returns (LocalDagRunner: at once; a Kubeflow launcher: after uploading the task's outputs, seconds,
# a minute or two on a slow cluster). Ten minutes is well past that and short enough that an orphan
# does not outlive the next run. On remote file systems, where no lock says a push is alive, it is
# also how long a temporary (or half-renamed) directory may go unwritten before it is a leftover.
GRACE_SECONDS = 600

# Kinds of leftover.
TEMPORARY = 'temporary'        # a .push-* directory nobody is writing: a push killed mid-copy
INCOMPLETE = 'incomplete'      # a version directory without a whole saved_model.pb
UNREGISTERED = 'unregistered'  # a complete version with no PushedModel in ML Metadata


@dataclasses.dataclass(frozen=True)
class Leftover:
    name: str    # its name under the base directory
    path: str
    kind: str    # TEMPORARY, INCOMPLETE or UNREGISTERED
    reason: str  # one line, for the log and the quarantine note


def is_remote(path: str) -> bool:
    return '://' in path


def _join(base: str, *names: str) -> str:
    return '/'.join([base.rstrip('/'), *names]) if is_remote(base) else os.path.join(base, *names)


def _gfile():
    import tensorflow as tf  # only for remote paths: the CLI's local commands stay free of TensorFlow
    return tf.io.gfile


# -- pushing --------------------------------------------------------------------------------------------

def push(model_dir: str, base: str, version: str, by: Optional[str] = None,
         log: Callable[[str], None] = print) -> str:
    """Copies the SavedModel in `model_dir` to `<base>/<version>` and returns that path. Locally the
    version appears whole or not at all; a push that fails is quarantined at once with its error
    (a killed one is found by the next `sweep`)."""
    final = _join(base, version)
    temp_name = f'{TEMP_PREFIX}{version}-{uuid.uuid4().hex[:12]}'
    temp = _join(base, temp_name)
    if is_remote(base):
        _gfile().makedirs(base)
        with _quarantine_on_failure(base, temp_name, by, log):
            _copy_tree(model_dir, temp)
            _move_tree_remote(temp, final)
        return final
    os.makedirs(base, exist_ok=True)
    lock_path = temp + LOCK_SUFFIX
    with _locked(lock_path, blocking=True):  # created before the directory, held until it is renamed
        try:
            with _quarantine_on_failure(base, temp_name, by, log):
                _copy_tree(model_dir, temp)
                os.rename(temp, final)  # same directory, same file system: atomic
                _fsync_directory(base)
        finally:
            # Removed while still locked: a sweep that opened it first finds the directory gone.
            with contextlib.suppress(FileNotFoundError):  # a failed push's quarantine removed it
                os.unlink(lock_path)
    return final


@contextlib.contextmanager
def _quarantine_on_failure(base: str, temp_name: str, by: Optional[str], log: Callable[[str], None]):
    try:
        yield
    except BaseException as error:
        temp = _join(base, temp_name)
        if _isdir(temp):
            leftover = Leftover(temp_name, temp, TEMPORARY, f'push failed: {type(error).__name__}: {error}')
            try:
                moved = quarantine(base, leftover, by=by)
                log(describe(leftover, moved))
            except Exception as failed:  # the push's own error is the one to raise
                log(f'could not quarantine {temp}: {failed}')
        raise


def _copy_tree(source: str, target: str) -> None:
    """Every file of `source` under `target`, the top-level saved_model.pb last; locally each file and
    directory synced, so a rename never publishes data still in flight."""
    directories, files = _tree(source)
    remote = is_remote(source) or is_remote(target)
    made = [_join(target, *d.split('/')) for d in directories]
    for directory in [target] + made:
        _gfile().makedirs(directory) if is_remote(target) else os.makedirs(directory, exist_ok=True)
    for relative in files:
        destination = _join(target, *relative.split('/'))
        if remote:
            _gfile().copy(_join(source, *relative.split('/')), destination, overwrite=False)
        else:
            _copy_file_synced(os.path.join(source, *relative.split('/')), destination)
    if not is_remote(target):
        for directory in sorted([target] + made, key=len, reverse=True):
            _fsync_directory(directory)


def _copy_file_synced(source: str, target: str) -> None:
    with open(source, 'rb') as src, open(target, 'xb') as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_tree_remote(temp: str, final: str) -> None:
    """File by file, saved_model.pb last: the order a server on an object store may rely on."""
    gfile = _gfile()
    directories, files = _tree(temp)
    for directory in [final] + [_join(final, *d.split('/')) for d in directories]:
        gfile.makedirs(directory)
    for relative in files:
        gfile.rename(_join(temp, *relative.split('/')), _join(final, *relative.split('/')), overwrite=False)
    gfile.rmtree(temp)


def _tree(root: str) -> Tuple[List[str], List[str]]:
    """(directories, files) under `root`, relative and '/'-separated: directories parents first, files
    sorted with the top-level saved_model.pb last (the file whose arrival says a version is complete)."""
    directories, files = [], []
    walk = _gfile().walk(root) if is_remote(root) else os.walk(root)
    for directory, subdirectories, names in walk:
        relative = directory.rstrip('/')[len(root.rstrip('/')):].strip('/').replace(os.sep, '/')
        directories += [f'{relative}/{d.rstrip("/")}' if relative else d.rstrip('/') for d in subdirectories]
        files += [f'{relative}/{n}' if relative else n for n in names]
    return sorted(directories), sorted(files, key=lambda relative: (relative == SAVED_MODEL, relative))


# -- what is there --------------------------------------------------------------------------------------

def _isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def _exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def _listdir(path: str) -> List[str]:
    if not _isdir(path):
        return []
    names = _gfile().listdir(path) if is_remote(path) else os.listdir(path)
    return sorted({name.rstrip('/') for name in names})


def _read(path: str) -> bytes:
    if is_remote(path):
        with _gfile().GFile(path, 'rb') as f:
            return f.read()
    with open(path, 'rb') as f:
        return f.read()


def whole_message(data: bytes) -> bool:
    """Whether `data` is a protocol buffer message whose top-level fields all end where they say they
    do. A SavedModel is a schema version and its meta graphs, each one length-delimited field, so a
    saved_model.pb cut short anywhere past its first bytes fails this (TF's parser would fail too:
    `OSError: Cannot parse file`). No TensorFlow needed: the wire format is read directly."""
    position, end = 0, len(data)
    if not end:
        return False
    while position < end:
        key, position = _varint(data, position)
        if key is None or key >> 3 == 0:
            return False
        wire_type = key & 7
        if wire_type == 0:
            _, position = _varint(data, position)
            if position is None:
                return False
        elif wire_type == 1:
            position += 8
        elif wire_type == 2:
            length, position = _varint(data, position)
            if length is None:
                return False
            position += length
        elif wire_type == 5:
            position += 4
        else:  # groups: not in a SavedModel
            return False
        if position > end:
            return False
    return True


def _varint(data: bytes, position: int) -> Tuple[Optional[int], Optional[int]]:
    result, shift = 0, 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
    return None, None


def is_complete(version_dir: str) -> bool:
    """A saved_model.pb is there and whole (a copy killed while writing it leaves it cut short)."""
    path = _join(version_dir, SAVED_MODEL)
    return _exists(path) and whole_message(_read(path))


def version_names(base: str) -> List[str]:
    """Names of the version directories (names of digits) under `base`, newest first."""
    numeric = [name for name in _listdir(base) if name.isdigit() and _isdir(_join(base, name))]
    return sorted(numeric, key=int, reverse=True)


def _last_written(path: str, name_time: Optional[int]) -> float:
    """When a directory was last written: its newest mtime (the version in its name counts too, being
    the push's start; object stores have no directory mtimes, and some report 0 for files)."""
    times = [float(name_time)] if name_time is not None and name_time <= time.time() + 86400 else []
    if is_remote(path):
        gfile = _gfile()
        for directory, _, names in gfile.walk(path):
            for name in names:
                try:
                    times.append(gfile.stat(_join(directory, name)).mtime_nsec / 1e9)
                except Exception:  # gone meanwhile
                    pass
    else:
        for directory, _, names in os.walk(path):
            for entry in [directory] + [os.path.join(directory, n) for n in names]:
                try:
                    times.append(os.stat(entry).st_mtime)
                except FileNotFoundError:
                    pass
    return max(times) if times else 0.0


def _version_of_temp(name: str) -> Optional[int]:
    head = name[len(TEMP_PREFIX):].split('-', 1)[0]
    return int(head) if head.isdigit() else None


@contextlib.contextmanager
def _locked(lock_path: str, blocking: bool, create: bool = True) -> Iterator[bool]:
    """Holds the lock file's fcntl lock; yields False when another process holds it (non-blocking) or
    when the file is absent and not to be created. The kernel releases it however the holder ends."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
            yield False
            return
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same and create:  # a sweep removed the file between our open and our lock: lock a new one
            os.close(fd)
            continue
        try:
            yield same
        finally:
            os.close(fd)
        return


def _temp_is_abandoned(base: str, name: str, now: float, grace_seconds: float) -> Optional[str]:
    """Why a .push-* directory is a leftover, or None while a push may still be writing it."""
    path = _join(base, name)
    if is_remote(base):
        age = now - _last_written(path, _version_of_temp(name))
        if age < grace_seconds:
            return None
        return f'a push that stopped before renaming it into place (nothing written for {age / 60:.0f} min)'
    lock_path = path + LOCK_SUFFIX
    with _locked(lock_path, blocking=False, create=False) as held:
        if not os.path.exists(lock_path):
            # The pusher creates its lock first and removes it last; a directory without one is no live push's.
            return None if not os.path.isdir(path) else 'a push that stopped before renaming it into place (no lock)'
        if not held or not os.path.isdir(path):
            return None  # a live push, or one that has just renamed it into place
        return 'a push that stopped before renaming it into place (its lock is free: the pusher is gone)'


def leftovers(base: str, known_versions: Optional[Collection[Union[int, str]]] = None,
              grace_seconds: float = GRACE_SECONDS, now: Optional[float] = None) -> List[Leftover]:
    """What killed or unrecorded pushes left in the push destination `base`, in name order:
    - TEMPORARY: a `.push-*` directory no push is writing (locally: its lock is free; remotely: not
      written for `grace_seconds`);
    - INCOMPLETE: a version directory (a name of digits) without a whole saved_model.pb (remotely,
      once not written for `grace_seconds`, as a remote push renames file by file);
    - UNREGISTERED, only when `known_versions` (the versions ML Metadata records as pushed here,
      `foundation.metadata_store.pushed_versions`) is given and not empty: a complete version not among
      them, not written for `grace_seconds` (a live push publishes its artifact right after the rename).
      An empty set says the store is not this destination's registry (a new store, a base that moved),
      not that every version is an orphan: quarantining them would leave the servers nothing to serve.
    Reads only; `quarantine` moves them."""
    now = time.time() if now is None else now
    known = {int(v) for v in known_versions} if known_versions else None
    found = []
    for name in _listdir(base):
        path = _join(base, name)
        if name.startswith(TEMP_PREFIX) and not name.endswith(LOCK_SUFFIX):
            if not _isdir(path):
                continue
            why = _temp_is_abandoned(base, name, now, grace_seconds)
            if why:
                found.append(Leftover(name, path, TEMPORARY, why))
        elif name.isdigit() and _isdir(path):
            if not is_complete(path):
                if is_remote(base) and now - _last_written(path, int(name)) < grace_seconds:
                    continue
                has = 'a cut-short' if _exists(_join(path, SAVED_MODEL)) else 'no'
                found.append(Leftover(name, path, INCOMPLETE,
                                      f'version {name} has {has} {SAVED_MODEL}: a copy that stopped part way'))
            elif known is not None and int(name) not in known:
                age = now - _last_written(path, int(name))
                if age >= grace_seconds:
                    found.append(Leftover(name, path, UNREGISTERED,
                                          f'version {name} is complete but ML Metadata has no PushedModel for it '
                                          f'({age / 60:.0f} min old): its push never recorded it'))
    return found


# -- quarantine -----------------------------------------------------------------------------------------

def who() -> str:
    """This process, as a quarantine note's `by`: user@host pid N."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = str(os.getuid())
    return f'{user}@{socket.gethostname()} pid {os.getpid()}'


def quarantine(base: str, leftover: Union[Leftover, str], reason: Optional[str] = None, by: Optional[str] = None,
               now: Optional[float] = None) -> str:
    """Moves a leftover (or the entry `leftover` names under `base`) into
    `<base>/.quarantine/<name>-<UTC time>` and writes `<that>.json` beside it: what it was, why
    (`reason`, else the leftover's), when, by whom. Returns the new path. Nothing is deleted."""
    if isinstance(leftover, str):
        leftover = Leftover(leftover, _join(base, leftover), '', reason or '')
    reason = reason or leftover.reason
    now = time.time() if now is None else now
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    folder = _join(base, QUARANTINE_DIR)
    stem = f'{leftover.name.lstrip(".")}-{stamp}'
    target, n = _join(folder, stem), 1
    while _exists(target) or _exists(target + '.json'):
        n += 1
        target = _join(folder, f'{stem}-{n}')
    note = json.dumps({'name': leftover.name, 'was': leftover.path, 'kind': leftover.kind, 'reason': reason,
                       'quarantined_at': datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(),
                       'by': by or who()}, indent=2, sort_keys=True) + '\n'
    if is_remote(base):
        gfile = _gfile()
        gfile.makedirs(folder)
        gfile.rename(leftover.path, target)
        with gfile.GFile(target + '.json', 'w') as f:  # an object store writes an object whole
            f.write(note)
        return target
    os.makedirs(folder, exist_ok=True)
    os.rename(leftover.path, target)
    write_atomically(target + '.json', note)
    if leftover.kind == TEMPORARY and os.path.exists(leftover.path + LOCK_SUFFIX):
        os.unlink(leftover.path + LOCK_SUFFIX)  # an empty file, free: it only ever said "being written"
    return target


def describe(leftover: Leftover, moved_to: str) -> str:
    """The one log line of a quarantined leftover."""
    return f'quarantined {leftover.kind} {leftover.path} -> {moved_to}: {leftover.reason}'


def sweep(base: str, known_versions: Optional[Collection[Union[int, str]]] = None,
          grace_seconds: float = GRACE_SECONDS, by: Optional[str] = None,
          log: Callable[[str], None] = print, now: Optional[float] = None) -> List[Tuple[Leftover, str]]:
    """`leftovers`, each quarantined and logged in one line; returns (leftover, where it went). Free
    lock files whose directory is gone (a pusher killed between its rename and removing its lock)
    are removed: they are empty and say nothing."""
    moved = []
    for leftover in leftovers(base, known_versions, grace_seconds, now):
        try:
            target = quarantine(base, leftover, by=by, now=now)
        except FileNotFoundError:  # gone meanwhile (another sweep)
            continue
        log(describe(leftover, target))
        moved.append((leftover, target))
    if not is_remote(base):
        for name in _listdir(base):
            lock_path, directory = _join(base, name), _join(base, name[:-len(LOCK_SUFFIX)])
            if name.startswith(TEMP_PREFIX) and name.endswith(LOCK_SUFFIX) and not os.path.isdir(directory):
                with _locked(lock_path, blocking=False, create=False) as held:
                    if held and not os.path.isdir(directory):
                        os.unlink(lock_path)
    return moved


def quarantined(base: str) -> List[dict]:
    """The notes of everything quarantined under `base`, oldest first, each with its `path`."""
    folder = _join(base, QUARANTINE_DIR)
    notes = []
    for name in _listdir(folder):
        if name.endswith('.json'):
            note = json.loads(_read(_join(folder, name)))
            notes.append({**note, 'path': _join(folder, name[:-len('.json')])})
    return sorted(notes, key=lambda n: n.get('quarantined_at', ''))
