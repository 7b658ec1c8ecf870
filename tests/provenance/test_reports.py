"""A run leaves its reports linked to each other: run report, runs, the pushed version's lineage and card."""

import os
import re

import pytest

from reports import page as html_page

pytestmark = pytest.mark.e2e


def _links(path):
    with open(path) as f:
        nav = re.search(r'<nav>(.*?)</nav>', f.read(), re.S)
    return set(re.findall(r'href="([^"]+)"', nav.group(1))) if nav else set()


def test_the_pages_of_a_run_link_to_each_other_and_to_nothing_missing(first_run):
    config, summary, _ = first_run
    version = os.path.basename(summary.pushed_to)
    run = html_page.report_file(html_page.RUN, summary.run_id)
    lineage = html_page.report_file(html_page.LINEAGE, version)
    card = html_page.report_file(html_page.MODEL_CARD, version)
    runs = html_page.report_file(html_page.RUNS)
    pages = {name: os.path.join(config.report_dir, name) for name in (run, lineage, card, runs)}
    assert all(os.path.exists(path) for path in pages.values()), os.listdir(config.report_dir)
    assert {lineage, card, runs} <= _links(pages[run])
    assert {run, card, runs} <= _links(pages[lineage])
    assert {run, lineage, runs} <= _links(pages[card])
    for path in pages.values():
        assert all(os.path.exists(os.path.join(config.report_dir, link)) for link in _links(path)), path
