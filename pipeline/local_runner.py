"""Runs the pipeline on the embedded default: LocalDagRunner, SQLite MLMD, Beam DirectRunner.

Thin on purpose: build the pipeline, show progress while LocalDagRunner works
through it, then summarise the run from ML Metadata, the record every runner
writes, rather than from what this process happened to see.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from tfx import v1 as tfx

from pipeline import data, run_report, run_summary
from pipeline.config import PipelineConfig
from pipeline.dag import create_pipeline
from pipeline.run_progress import MetadataProgress


def run(config: PipelineConfig, emit_line: Callable[[str], None] = print) -> run_summary.RunSummary:
    """Runs the pipeline once; returns the run's summary, or raises if a component failed.

    On failure the raised exception is the component's own (for example the
    anomalies gate's DataAnomaliesError); nothing downstream of it ran.
    """
    data.check_data_root(config.data_root)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    progress = MetadataProgress(config, emit_line)
    progress.start()
    started = time.time()
    failure: Optional[BaseException] = None
    try:
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata))
    except BaseException as e:  # summarised first, then re-raised
        failure = e
    progress.stop()
    result = run_summary.summarize_latest_run(config, time.time() - started, failure=failure)
    emit_line(result.render())
    if config.report_dir and result.components:
        path = os.path.join(config.report_dir, f'run-{result.run_id.replace(":", "")}.html')
        emit_line(f'Report: {run_report.write(result, path)}')
    if failure is not None:
        raise failure
    return result
