"""`taxi-pipeline runs` and `runs compare A B`: every run listed in order with its span, parameters, outcome
and metrics, and what differed between two real runs (span 1, then trip hours shifted 12h on span 2 with
fewer training steps and looser thresholds), as text, JSON and pages.

Values are checked against what the run records say, never against remembered metric numbers."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from typing import Optional

import pytest
from support.html_tables import read_headings, read_tables
from support.samples import SECOND_COMMIT
from tensorflow_metadata.proto.v0 import statistics_pb2

from cli import main as cli
from components.artifact_contents import OVERALL
from foundation.metadata_store import connect_existing as open_store
from provenance import run_comparison, run_history, run_record
from reports import page as html_page

pytestmark = pytest.mark.e2e


THRESHOLDS = ('min_auc', 'min_accuracy', 'max_auc_drop')
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The listing in a fresh process, with the store opened the one way the project opens it.
LIST_RUNS = '''
import json, sys
from foundation import metadata_store
from provenance import run_history, run_record
rows = run_history.rows(run_record.all_runs(metadata_store.connect(sys.argv[1], mode=metadata_store.READ)))
loaded = [m for m in ('tensorflow', 'tensorflow_model_analysis') if m in sys.modules]
print(json.dumps({'rows': rows, 'loaded': loaded}))
'''


# Two real runs (fixture `versions`).
@pytest.fixture(scope='module')
def store(versions):
    return open_store(versions.metadata_path)


@pytest.fixture(scope='module')
def pair(versions, store):
    """(first run, drifted run) as ML Metadata recorded them."""
    return run_record.find(store, versions.first_run), run_record.find(store, versions.drifted_run)


@pytest.fixture(scope='module')
def comparison(pair):
    return run_comparison.compare(*pair)


@pytest.fixture(scope='module')
def listing(store):
    return run_history.rows(run_record.all_runs(store))


def test_compare_names_the_changed_parameters_code_span_and_statistics(comparison, pair, first_run):
    first_config = first_run[0]
    a, b = pair
    parameters = {d.name: (d.a, d.b) for d in comparison.parameters}
    assert parameters['train_steps'] == (first_config.train_steps, 100)
    for name in THRESHOLDS:
        assert parameters[name] == (getattr(first_config.thresholds, name), 0.5)
    # Only what differed: a parameter both runs share is not listed.
    same = {k for k, v in a.parameters().items() if b.parameters().get(k) == v}
    assert same and not same & set(parameters)
    assert {d.name: d.b for d in comparison.code}['commit'] == SECOND_COMMIT
    data = {d.name: (d.a, d.b) for d in comparison.data}
    assert data['span'] == (1, 2)
    # The 12h shift moved the hour's mean, as the two runs' own statistics say; the day of the week did not move.
    moved = {(f.feature, f.measure): (f.a, f.b) for f in comparison.features}
    means = tuple(run_comparison.feature_measures(r.statistics('train'))['trip_start_hour']['mean'] for r in pair)
    assert moved[('trip_start_hour', 'mean')] == pytest.approx(means)
    assert 'trip_start_day' not in {f.feature for f in comparison.features}


def test_compare_gives_each_runs_metrics_per_slice_and_the_difference(comparison, pair, versions):
    a, b = pair
    overall = comparison.overall
    for metric in ('auc', 'binary_accuracy', 'precision', 'recall', 'example_count'):
        expected_a, expected_b = (r.metrics()[OVERALL][0][metric] for r in pair)
        assert (overall.a[metric], overall.b[metric]) == pytest.approx((expected_a, expected_b))
        assert overall.delta(metric) == pytest.approx(expected_b - expected_a)
    assert {s.slice for s in comparison.slices} == set(a.metrics()) | set(b.metrics())
    assert comparison.metrics_differ
    assert (comparison.a.blessed, comparison.b.blessed) == (True, True)
    assert (comparison.a.pushed_version, comparison.b.pushed_version) == (versions.first, versions.drifted)


def test_compare_text_and_json_say_what_differed_first(comparison, first_run):
    text = comparison.render_text()
    lines = text.splitlines()
    assert lines[0].startswith(f'A: {comparison.a.name}') and lines[1].startswith(f'B: {comparison.b.name}')
    assert re.search(rf'train_steps\s+{first_run[0].train_steps}\s+->\s+100\b', text)
    assert re.search(r'span\s+1\s+->\s+2\b', text) and 'trip_start_hour mean' in text
    # The differences before the metrics, and the tolerance the statistics were held to stated.
    assert text.index('Parameters:') < text.index('Training statistics') < text.index('Metrics')
    assert run_comparison.TOLERANCE_NOTE in text
    found = json.loads(json.dumps(comparison.to_dict(), allow_nan=False))
    assert {'name': 'train_steps', 'a': first_run[0].train_steps, 'b': 100} in found['parameters']
    assert found['differed'][0].startswith('parameters')
    overall = next(m for m in found['metrics'] if m['slice'] == OVERALL)
    assert overall['delta']['auc'] == pytest.approx(overall['b']['auc'] - overall['a']['auc'])


def test_a_run_compared_with_itself_differs_in_nothing(pair, tmp_path):
    _, run = pair
    same = run_comparison.compare(run, run)
    assert same.differed() == [] and not same.parameters and not same.features and not same.metrics_differ
    assert 'Nothing differed' in same.render_text()
    assert 'Nothing differed' in run_comparison.page(same, str(tmp_path))


def test_the_list_shows_every_run_oldest_first_numbered_as_compare_takes_them(listing, versions, store, pair):
    assert [r['number'] for r in listing] == list(range(1, len(listing) + 1))
    assert [r['started_ms'] for r in listing] == sorted(r['started_ms'] for r in listing)
    by_name = {r['run']: r for r in listing}
    first, drifted = by_name[versions.first_run], by_name[versions.drifted_run]
    assert first['number'] < drifted['number']
    assert run_record.find(store, str(drifted['number'])).name == versions.drifted_run
    assert (first['span'], drifted['span']) == (1, 2)
    assert first['outcome'] == drifted['outcome'] == 'succeeded'
    for row, record in zip((first, drifted), pair):
        candidate = record.metrics()[OVERALL][0]
        assert (row['auc'], row['accuracy']) == pytest.approx((candidate['auc'], candidate['binary_accuracy']))
        assert row['parameters'] == record.parameters()
    assert (first['pushed_version'], drifted['pushed_version']) == (versions.first, versions.drifted)
    assert drifted['commit'] == SECOND_COMMIT[:12]
    # Against the first run: the drifted run's changed settings, and nothing it shares.
    assert drifted['changed_parameters']['train_steps'] == 100
    changed = drifted['changed_parameters']
    assert set(THRESHOLDS) <= set(changed) and 'hp.learning_rate' not in changed
    json.dumps(listing, allow_nan=False)


def test_listing_reads_the_metrics_without_loading_tensorflow(listing, versions):
    # Importing TFMA to read two numbers a run would cost the listing about 9 seconds.
    done = subprocess.run([sys.executable, '-c', LIST_RUNS, versions.metadata_path], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, 'PYTHONPATH': REPO})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found['loaded'] == []
    assert [(r['auc'], r['accuracy']) for r in found['rows']] == [(r['auc'], r['accuracy']) for r in listing]


def test_the_list_as_text_is_one_aligned_line_a_run(listing, versions):
    lines = run_history.render_text(listing).splitlines()
    header, runs = lines[0], lines[1:1 + len(listing)]
    assert header.startswith('#') and 'SPAN' in header and 'OUTCOME' in header
    assert [line.split()[0] for line in runs] == [str(r['number']) for r in listing]
    # Aligned: every run's outcome starts under the heading.
    column = header.index('OUTCOME')
    assert all(line[column:].startswith(r['outcome']) for line, r in zip(runs, listing))
    names = [next(i for i, line in enumerate(runs) if name in line) for name in (versions.first_run,
                                                                              versions.drifted_run)]
    assert names[0] < names[1]


def test_both_pages_parse_draw_charts_and_link_the_reports_that_exist(listing, comparison, versions, tmp_path):
    # Only pages that exist are linked: the first run's report and the runs page, not the drifted run's report.
    for name in (html_page.report_file(html_page.RUN, versions.first_run), html_page.report_file(html_page.RUNS)):
        (tmp_path / name).write_text('<html></html>')
    runs_page = run_history.page(listing, str(tmp_path))
    table = read_tables(runs_page)['Runs']
    assert [row[0] for row in table[1:]] == [str(r['number']) for r in listing]
    assert '<svg' in runs_page and {'Evaluation per run', 'Duration per run'} <= set(read_headings(runs_page))
    assert f'href="{html_page.report_file(html_page.RUN, versions.first_run)}"' in runs_page
    assert html_page.report_file(html_page.RUN, versions.drifted_run) not in runs_page

    page = run_comparison.page(comparison, str(tmp_path))
    tables = read_tables(page)
    assert ['train_steps', str(comparison.a.parameters['train_steps']), '100'] in tables['Parameters that differ']
    overall = next(row for row in tables['Metrics per slice'] if row[0] == OVERALL)
    assert f'{comparison.overall.a["auc"]:.4f}' in overall[2] and f'{comparison.overall.b["auc"]:.4f}' in overall[2]
    assert page.count('<svg') >= 2
    assert f'href="{html_page.report_file(html_page.RUNS)}"' in page
    assert f'href="{html_page.report_file(html_page.RUN, versions.first_run)}"' in page


def test_an_unknown_run_is_a_clear_error(store):
    with pytest.raises(ValueError, match=r"no run match 'no-such-run'.*taxi-pipeline runs"):
        run_record.find(store, 'no-such-run')


def _cli(argv, capsys):
    """The command's exit code and output."""
    capsys.readouterr()
    code = cli.main(argv)
    return code, capsys.readouterr()


