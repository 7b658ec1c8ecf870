"""Live progress of a local run, read from ML Metadata as the run writes it."""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

from pipeline import run_summary
from pipeline.config import PipelineConfig


class MetadataProgress(threading.Thread):
    """Prints each component's state changes by polling ML Metadata.

    The launcher records an execution as RUNNING before its executor starts
    and COMPLETE/CACHED/FAILED after, so the store the summary reads is also
    the progress feed: no hooks into the runner, and libraries that reset
    logging levels mid-run (the Trainer's do) cannot silence it.
    """

    def __init__(self, config: PipelineConfig, emit_line: Callable[[str], None], interval: float = 0.5):
        super().__init__(daemon=True)
        self._config = config
        self._emit_line = emit_line
        self._interval = interval
        self._finished = threading.Event()
        self._since_ms = int(time.time() * 1000)
        self._seen = {}

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
            current = run_summary.components_since(self._config, self._since_ms)
        except Exception:  # the runner may hold the SQLite lock; try next tick
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
