"""reports.page: templates escape what they are given, and links go only to pages that exist."""

import pytest

from reports import page

pytestmark = pytest.mark.unit


def test_links_go_only_to_pages_that_exist_and_this_page_is_named_not_linked(tmp_path):
    for name in (page.report_file(page.RUNS), page.report_file(page.LINEAGE, 3)):
        (tmp_path / name).write_text('')
    shown = page.related(str(tmp_path), page.report_file(page.MODEL_CARD, 3), runs=['r1'], versions=[3])
    assert shown == [page.Link('Runs', 'runs.html'), page.Link('Lineage of 3', 'lineage-3.html'),
                     page.Link('Model card of 3', None)]
    # A page with nothing to link to shows no bar at all.
    assert page.related(None, page.report_file(page.RUNS)) == []


def test_a_page_escapes_the_text_it_is_given_and_holds_no_script(tmp_path):
    text = page.render('comparison.html', title='Run <a> vs <b>', nav=[page.Link('Runs & more', 'runs.html')],
                       differed=['<script>alert(1)</script>'], facts=[['run', '<a>', 'b"']], sections=[],
                       statistics_missing=None, tolerance_note='note', features=[], metrics=None)
    assert '<script>' not in text and '&lt;script&gt;' in text
    assert '<title>Run &lt;a&gt; vs &lt;b&gt;</title>' in text and '>Runs &amp; more</a>' in text
    assert 'http' not in text
