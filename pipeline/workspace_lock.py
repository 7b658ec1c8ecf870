"""One run at a time per workspace, and no phantom left by a run that was killed.

Two runs on one workspace share its ML Metadata store, pipeline root and push
destination: started 3 s apart, one failed with no reason given and both
summaries named the same run. A run therefore holds an exclusive lock on the
workspace (`flock` on `<workspace>/.run.lock`): the kernel releases it when
the holder exits, however it exits, so a killed run never leaves a stale lock.
A second run waits for it or refuses, naming the holder.

A run killed mid-component leaves its execution RUNNING in ML Metadata and
its outputs PENDING, forever. Holding the lock proves no run is live, so the
next run marks such executions CANCELED (with who found them and when) and
their outputs ABANDONED, and names the directories left behind; it deletes
nothing (an auditor may want them), and TFX writes the rerun elsewhere.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import glob
import json
import os
import socket
import time
from typing import Callable, List, Optional

from ml_metadata.proto import metadata_store_pb2

LOCK_FILE = '.run.lock'
_LIVE = (metadata_store_pb2.Execution.RUNNING, metadata_store_pb2.Execution.NEW)


class WorkspaceBusy(RuntimeError):
    """Another run holds the workspace."""


class WorkspaceLock:
    """`with WorkspaceLock(workspace, wait_seconds=0, command='run'):` runs alone on the workspace."""

    def __init__(self, workspace: str, wait_seconds: float = 0.0, command: str = 'run',
                 emit_line: Callable[[str], None] = print):
        self.path = os.path.join(workspace, LOCK_FILE)
        self.wait_seconds = wait_seconds
        self.command = command
        self.emit_line = emit_line
        self._fd: Optional[int] = None

    def _holder(self) -> str:
        try:
            with open(self.path) as f:
                holder = json.loads(f.read() or '{}')
        except (OSError, ValueError):
            return 'another run'
        started = time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(holder.get('since', 0)))
        return f"`taxi-pipeline {holder.get('command', '?')}` (pid {holder.get('pid')} on {holder.get('host')}, " \
               f'since {started})'

    def __enter__(self) -> 'WorkspaceLock':
        os.makedirs(os.path.dirname(self.path) or '.', exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_seconds
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                holder = self._holder()
                os.close(fd)
                raise WorkspaceBusy(
                    f'{os.path.dirname(os.path.abspath(self.path))} is in use by {holder}; nothing was started. '
                    'Wait for it (--wait SECONDS), or use another --workspace')
            if not announced:
                self.emit_line(f'Waiting for {self._holder()} to finish with this workspace...')
                announced = True
            time.sleep(0.5)
        # Who holds it, for the message a second run prints (the lock, not this text, is what excludes).
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({'command': self.command, 'pid': os.getpid(), 'host': socket.gethostname(),
                                  'since': time.time()}).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def current_holder(workspace: str) -> Optional[str]:
    """Who holds the workspace now (`taxi-pipeline run` (pid N on HOST, since T)), or None if nobody does."""
    path = os.path.join(workspace, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except OSError:
        return WorkspaceLock(workspace)._holder()
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class Abandoned:
    execution_id: int
    component: str
    left_behind: List[str]


def mark_abandoned(store, pipeline_root: str, found_by: str) -> List[Abandoned]:
    """Marks executions still RUNNING (or NEW) as CANCELED and their pending outputs ABANDONED;
    names what they left in `pipeline_root` (TFX writes `<root>/<node>/<output>/<execution id>/`).

    Only call while holding the workspace lock: then no run is live, and such
    an execution belongs to a run that was killed.
    """
    abandoned = []
    for execution in store.get_executions():
        if execution.last_known_state not in _LIVE:
            continue
        execution.last_known_state = metadata_store_pb2.Execution.CANCELED
        execution.custom_properties['abandoned_by'].string_value = found_by
        execution.custom_properties['abandoned_at'].int_value = int(time.time())
        # TFX registers outputs when an execution completes; any it registered before are pending.
        events = [e for e in store.get_events_by_execution_ids([execution.id])
                  if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.PENDING_OUTPUT)]
        pending = [a for a in (store.get_artifacts_by_id([e.artifact_id for e in events]) if events else [])
                   if a.state in (metadata_store_pb2.Artifact.PENDING, metadata_store_pb2.Artifact.UNKNOWN)]
        for artifact in pending:
            artifact.state = metadata_store_pb2.Artifact.ABANDONED
        if pending:
            store.put_artifacts(pending)
        store.put_executions([execution])
        nodes = [c.name for c in store.get_contexts_by_execution(execution.id)
                 if c.type_id == store.get_context_type('node').id]
        component = nodes[0].split('.', 1)[-1] if nodes else f'execution {execution.id}'
        left = sorted(glob.glob(os.path.join(pipeline_root, '*', '*', str(execution.id))))
        abandoned.append(Abandoned(execution.id, component, left))
    return abandoned
