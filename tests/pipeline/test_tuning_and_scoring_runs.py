"""Tuning and batch scoring under LocalDagRunner, and `taxi-pipeline score`.

The session's first run did not tune: its Tuner handed the Trainer the defaults and said so, and its
BulkInferrer scored the eval split with the blessed candidate. On a copy of its store, a run with `tune`
set searches (two short trials), records every trial in ML Metadata and charts them in its report; the
next run that does not tune trains with that tuning, and `runs compare` names the run whose tuning it
was. `score` turns a span into warehouse files and a request log the monitor reads."""

import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from cli import main as cli
from components.bulk_inferrer import scoring
from components.tuner import tuning_records
from foundation import metadata_store
from pipeline import local_runner
from pipeline.config import PipelineConfig
from provenance import run_comparison, run_record
from provenance.reports import write_run_pages
from support.html_tables import read_tables
from support.samples import TRAIN_STEPS
from taxi_model import contract
from taxi_model.hyperparameters import SEARCH_SPACE, Hyperparameters

pytestmark = pytest.mark.e2e


def _outputs(config, result, node):
    """The outputs of `node` in the run `result` summarised (other tests run more runs on its store)."""
    store = metadata_store.connect_existing(config.metadata_path)
    step = run_record.find(store, result.run_id).step(node)
    return store, {key: artifacts[0] for key, artifacts in step.outputs.items()}


def _report(lines):
    path = next(line for line in lines if line.startswith('Report: '))[len('Report: '):]
    with open(path) as f:
        return f.read()


def test_a_run_that_does_not_tune_trains_with_the_defaults_and_says_so(first_run):
    config, result, lines = first_run
    _, outputs = _outputs(config, result, 'Tuner')
    best = outputs['best_hyperparameters']
    assert best.custom_properties['source'].string_value == tuning_records.DEFAULTS
    assert json.loads(best.custom_properties['hyperparameters'].string_value) == Hyperparameters().tuned_values()
    _, trained = _outputs(config, result, 'Trainer')
    assert trained['model'].custom_properties['hyperparameters_source'].string_value == tuning_records.DEFAULTS
    assert result.tuning['source'] == tuning_records.DEFAULTS
    assert 'Hyperparameters: the defaults (never tuned)' in result.render()


def test_the_bulk_inferrer_scores_the_spans_eval_split_with_flags(first_run):
    config, result, lines = first_run
    _, outputs = _outputs(config, result, 'BulkInferrer')
    scored = outputs['inference_result']
    logs = scoring.read_prediction_logs(scored.uri)
    assert len(logs) == scored.custom_properties['examples'].int_value == result.rows['eval']
    response = logs[0].predict_log.response.outputs
    assert {contract.PROBABILITIES, contract.IS_OUTLIER, contract.OUTLIER_SCORE, contract.FLAGGED_FEATURES} <= set(
        response)
    flagged = sum(log.predict_log.response.outputs[contract.IS_OUTLIER].bool_val[0] for log in logs)
    assert flagged == scored.custom_properties['outliers'].int_value
    # The request is the example as ExampleGen wrote it: the candidate's own answer for it matches the log.
    model = tf.saved_model.load(os.path.join(_outputs(config, result, 'Trainer')[1]['model'].uri, 'Format-Serving'))
    request = logs[0].predict_log.request.inputs[contract.EXAMPLES_INPUT].string_val[0]
    expected = model.signatures[contract.PREDICT_EXAMPLES](examples=tf.constant([request]))[contract.PROBABILITIES]
    assert response[contract.PROBABILITIES].float_val[0] == pytest.approx(float(expected[0][0]), abs=1e-5)
    assert f'Scored: {result.rows["eval"]:,} examples of the span (eval)' in result.render()


def test_examples_scored_in_the_models_graph_get_the_answers_of_their_rows_scored_raw(first_run):
    """The BulkInferrer scores serialized examples through `serving_default`, which parses them in the
    model's graph; `score` reads each into a row first and calls `serving_raw`. Every output agrees."""
    from components.bulk_inferrer.executor import read_examples
    config, result, _ = first_run
    model = tf.saved_model.load(os.path.join(_outputs(config, result, 'Trainer')[1]['model'].uri, 'Format-Serving'))
    serialized = read_examples(result.outputs['CsvExampleGen']['examples'], 'eval')
    assert len(serialized) == result.rows['eval']
    in_graph = scoring.score_examples(model, serialized)
    raw = scoring.score(model, [contract.from_tf_example(tf.train.Example.FromString(e)) for e in serialized])
    assert set(in_graph) == set(raw)
    for key, values in raw.items():
        if values.dtype.kind == 'f':
            assert in_graph[key] == pytest.approx(values, abs=1e-6), key
        else:
            assert list(in_graph[key]) == list(values), key


@pytest.fixture(scope='module')
def tuned_runs(first_run, tmp_path_factory):
    """On a copy of the first run's store and data: a run that tunes, then one that does not."""
    first_config, first, _ = first_run
    root = tmp_path_factory.mktemp('tuning')
    settings = dict(train_steps=TRAIN_STEPS, eval_steps=50, tuning_max_trials=2, tuning_trial_steps=60)
    config = PipelineConfig.for_workspace(str(root), data_root=first_config.data_root, **settings)
    shutil.copy(first_config.metadata_path, config.metadata_path)
    runs = []
    for tune in (True, False):
        lines = []
        cfg = PipelineConfig.for_workspace(str(root), data_root=first_config.data_root, tune=tune, **settings)
        summary = local_runner.run(cfg, emit_line=lines.append, pages=write_run_pages)
        assert summary.succeeded, summary.render()
        runs.append((summary, lines))
    return config, first, runs