def test_the_commands(versions, capsys):
    code, out = _cli(['runs', '--json', '--metadata-path', versions.metadata_path], capsys)
    assert code == 0
    names = [row['run'] for row in json.loads(out.out)]
    assert names.index(versions.first_run) < names.index(versions.drifted_run)
    code, out = _cli(['runs', 'compare', 'no-such-run', versions.first_run, '--metadata-path',
                      versions.metadata_path], capsys)
    assert code == 2 and 'no-such-run' in out.err


def test_options_given_before_compare_are_kept():
    """A subcommand's defaults must not overwrite what was said before it: the cluster's store stays chosen."""
    args = cli.parser().parse_args(['runs', '--metadata-grpc', 'metadata:8080', '--json', 'compare', '1', '2'])
    assert (args.metadata_grpc, args.json, args.verb) == ('metadata:8080', True, 'compare')
    args = cli.parser().parse_args(['runs', 'compare', '1', '2', '--metadata-grpc', 'metadata:8080'])
    assert args.metadata_grpc == 'metadata:8080'


# Without a pipeline run: the rules behind the listing, the statistics tolerance and the charts.
@dataclasses.dataclass
class _Run:
    """What `run_history.rows` reads of a RunRecord."""

    name: str
    started_ms: int
    settings: dict
    outcome: str = 'succeeded'
    span: Optional[int] = 1
    seconds: float = 42.0
    trigger = None
    code = None
    evaluation_uri = None
    blessed = None
    pushed_version = None
    push_cached = None

    def parameters(self):
        return dict(self.settings)

    def overall_metrics(self):
        return {}


