"""The pages a run leaves: its run report and, beside it, the runs and the pushed version's lineage and
model card.

`write_run_pages` is what `taxi-pipeline run` asks for once the run is summarised (the runner itself
writes no page). The pages link to each other and to the run report, and a link is drawn only to a
page that exists; so they are written, then the run report, then they are rendered again (from
what was read once) to link back to it.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional

from foundation.atomic_file import write_atomically
from reports import page as reports_page


class Pages:
    def __init__(self, store, model_base_path: str, reports_dir: str, version: Optional[int]):
        from provenance import lineage as lineage_lib, lineage_page, model_card, run_history, run_record
        self.reports_dir = reports_dir
        rows = run_history.rows(run_record.all_runs(store))
        self._renderers: Dict[str, Callable[[], str]] = {
            reports_page.report_file(reports_page.RUNS): lambda: run_history.page(rows, reports_dir)}
        if version is not None:
            lineage = lineage_lib.trace(store, model_base_path, version)
            data = lineage.to_dict()
            card = model_card.card(lineage, model_card.load_template(), data)
            self._renderers[reports_page.report_file(reports_page.LINEAGE, version)] = (
                lambda: lineage_page.page(lineage, reports_dir, data))
            self._renderers[reports_page.report_file(reports_page.MODEL_CARD, version)] = (
                lambda: model_card.page(card, reports_dir))

    def write(self) -> List[str]:
        return [write_atomically(os.path.join(self.reports_dir, name), render())
                for name, render in self._renderers.items()]


def write_run_pages(config, result, emit_line: Callable[[str], None]) -> None:
    """The run report of `result` (a pipeline.run_summary.RunSummary of a run with `config`); and from
    ML Metadata the runs page and, for a pushed version, its lineage and model card.

    The pages come second to the run and its report: if they cannot be made, the run says so and
    keeps its own outcome (and its component's error, if one failed)."""
    from foundation import metadata_store
    from pipeline import run_report
    version = int(os.path.basename(result.pushed_to.rstrip('/'))) if result.pushed_to else None
    pages = None
    try:
        pages = Pages(metadata_store.connect(config.metadata_path, mode=metadata_store.READ),
                      config.serving_model_dir, config.report_dir, version)
        pages.write()  # first, so that the run report links to them
    except Exception as e:  # noqa: BLE001 - reported, and the run's own result stands
        emit_line(f'Provenance pages not written: {type(e).__name__}: {e}')
        pages = None
    path = os.path.join(config.report_dir, reports_page.report_file(reports_page.RUN, result.run_id))
    emit_line(f'Report: {run_report.write(result, path)}')
    if pages is not None:
        for written in pages.write():  # again, now that the run report they link to exists
            emit_line(f'        {written}')
