"""The pages a run leaves beside its run report: the pushed version's lineage and model card, and the runs.

They link to each other and to the run report, and a link is drawn only to a
page that exists; so they are written, then the run report, then they are
rendered again (from what was read once) to link back to it.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional

from atomic_file import write_atomically
from pipeline import html_page


class Pages:
    def __init__(self, store, model_base_path: str, reports_dir: str, version: Optional[int]):
        from provenance import lineage as lineage_lib, lineage_page, model_card, run_history, run_record
        self.reports_dir = reports_dir
        rows = run_history.rows(run_record.all_runs(store))
        self._renderers: Dict[str, Callable[[], str]] = {
            html_page.report_file(html_page.RUNS): lambda: run_history.page(rows, reports_dir)}
        if version is not None:
            lineage = lineage_lib.trace(store, model_base_path, version)
            data = lineage.to_dict()
            card = model_card.card(lineage, model_card.load_template(), data)
            self._renderers[html_page.report_file(html_page.LINEAGE, version)] = (
                lambda: lineage_page.page(lineage, reports_dir, data))
            self._renderers[html_page.report_file(html_page.MODEL_CARD, version)] = (
                lambda: model_card.page(card, reports_dir))

    def write(self) -> List[str]:
        return [write_atomically(os.path.join(self.reports_dir, name), render())
                for name, render in self._renderers.items()]
