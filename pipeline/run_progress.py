"""Live progress of a local run, read from ML Metadata as the run writes it; and the run's own record
(its trigger, its code) put on its pipeline_run context as soon as that context exists."""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Optional

from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store
from pipeline import run_summary
from pipeline.config import PipelineConfig


class MetadataProgress(threading.Thread):
    """Prints each component's state changes by polling ML Metadata.

    The launcher records an execution as RUNNING before its executor starts
    and COMPLETE/CACHED/FAILED after, so the store the summary reads is also
    the progress feed: no hooks into the runner, and libraries that reset
    logging levels mid-run (the Trainer's do) cannot silence it.

    `on_run(store, context)`, if given, is called once (retried on the next tick if it raises) with a
    writable store and the run's pipeline_run context, as soon as LocalDagRunner has created it: what a
    run records about itself must not wait for its end, which a killed run never reaches. Only a context
    created after this object is the run's: construct it while holding the workspace lock
    (pipeline.workspace_lock), after the runs before have ended.
    """

    def __init__(self, config: PipelineConfig, emit_line: Callable[[str], None], interval: float = 1.0,
                 on_run: Optional[Callable[[object, metadata_store_pb2.Context], None]] = None):
        super().__init__(daemon=True)
        self._config = config
        self._emit_line = emit_line
        self._interval = interval
        self._finished = threading.Event()
        self._since_ms = int(time.time() * 1000)
        self._seen = {}
        self._on_run = on_run
        self._store = None

    def run(self) -> None:
        while not self._finished.wait(self._interval):
            self.poll()

    def stop(self) -> None:
        self._finished.set()
        self.join()
        self.poll()

    def poll(self) -> None:
        if not os.path.exists(self._config.metadata_path):
            return
        try:
            # One connection for the run's polls: opening the store cost as much as a poll's queries.
            if self._store is None:
                self._store = metadata_store.connect(self._config.metadata_path, mode=metadata_store.READ)
            store = self._store
            run = run_summary.latest_run(store, self._since_ms)
        except Exception:  # the runner may hold the SQLite lock; reopen and try next tick
            self._store = None
            return
        if run is None:
            return
        if self._on_run is not None:
            try:
                self._on_run(metadata_store.connect(self._config.metadata_path, mode=metadata_store.WRITE), run)
                self._on_run = None
            except Exception:  # the SQLite lock again: the next tick tries again
                pass
        try:
            current = run_summary.components_of(store, self._config, run)
        except Exception:
            self._store = None
            return
        for component in current:
            if self._seen.get(component.node_id) == component.state:
                continue
            self._seen[component.node_id] = component.state
            if component.state == 'running':
                self._emit_line(f'  ▶ {component.node_id} ...')
            else:
                self._emit_line(f'  {"✘" if component.state == "FAILED" else "✔"} {component.node_id} '
                                f'{component.state} ({component.seconds:.1f}s)')
