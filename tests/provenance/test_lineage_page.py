"""The lineage page of a pushed version (`taxi-pipeline lineage VERSION --html FILE`): a drawing of what
made it and the tables a reviewer reads, checked against the Lineage it was rendered from."""

import re

import pytest

from reports import page as html_page
from foundation.metadata_store import connect_existing as open_store
from provenance import lineage as lineage_lib, lineage_page
from support.html_tables import read_headings, read_tables

pytestmark = pytest.mark.e2e


COMPONENTS = ('CsvExampleGen', 'Transform', 'Trainer', 'Evaluator', 'Pusher')


def _trace(versions, version):
    return lineage_lib.trace(open_store(versions.metadata_path), versions.base_path, version)


def _rows(tables, heading):
    """A key/value table as a dict: first cell -> second."""
    return {row[0]: row[1] for row in tables[heading] if len(row) == 2}


def test_page_draws_the_run_that_made_the_version_and_states_its_span_and_drift(versions, tmp_path):
    lineage = _trace(versions, versions.drifted)
    data = lineage.to_dict()
    # A run report and the model card beside it are linked; pages that do not exist are not.
    run_report = html_page.report_file(html_page.RUN, data['run']['name'])
    card = html_page.report_file(html_page.MODEL_CARD, versions.drifted)
    for name in (run_report, card):
        (tmp_path / name).write_text('<html></html>')
    text = lineage_page.page(lineage, reports_dir=str(tmp_path))

    tables = read_tables(text)
    headings = read_headings(text)
    assert headings[0] == f'Version {versions.drifted}: {data["stage"]}'
    serving = data['stage'] in ('stable', 'canary')
    assert ('Why it is serving' if serving else 'Why it is not serving') in headings

    # The drawing: one box per component of the producing run (an earlier run's cached executions are
    # not drawn again), the PushedModel it ends in.
    drawings = re.findall(r'<svg class="chart dag".*?</svg>', text, re.S)
    assert len(drawings) == 1
    for component in COMPONENTS:
        assert drawings[0].count(f'>{component}</text>') == 1, component
    assert f'version {versions.drifted}' in drawings[0]

    # The span and the drift verdict, as the Lineage has them (the fixture trained on span 2, drifted).
    assert data['data']['span'] == 2
    assert _rows(tables, 'Data')['span'] == str(data['data']['span'])
    verdict = data['training']['drift_verdict']
    assert _rows(tables, 'Training')['drift verdict'] == verdict
    assert _rows(tables, 'Training')['drifted features'] == ', '.join(data['training']['drift_features'])
    assert _rows(tables, headings[0])['drift verdict'].startswith(verdict)
    assert _rows(tables, 'Run')['name'] == data['run']['name']
    assert _rows(tables, 'Code')['commit'] == data['code']['commit']

    # Every slice the Evaluator measured, its AUC against the baseline's.
    slices = data['evaluation']['slices']
    shown = {row[0]: row for row in tables['Metrics per slice'][1:]}
    assert set(shown) == set(slices)
    overall = slices['overall']
    assert shown['overall'][2] == f'{overall["candidate"]["auc"]:.4f}'
    assert shown['overall'][3] == f'{overall["baseline"]["auc"]:.4f}'
    assert _rows(tables, 'Evaluation')['baseline version'] == str(versions.first)

    # Links to the reports that exist, none to those that do not.
    assert f'href="{run_report}"' in text and f'href="{card}"' in text
    assert 'href="registry.html"' not in text
    # Live metrics since the push: a row per monitoring pass, or said that there are none.
    if data['live']:
        assert len(tables['Monitoring passes']) == len(data['live']) + 1
    else:
        assert 'No monitoring pass recorded' in text
