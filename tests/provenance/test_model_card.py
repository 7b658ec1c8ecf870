"""The model card of a pushed version: its numbers from ML Metadata, its prose from the template, its
limitations computed from what was recorded (on the version trained on drifted data: tests/conftest.py)."""

import html
import os

import pytest
import yaml
from support.html_tables import read_headings, read_tables
from support.samples import SECOND_COMMIT

from components.artifact_contents import OVERALL
from foundation.metadata_store import connect_existing as open_store
from provenance import lineage as lineage_lib
from provenance import model_card
from reports import page as html_page
from taxi_model import features

pytestmark = pytest.mark.e2e


# Only a template can have put this on a page.
MARKER = 'Intended-use text from the test template (marker 5c1e9a).'
SECTIONS = ('Model details', 'Intended use', 'Inputs and label', 'Training data', 'Quantitative analysis',
            'Approvals and stage history', 'Live performance since push', 'Considerations and limitations')


def write_template(path, **changes):
    """The repository's template with keys replaced (None: removed), written to `path`."""
    with open(model_card.TEMPLATE_PATH, encoding='utf-8') as f:
        data = yaml.safe_load(f)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data), encoding='utf-8')
    return str(path)


def drifted_card(versions, template_path):
    """(the lineage's to_dict(), the card, its page) of the drifted version."""
    found = lineage_lib.trace(open_store(versions.metadata_path), versions.base_path, versions.drifted)
    data = found.to_dict()
    card = model_card.card(found, model_card.load_template(template_path), data=data)
    return data, card, model_card.page(card)


@pytest.fixture(scope='module')
def drifted(versions, tmp_path_factory):
    template = write_template(tmp_path_factory.mktemp('card') / 'card.yaml', intended_use=MARKER)
    return drifted_card(versions, template)


def test_the_card_reads_its_numbers_from_ml_metadata_and_its_prose_from_the_template(drifted, versions):
    data, card, page = drifted
    assert [h for h in read_headings(page) if h in SECTIONS] == list(SECTIONS)
    tables = read_tables(page)
    # The prose is the template's, word for word; none of the repository's own intended use leaks in.
    assert card.template.intended_use == MARKER and html.escape(MARKER) in page
    assert model_card.load_template().intended_use not in html.unescape(page)
    # Inputs and label are taxi_model.features', not a list kept on the card.
    assert [row[0] for row in tables['Inputs and label'][1:]] == [f.name for f in features.FEATURES]
    assert features.LABEL.name in page and f'{features.LABEL.tip_fraction:.0%}' in page
    # Who made it: the run and the commit recorded for the version.
    assert data['run']['name'] in page and SECOND_COMMIT in page
    # Overall metrics as TFMA recorded them, beside the baseline's (the first version).
    overall = dict((row[0], row[1:]) for row in tables['Overall'][1:])
    recorded = data['evaluation']['slices'][OVERALL]
    assert overall['AUC'][:2] == [f'{recorded["candidate"]["auc"]:.4f}', f'{recorded["baseline"]["auc"]:.4f}']
    assert data['evaluation']['baseline_version'] == versions.first and f'baseline {versions.first}' in page
    # Charts: AUC and accuracy per slice.
    assert page.count('<svg') >= 2
    gates = {row[0]: row[-1] for row in tables['Thresholds it had to pass'][1:]}
    assert gates == {'min_auc': 'passed', 'min_accuracy': 'passed', 'max_auc_drop': 'passed'}


def test_the_card_names_the_drift_and_the_slices_too_small_to_judge(drifted):
    data, card, page = drifted
    tables = read_tables(page)
    found = {row[0]: row[1] for row in tables['Limitations found in ML Metadata'][1:]}
    # The drifted run moved every trip twelve hours: the card says it was trained on drifted data, and where.
    assert 'trip_start_hour' in found['Trained on drifted data']
    # Too few to judge: exactly the slices whose eval example count is under the floor the card states.
    floor = model_card.MIN_SLICE_EXAMPLES
    expected = sorted(name for name, metrics in data['evaluation']['slices'].items()
                      if name != OVERALL and metrics['candidate']['example_count'] < floor)
    assert expected, 'the eval split is small enough for some slices to fall under the floor'
    listed = tables[f'Slices too small to judge (fewer than {floor} eval examples)']
    assert sorted(row[0] for row in listed[1:]) == expected == sorted(card.too_few)
    assert f'have fewer than {floor} eval examples' in found['Slices too small to judge']
    # No slice is both too small and judged for anything else.
    assert not set(card.too_few) & (set(card.one_class) | set(card.weak))
    # Nothing monitored its traffic yet: the card says so instead of showing nothing.
    assert 'Not monitored in serving yet' in found


def test_the_card_links_to_the_pages_of_its_version_that_exist(drifted, versions, tmp_path):
    _, card, _ = drifted
    for name in (html_page.report_file(html_page.LINEAGE, versions.drifted), html_page.report_file(html_page.REGISTRY)):
        (tmp_path / name).write_text('<p>page</p>')
    page = model_card.page(card, reports_dir=str(tmp_path))
    assert f'href="{html_page.report_file(html_page.LINEAGE, versions.drifted)}"' in page
    assert f'href="{html_page.report_file(html_page.REGISTRY)}"' in page
    # No run report in the directory: no link to one.
    assert f'href="{html_page.report_file(html_page.RUN, card.run["name"])}"' not in page


def test_the_repository_template_is_complete():
    template = model_card.load_template()
    assert template.owners and template.intended_use and template.caveats
    assert os.path.samefile(template.source, model_card.TEMPLATE_PATH)


@pytest.mark.parametrize('key', model_card.TEMPLATE_KEYS)
def test_a_template_missing_a_key_is_refused_naming_it(tmp_path, key):
    path = write_template(tmp_path / 'card.yaml', **{key: None})
    with pytest.raises(ValueError, match=f'missing key {key}'):
        model_card.load_template(path)


def test_a_template_with_an_unknown_or_empty_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match='unknown key auc'):
        model_card.load_template(write_template(tmp_path / 'a.yaml', auc=0.99))
    with pytest.raises(ValueError, match=r'owners\[0\].contact'):
        model_card.load_template(write_template(tmp_path / 'b.yaml', owners=[{'name': 'someone'}]))
    with pytest.raises(ValueError, match='caveats must be a non-empty list'):
        model_card.load_template(write_template(tmp_path / 'c.yaml', caveats=[]))


def test_the_card_says_how_the_version_did_when_served_before_its_push(drifted):
    data, card, page = drifted
    infra = data['infra_validation']
    assert infra['blessed'] and infra['reason'] == 'every check passed'
    tables = read_tables(page)
    checks = {row[0]: row[1] for row in tables['Served before it was pushed'][1:] if len(row) == 3}
    assert checks['load'] == 'pass' and checks['latency'] == 'pass'
    assert checks['behaviour: paying cash instead of by card does not raise the tip probability'] == 'pass'
    assert {name for name in checks if name.startswith(('gRPC', 'REST'))} >= {
        'gRPC predict serving_raw', 'REST predict explain', 'gRPC classify classification', 'REST regress regression'}
