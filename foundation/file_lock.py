"""An exclusive lock on a file that says who holds it.

`flock`, because the kernel releases it when the holder exits, however it exits: a killed command never
leaves a stale lock. The file's text names the holder (command, pid, host, since when) for the message a
waiting command prints; the lock, not the text, is what excludes. Used by the runs on a workspace
(pipeline/workspace_lock.py) and by release decisions (release/ledger.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
import time
from typing import Callable, Iterator, Optional


class Held(RuntimeError):
    """Someone else held the lock for longer than the wait; `holder` says who."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def this_command(command: Optional[str] = None) -> str:
    """`taxi-pipeline <command>` (pid N on HOST, since T UTC): this process, as a holder is named."""
    command = command or ' '.join(sys.argv[1:3])
    since = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())
    return f'`taxi-pipeline {command}` (pid {os.getpid()} on {socket.gethostname()}, since {since} UTC)'


def holder_of(path: str, nobody: str = '') -> str:
    """Who holds the lock at `path` as its text says ('' or `nobody` if it says nothing)."""
    try:
        with open(path, errors='replace') as f:
            return f.read().strip() or nobody
    except OSError:
        return nobody


def is_held(path: str) -> bool:
    """Whether anyone holds the lock at `path` now (a lock file nobody holds is not held)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(path: str, wait_seconds: float = 0.0, holder: Optional[str] = None,
              on_wait: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Holds `path` exclusively. If someone else does, waits up to `wait_seconds` (telling `on_wait` who, once),
    then raises Held naming them. `holder` is what this process writes for others to read (default:
    this_command())."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, pause, announced = time.monotonic() + wait_seconds, 0.05, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise Held(os.pread(fd, 4096, 0).decode(errors='replace').strip())
            if on_wait is not None and not announced:
                on_wait(os.pread(fd, 4096, 0).decode(errors='replace').strip())
                announced = True
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder or this_command()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