def test_a_tuning_run_records_every_trial_and_trains_with_the_best(tuned_runs):
    config, _, [(tuned, lines), _] = tuned_runs
    assert tuned.state_of('Tuner') == 'done'
    store = metadata_store.connect_existing(config.metadata_path)
    record = run_record.find(store, tuned.run_id)
    best = record.step('Tuner').output('best_hyperparameters')
    trials = json.loads(best.custom_properties['trials'].string_value)
    assert 1 <= len(trials) <= 2 and all(set(t['values']) == set(SEARCH_SPACE) for t in trials)
    scores = [t['score'] for t in trials]
    assert all(0.5 < s <= 1 for s in scores)
    winner = next(t for t in trials if t['score'] == max(scores))
    values = json.loads(best.custom_properties['hyperparameters'].string_value)
    assert values == winner['values']
    parameters = record.parameters()
    assert parameters['tune'] == 1 and parameters['hp.source'] == tuning_records.TUNED
    assert parameters['hp.tuned_by'] == tuned.run_id
    assert parameters['hp.learning_rate'] == values['learning_rate']
    assert parameters['hp.hidden_units'] == [int(u) for u in values['hidden_units'].split('-')]
    # The record later runs read, in the records directory.
    assert tuning_records.latest(config.tuning_records_dir).artifact_uri == best.uri
    text = tuned.render()
    assert f'Hyperparameters: tuned in this run ({len(trials)} trial(s), best validation AUC {max(scores):.4f}' in text
    page = _report(lines)
    tables = read_tables(page)
    heading = next(h for h in tables if h.startswith('Hyperparameters'))
    assert heading == 'Hyperparameters: tuned in this run'
    assert [row[0] for row in tables[heading][1:]] == [t['trial_id'] for t in sorted(trials, key=lambda t: -t['score'])]
    assert page.count('<svg class="chart"') >= 1 and 'trial ' in page


def test_the_next_run_trains_with_the_last_tuning_and_compare_names_it(tuned_runs):
    config, first, [(tuned, _), (untuned, _)] = tuned_runs
    # A tuning since the last run changed the Tuner's cache key: it answered afresh, with the tuning.
    assert untuned.state_of('Tuner') == 'done' and untuned.tuning['source'] == tuning_records.PREVIOUS
    assert untuned.tuning['hyperparameters'] == tuned.tuning['hyperparameters']
    assert 'Hyperparameters: from the last tuning (' in untuned.render()
    store = metadata_store.connect_existing(config.metadata_path)
    record = run_record.find(store, untuned.run_id)
    assert record.parameters()['hp.tuned_by'] == tuned.run_id and record.tuning['tuned_by'] == tuned.run_id
    comparison = run_comparison.compare(run_record.find(store, first.run_id), record)
    changed = {d.name: (d.a, d.b) for d in comparison.parameters}
    assert changed['hp.source'] == (tuning_records.DEFAULTS, tuning_records.PREVIOUS)
    assert changed['hp.tuned_by'] == (None, tuned.run_id)
    assert tuned.run_id in comparison.render_text()


def test_score_writes_warehouse_files_and_a_request_log_the_monitor_reads(first_run, tmp_path, capsys):
    config, result, _ = first_run
    base, version = config.serving_model_dir, os.path.basename(result.pushed_to)
    span = os.path.join(config.data_root, 'span-1')
    out, logs = tmp_path / 'out', tmp_path / 'logs'
    code = cli.main(['score', '--model-base-path', base, '--input', span, '--output', str(out), '--format', 'csv',
                     '--format', 'parquet', '--request-log-dir', str(logs)])
    assert code == 0
    table = pq.read_table(out / 'predictions.parquet')
    rows = result.rows['read']
    assert table.num_rows == rows and table.column_names[:7] == [name for name, _ in scoring.TABLE_SCHEMA]
    assert str(table.schema.field('probability').type) == 'double' and table.column('model_version')[0].as_py() == int(
        version)
    stated = json.loads((out / 'predictions.schema.json').read_text())['columns']
    assert [c['name'] for c in stated] == table.column_names
    with open(out / 'predictions.csv') as f:
        assert f.readline().rstrip('\n').split(',') == table.column_names and sum(1 for _ in f) == rows
    assert not [p for p in os.listdir(out) if p.startswith('.')]  # no temporary files left
    # The monitor reads the scored rows as it reads served traffic (on a copy of the store: it records there).
    metadata = tmp_path / 'metadata.sqlite'
    shutil.copy(config.metadata_path, metadata)
    capsys.readouterr()
    code = cli.main(['monitor', '--request-log-dir', str(logs), '--model-base-path', base, '--window', '1h',
                     '--metadata-path', str(metadata), '--report-dir', str(tmp_path / 'reports'),
                     '--feedback-dir', str(tmp_path / 'feedback')])
    out_text = capsys.readouterr().out
    assert code in (0, 3) and f'version {version}: {rows} examples' in out_text


def test_score_refuses_bad_input_with_one_line(first_run, tmp_path, capsys):
    config, _, _ = first_run
    code = cli.main(['score', '--model-base-path', config.serving_model_dir, '--input', str(tmp_path / 'none.csv'),
                     '--output', str(tmp_path / 'out')])
    error = capsys.readouterr().err.strip()
    assert code == 2 and 'none.csv: no such file or directory' in error and len(error.splitlines()) == 1
    code = cli.main(['score', '--model-base-path', config.serving_model_dir, '--version', '1', '--input',
                     os.path.join(config.data_root, 'span-1'), '--output', str(tmp_path / 'out')])
    assert code == 2 and 'version 1 is not a complete SavedModel' in capsys.readouterr().err
