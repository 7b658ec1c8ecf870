"""Writing a file so that readers see the old one or the new one, never half of one (and, for a
read-change-write, one writer at a time: `exclusive`).

Used for everything the system writes that something else may be reading:
data spans, compiled pipeline specs, reports, TF Serving's model config. A
killed process leaves the previous file (and at worst a hidden temporary
file) behind, never a truncated one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from typing import Iterator, Union


def write_atomically(path: str, content: Union[str, bytes]) -> str:
    """Writes `content` to `path` through a temporary file and a rename; returns `path`.

    The new file keeps the permission bits of the file it replaces (0644 when
    there was none; a fresh temporary file would be 0600), and is synced
    before the rename, so the rename never publishes data still in flight.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f'.{os.path.basename(path)}.')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(content if isinstance(content, bytes) else content.encode())
            f.flush()
            os.fsync(f.fileno())
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return path


@contextlib.contextmanager
def exclusive(lock_path: str) -> Iterator[None]:
    """Held by one process (or thread) at a time: for a read-change-write of a file that
    `write_atomically` replaces, which is why the lock is a file of its own beside it. The
    kernel releases it however the holder ends."""
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    with open(lock_path, 'a') as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
