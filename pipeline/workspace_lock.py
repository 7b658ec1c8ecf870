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
import glob
import os
import time
from typing import Callable, List, Optional

from ml_metadata.proto import metadata_store_pb2

from foundation import file_lock

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
        self._held = None

    def __enter__(self) -> 'WorkspaceLock':
        held = file_lock.exclusive(
            self.path, self.wait_seconds, file_lock.this_command(self.command),
            on_wait=lambda holder: self.emit_line(f'Waiting for {holder or "another run"} to finish with this '
                                                  'workspace...'))
        try:
            held.__enter__()
        except file_lock.Held as busy:
            raise WorkspaceBusy(
                f'{os.path.dirname(os.path.abspath(self.path))} is in use by {busy.holder or "another run"}; nothing '
                'was started. Wait for it (--wait SECONDS), or use another --workspace') from None
        self._held = held
        return self

    def __exit__(self, *exc) -> None:
        if self._held is not None:
            self._held.__exit__(*exc)
            self._held = None


def current_holder(workspace: str) -> Optional[str]:
    """Who holds the workspace now (`taxi-pipeline run` (pid N on HOST, since T UTC)), or None if nobody does."""
    path = os.path.join(workspace, LOCK_FILE)
    return file_lock.holder_of(path, 'another run') if file_lock.is_held(path) else None


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
