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

from tfx import v1 as tfx

from atomic_file import write_atomically
from components import code_version
from pipeline import data, html_page, run_report, run_summary
from pipeline.config import PipelineConfig
from pipeline.dag import create_pipeline
from pipeline.run_progress import MetadataProgress
from pipeline.run_trigger import Trigger
from pipeline.workspace_lock import WorkspaceLock, mark_abandoned


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


def _write_reports(config: PipelineConfig, result: run_summary.RunSummary, emit_line: Callable[[str], None]) -> None:
    """The run report; and from ML Metadata the runs page and, for a pushed version, its lineage and model card.

    The pages come second to the run and its report: if they cannot be made, the run says so and
    keeps its own outcome (and its component's error, if one failed)."""
    from monitoring import metadata_record
    from provenance.reports import Pages
    version = int(os.path.basename(result.pushed_to.rstrip('/'))) if result.pushed_to else None
    pages = None
    try:
        pages = Pages(metadata_record.connect(config.metadata_path, read_only=True), config.serving_model_dir,
                      config.report_dir, version)
        pages.write()  # first, so that the run report links to them
    except Exception as e:  # noqa: BLE001 - reported, and the run's own result stands
        emit_line(f'Provenance pages not written: {type(e).__name__}: {e}')
        pages = None
    path = os.path.join(config.report_dir, html_page.report_file(html_page.RUN, result.run_id))
    emit_line(f'Report: {run_report.write(result, path)}')
    if pages is not None:
        for written in pages.write():  # again, now that the run report they link to exists
            emit_line(f'        {written}')


def run(config: PipelineConfig, emit_line: Callable[[str], None] = print, trigger: Trigger = Trigger(),
        wait_seconds: float = 0.0) -> run_summary.RunSummary:
    """Runs the pipeline once, alone on its workspace; returns the run's summary, or raises if a
    component failed, or WorkspaceBusy if another run held the workspace for `wait_seconds`.

    On failure the raised exception is the component's own (for example the
    anomalies gate's DataAnomaliesError); nothing downstream of it ran.
    """
    _, rows = data.check_and_count(config.data_root)
    with WorkspaceLock(os.path.dirname(config.metadata_path), wait_seconds, emit_line=emit_line):
        return _run_alone(config, emit_line, trigger, rows)


def _run_alone(config: PipelineConfig, emit_line: Callable[[str], None], trigger: Trigger,
               rows_read: Optional[int] = None) -> run_summary.RunSummary:
    if os.path.exists(config.metadata_path):
        found_by = f'the run started {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} (pid {os.getpid()})'
        store = run_summary.open_store(config.metadata_path, writable=True)
        for stale in mark_abandoned(store, config.pipeline_root, found_by):
            emit_line(f'A killed run left {stale.component} (execution {stale.execution_id}) running: marked '
                      'CANCELED in ML Metadata' + (f'; its partial output stays in {", ".join(stale.left_behind)}'
                                                  if stale.left_behind else ''))
    config = content_addressed_schema(config)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    code = code_version.current()  # before the run: the code that ran it, not what the tree holds after
    progress = MetadataProgress(config, emit_line)
    progress.start()
    started = time.time()
    failure: Optional[BaseException] = None
    try:
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata))
    except BaseException as e:  # summarised first, then re-raised
        failure = e
    progress.stop()
    # Only a run that started after this one began can be this one (and the lock keeps others out).
    result = run_summary.summarize_latest_run(config, time.time() - started, failure=failure,
                                              since_ms=int(started * 1000), trigger=trigger,
                                              code=code, rows_read=rows_read)
    emit_line(result.render())
    if config.report_dir and result.components:
        _write_reports(config, result, emit_line)
    if failure is not None:
        raise failure
    return result
