"""Which run pushed a model: the Pusher execution that did the push, not a later one that was cached.

A run with nothing new to do (the same span, code and parameters: a schedule that waited for the
workspace, say) takes every execution from the cache, the Pusher's too, and TFX records that cached
Pusher in the new run with the same PushedModel as its output. That run pushed nothing. The push is the
execution's that was not cached; of several, the earliest. (Kubeflow Pipelines v2 records a cached task
the same way, as a CACHED execution with the earlier outputs.)
"""

from __future__ import annotations

from typing import Iterable, Optional

from ml_metadata.proto import metadata_store_pb2

from foundation.metadata_store import RUN_CONTEXT_TYPES

CACHED = metadata_store_pb2.Execution.CACHED


def pushing_execution(executions: Iterable[metadata_store_pb2.Execution]
                      ) -> Optional[metadata_store_pb2.Execution]:
    """Of the executions that output one PushedModel, the one that pushed it: not cached, the earliest
    (a cached one only if there is nothing else to go by)."""
    found = sorted(executions, key=lambda e: (e.last_known_state == CACHED, e.id))
    return found[0] if found else None


def pushed_by(store, artifact_id: int) -> Optional[metadata_store_pb2.Context]:
    """The run whose Pusher pushed the PushedModel `artifact_id`; None if no execution that was not
    cached output it, or that execution belongs to no run."""
    ids = sorted({e.execution_id for e in store.get_events_by_artifact_ids([artifact_id])
                  if e.type == metadata_store_pb2.Event.OUTPUT})
    pusher = pushing_execution(store.get_executions_by_id(ids)) if ids else None
    if pusher is None or pusher.last_known_state == CACHED:
        return None
    runs = [c for c in store.get_contexts_by_execution(pusher.id) if c.type in RUN_CONTEXT_TYPES]
    return runs[0] if runs else None
