"""`taxi-pipeline lineage`: each pushed version traced to the exact run, span, schema, code and metrics
that made it, across two real runs on two spans (one under another commit)."""

import hashlib
import json
import os
import subprocess

import pytest

import schemas
from cli import main as cli
from components import code_version
from pipeline import data
from foundation.metadata_store import connect_existing as open_store
from provenance import lineage as lineage_lib, run_record
from support.samples import SECOND_COMMIT

pytestmark = pytest.mark.e2e


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _lineage_json(versions, version, capsys):
    code = cli.main(['lineage', str(version), '--json', '--metadata-path', versions.metadata_path,
                     '--model-base-path', versions.base_path])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def _git_head():
    done = subprocess.run(['git', '-C', REPO, 'rev-parse', 'HEAD'], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def _csv_rows(path):
    _, rows = data.read_rows(path)
    return len(rows)


def test_each_version_names_the_run_span_schema_code_and_metrics_that_made_it(versions, first_run, capsys):
    first, second = (_lineage_json(versions, v, capsys) for v in (versions.first, versions.drifted))
    # The run that pushed it, and no other.
    assert first['run']['name'] == versions.first_run and second['run']['name'] == versions.drifted_run
    # The exact span, with every row of its files accounted for in the splits.
    assert (first['data']['span'], second['data']['span']) == (1, 2)
    for found in (first, second):
        assert [os.path.basename(os.path.dirname(f)) for f in found['data']['files']] == [f'span-{found["data"]["span"]}']
        assert sum(found['data']['rows'].values()) == _csv_rows(found['data']['files'][0])
    # The schema it was validated against: the curated one, byte for byte, unchanged between the two.
    with open(schemas.CURATED_SCHEMA, 'rb') as f:
        curated = hashlib.sha256(f.read()).hexdigest()
    assert first['schema']['sha256'] == second['schema']['sha256'] == curated
    assert first['schema']['previous_version'] is None and first['schema']['changed'] is None
    assert second['schema']['previous_version'] == versions.first and second['schema']['changed'] is False
    # The code: this checkout's commit for the first run, the commit the image named for the second.
    assert second['code']['commit'] == SECOND_COMMIT
    head = _git_head()
    if head:
        assert first['code']['commit'] == head
    assert first['code']['source_digest'] == code_version.source_digest()
    # Parameters as the executions recorded them: the second run trained 100 steps.
    assert first['training']['train_steps'] == first_run[0].train_steps and second['training']['train_steps'] == 100
    # The metrics of that run's evaluation, and the baseline it was compared against.
    _, summary, _ = first_run
    assert first['evaluation']['slices']['overall']['candidate'] == pytest.approx(summary.metrics)
    assert first['evaluation']['baseline_version'] is None
    assert second['evaluation']['baseline_version'] == versions.first
    assert second['training']['drift_verdict'] == 'drift' and 'trip_start_hour' in second['training']['drift_features']
    assert first['evaluation']['blessed'] is True and first['stage'] == 'candidate'


def test_the_lineage_is_the_upstream_graph_of_the_pushed_model(versions):
    store = open_store(versions.metadata_path)
    found = lineage_lib.trace(store, versions.base_path, versions.drifted)
    names = run_record.node_ids(found.upstream)
    made_by = set(names.values())
    assert {'CsvExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'Transform', 'Trainer', 'Evaluator',
            'Pusher'} <= made_by
    # The examples the model was trained from are the ones this run's ExampleGen produced.
    assert found.run.examples.id in {a.id for a in found.upstream.artifacts}
    # Nothing after the push is "what made it".
    assert 'ServingMonitor' not in {e.type for e in found.upstream.executions}


def test_text_and_page_answer_the_same_question(versions, tmp_path, capsys):
    page = tmp_path / 'lineage.html'
    assert cli.main(['lineage', str(versions.drifted), '--html', str(page), '--metadata-path', versions.metadata_path,
                     '--model-base-path', versions.base_path, '--reports-dir', str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert 'span 2' in text and SECOND_COMMIT in text and 'drift in trip_start_hour' in text
    assert page.exists() and '<svg' in page.read_text()


def test_a_version_nobody_pushed_has_no_lineage_and_says_which_do(versions, capsys):
    code = cli.main(['lineage', str(versions.unregistered), '--metadata-path', versions.metadata_path,
                     '--model-base-path', versions.base_path])
    err = capsys.readouterr().err
    assert code == 2
    assert 'no push recorded' in err and str(versions.first) in err and str(versions.drifted) in err


def test_a_missing_store_is_refused_clearly(tmp_path, capsys):
    code = cli.main(['lineage', '1', '--metadata-path', str(tmp_path / 'none.sqlite')])
    assert code == 2 and 'no ML Metadata store' in capsys.readouterr().err
    assert not (tmp_path / 'none.sqlite').exists()


def test_every_run_records_its_code_and_trigger(versions):
    store = open_store(versions.metadata_path)
    runs = {r.name: r for r in run_record.all_runs(store)}
    first, second = runs[versions.first_run], runs[versions.drifted_run]
    assert second.code.commit == SECOND_COMMIT and first.code.commit != SECOND_COMMIT
    assert first.code.package_version and first.code.tfx_version
    assert first.trigger.kind == 'manual'
    # The model carries the same record, for runners (Kubeflow) where the run context cannot be written.
    model = second.step('Trainer').output('model')
    assert code_version.read(model.custom_properties) == second.code
    # The Evaluator records the overall metrics in ML Metadata: the same numbers TFMA's output holds.
    evaluation = second.step('Evaluator').output('evaluation')
    recorded = {k: v.double_value for k, v in evaluation.custom_properties.items() if k.startswith('metric_')}
    assert recorded and second.overall_metrics() == pytest.approx(second.metrics()['overall'][0])


def test_the_image_says_which_commit_it_holds(monkeypatch):
    monkeypatch.setenv(code_version.COMMIT_VARIABLE, 'abc123')
    monkeypatch.setenv(code_version.IMAGE_VARIABLE, 'gcr.io/p/chicago-taxi-pipeline:abc123')
    found = code_version.current()
    assert (found.commit, found.image, found.dirty) == ('abc123', 'gcr.io/p/chicago-taxi-pipeline:abc123', None)
    assert code_version.read(_as_properties(found)) == found


def _as_properties(version):
    from ml_metadata.proto import metadata_store_pb2
    context = metadata_store_pb2.Context()
    code_version.stamp(context.custom_properties, version)
    return context.custom_properties


def test_the_component_code_digest_changes_with_the_code(tmp_path):
    for package in code_version.COMPONENT_CODE:
        (tmp_path / package).mkdir()
        (tmp_path / package / 'a.py').write_text('x = 1\n')
    before = code_version.source_digest(str(tmp_path))
    (tmp_path / 'taxi_model' / 'a.py').write_text('x = 2\n')
    assert code_version.source_digest(str(tmp_path)) != before
