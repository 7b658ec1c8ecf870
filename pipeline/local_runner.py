"""Runs the pipeline on the embedded default: LocalDagRunner, SQLite MLMD, Beam DirectRunner.

Thin on purpose: build the pipeline, show progress while LocalDagRunner works
through it, then summarise the run from ML Metadata, the record every runner
writes, rather than from what this process happened to see.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Optional

from tfx import v1 as tfx

from pipeline import data, report, summary
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


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
            current = summary.components_since(self._config, self._since_ms)
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


def run(config: PipelineConfig, emit_line: Callable[[str], None] = print) -> summary.RunSummary:
    """Runs the pipeline once; returns the run's summary, or raises if a component failed.

    On failure the raised exception is the component's own (for example the
    anomalies gate's DataAnomaliesError); nothing downstream of it ran.
    """
    data.check_data_root(config.data_root)
    progress = MetadataProgress(config, emit_line)
    progress.start()
    started = time.time()
    failure: Optional[BaseException] = None
    try:
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    except BaseException as e:  # summarised first, then re-raised
        failure = e
    progress.stop()
    wall_seconds = time.time() - started
    if os.path.exists(config.metadata_path):
        result = summary.summarize_latest_run(config, wall_seconds, failure=failure)
    else:
        result = summary.RunSummary('(not started)', [], wall_seconds, failure=repr(failure))
    emit_line(result.render())
    if config.report_dir and result.components:
        report_path = report.write(result, os.path.join(config.report_dir, f'run-{result.run_id.replace(":", "")}.html'))
        emit_line(f'Report: {report_path}')
    if failure is not None:
        raise failure
    return result
