"""Runs the pipeline on the embedded default: LocalDagRunner, SQLite MLMD, Beam DirectRunner.

Thin on purpose: build the pipeline, show progress while LocalDagRunner works
through it, then summarise the run from ML Metadata, the record every runner
writes, rather than from what this process happened to see.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Callable, Optional

from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from foundation.atomic_file import write_atomically
from components import code_version
from foundation import metadata_store
from pipeline import data, run_summary, run_trigger
from pipeline.config import PipelineConfig
from pipeline.dag import create_pipeline
from pipeline.run_progress import MetadataProgress
from pipeline.run_trigger import Trigger
from pipeline.workspace_lock import WorkspaceLock, mark_abandoned

# What writes a run's pages: (config, summary, emit_line).
PageWriter = Callable[[PipelineConfig, run_summary.RunSummary, Callable[[str], None]], None]


def content_addressed_schema(config: PipelineConfig) -> PipelineConfig:
    """`config` with its schema file copied to a path named by the content's digest.

    ImportSchemaGen's cache key is the file's path, not its content: after an
    edit of the curated schema, a cached run would keep the old one. A path
    that changes with the content makes every edit a cache miss. (On Kubeflow
    the schema is inside the image, and a new image is a new cache key.)
    """
    with open(config.schema_file, 'rb') as f:
        content = f.read()
    path = os.path.join(config.pipeline_root, 'curated_schema', hashlib.sha256(content).hexdigest()[:16],
                        os.path.basename(config.schema_file))
    if not os.path.exists(path):
        write_atomically(path, content)
    return dataclasses.replace(config, schema_file=path)


def run(config: PipelineConfig, emit_line: Callable[[str], None] = print, trigger: Trigger = Trigger(),
        wait_seconds: float = 0.0, pages: Optional[PageWriter] = None,
        checked: Optional[Callable[[], tuple]] = None) -> run_summary.RunSummary:
    """Runs the pipeline once, alone on its workspace; returns the run's summary, or raises if a
    component failed, or WorkspaceBusy if another run held the workspace for `wait_seconds`.

    `pages(config, summary, emit_line)`, if given, writes the run's pages once it is summarised,
    failed or not (the command asks for them: `provenance.reports.write_run_pages`).

    `checked`, if given, answers `data.check_and_count` for `config.data_root` (begun ahead by the
    command, `data.check_and_count_ahead`); else the data is checked here. Nothing runs before it answers.

    On failure the raised exception is the component's own (for example the
    anomalies gate's DataAnomaliesError); nothing downstream of it ran.
    """
    _, rows = checked() if checked is not None else data.check_and_count(config.data_root)
    with WorkspaceLock(os.path.dirname(config.metadata_path), wait_seconds, emit_line=emit_line):
        return _run_alone(config, emit_line, trigger, rows, pages)


def _run_alone(config: PipelineConfig, emit_line: Callable[[str], None], trigger: Trigger,
               rows_read: Optional[int] = None, pages: Optional[PageWriter] = None) -> run_summary.RunSummary:
    if os.path.exists(config.metadata_path):
        found_by = f'the run started {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} (pid {os.getpid()})'
        store = metadata_store.connect(config.metadata_path, mode=metadata_store.WRITE)
        for stale in mark_abandoned(store, config.pipeline_root, found_by):
            emit_line(f'A killed run left {stale.component} (execution {stale.execution_id}) running: marked '
                      'CANCELED in ML Metadata' + (f'; its partial output stays in {", ".join(stale.left_behind)}'
                                                  if stale.left_behind else ''))
    config = content_addressed_schema(config)
    metadata = metadata_store.sqlite_config(config.metadata_path)
    code = code_version.current()  # before the run: the code that ran it, not what the tree holds after

    def record_start(store, run) -> None:  # at once: a run killed mid-way keeps why it ran and with what code
        run_trigger.record(store, run, trigger)
        code_version.record(store, run, code)

    progress = MetadataProgress(config, emit_line, on_run=record_start)
    progress.start()
    started = time.time()
    failure: Optional[BaseException] = None
    try:
        LocalDagRunner().run(create_pipeline(config, metadata))
    except BaseException as e:  # summarised first, then re-raised
        failure = e
    progress.stop()
    # Trigger and code recorded again (the same values), should the store have been busy at every look.
    # Only a run that started after this one began can be this one (and the lock keeps others out).
    result = run_summary.summarize_latest_run(config, time.time() - started, failure=failure,
                                              since_ms=int(started * 1000), trigger=trigger,
                                              code=code, rows_read=rows_read)
    emit_line(result.render())
    if pages is not None and config.report_dir and result.components:
        pages(config, result, emit_line)
    if failure is not None:
        raise failure
    return result