def test_changed_parameters_are_against_the_first_run_that_recorded_them():
    runs = [_Run('failed-early', 1000, {'data_root': '/d'}, outcome='failed', span=None),
            _Run('trained', 2000, {'data_root': '/d', 'train_steps': 300}),
            _Run('fewer-steps', 3000, {'data_root': '/d', 'train_steps': 100}, seconds=float('nan'))]
    rows = run_history.rows(runs)
    assert [r['number'] for r in rows] == [1, 2, 3]
    # The first run never trained: the second's steps are not a change, the third's are.
    assert [r['changed_parameters'] for r in rows] == [{}, {}, {'train_steps': 100}]
    assert rows[2]['seconds'] is None and rows[0]['auc'] is None
    text = run_history.render_text(rows)
    assert 'train_steps=100' in text.splitlines()[3] and run_history.DIRTY_NOTE not in text
    assert run_history.render_text([]).startswith('no runs recorded')


def _stats(features) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Statistics of one dataset: name -> (mean, std, missing) for numbers, (top value, unique, missing) for text."""
    found = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = found.datasets.add(num_examples=1000)
    for name, values in features.items():
        feature = dataset.features.add()
        feature.path.step.append(name)
        if isinstance(values[0], str):
            feature.type = statistics_pb2.FeatureNameStatistics.STRING
            top, unique, missing = values
            feature.string_stats.unique = unique
            feature.string_stats.top_values.add(value=top, frequency=500)
            common = feature.string_stats.common_stats
        else:
            feature.type = statistics_pb2.FeatureNameStatistics.FLOAT
            feature.num_stats.mean, feature.num_stats.std_dev, missing = values
            common = feature.num_stats.common_stats
        common.num_missing, common.num_non_missing = missing, 1000 - missing
    return found


def test_statistics_move_relative_to_their_spread_and_small_changes_are_not_listed():
    before = _stats({'latitude': (41.90, 0.04, 0), 'fare': (11.74, 10.3, 0), 'hour': (13.6, 6.6, 0),
                     'company': ('Flash Cab', 30, 0), 'tips': (1.0, 2.2, 1)})
    after = _stats({'latitude': (41.95, 0.04, 0), 'fare': (11.84, 10.4, 0), 'hour': (13.6, 9.0, 0),
                    'company': ('Blue Ribbon', 31, 0), 'tips': (1.0, 2.2, 3)})
    moved = {(f.feature, f.measure) for f in run_comparison.feature_changes(before, after)}
    # 0.05 degrees is 0.1% of a latitude but more than a standard deviation of it; fare's 0.1 is 1% of its spread.
    assert moved == {('latitude', 'mean'), ('hour', 'std'), ('company', 'top value')}
