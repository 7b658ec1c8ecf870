"""The pipeline end to end on LocalDagRunner: run, lineage, push, and rejection.

Runs in this order (pytest keeps file order): a first run on a fresh
workspace, then a run that must be rejected by the absolute threshold, then
one rejected by the change threshold against the first run's pushed model.
"""

import dataclasses
import hashlib
import json
import os
import re
from xml.etree import ElementTree

import numpy as np
import pytest
import tensorflow as tf

from foundation import metadata_store
from components.baseline_model import latest_pushed_version
from pipeline import data, local_runner, run_summary, run_trigger
from provenance import lineage, run_history, run_record
from provenance.reports import write_run_pages
from release import registry
from pipeline.config import Thresholds
from support.html_tables import read_tables
from taxi_model import contract
from taxi_model.features import FEATURES

pytestmark = pytest.mark.e2e


NODES = ['CsvExampleGen', 'ImportSchemaGen', 'StatisticsGen', 'DraftSchemaGen', 'DriftCheck', 'ExampleValidator',
         'AnomaliesGate', 'Transform', 'Tuner', 'Trainer', 'InfraValidation', 'LatestBlessedModel', 'Evaluator',
         'BulkInferrer', 'Pusher', 'RunViews']


def _tree_digest(path):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            digest.update(os.path.relpath(os.path.join(root, name), path).encode())
            with open(os.path.join(root, name), 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def _executions_by_node(config):
    store = metadata_store.connect_existing(config.metadata_path)
    return store, run_summary.latest_run_executions(store, config)


def test_every_component_runs_and_is_recorded_in_mlmd(first_run):
    config, result, progress = first_run
    assert result.succeeded
    assert [c.node_id for c in result.components] == NODES
    assert all(c.state == 'done' for c in result.components)
    # Progress named every component as it finished.
    for node in NODES:
        assert any(node in line and 'done' in line for line in progress), node


def test_every_row_is_accounted_for_from_the_csv_to_the_evaluation(first_run):
    config, result, lines = first_run
    _, csv_rows = data.read_rows(os.path.join(data.span_dirs(config.data_root)[-1][1], 'data.csv'))
    rows = result.rows
    assert rows['read'] == len(csv_rows)
    assert rows['train'] + rows['eval'] == rows['read'] and min(rows['train'], rows['eval']) > 0
    # Transform writes the graph alone (materialize=False): no second copy of the rows to account for.
    assert not any(key.startswith('transformed') for key in rows)
    assert rows['evaluated'] == rows['eval']
    assert f'\nRows: read {len(csv_rows):,} -> train' in '\n'.join(lines)
    # How much of the training split the model saw, as the Trainer's execution recorded its steps.
    training = result.training
    assert training['steps'] == config.train_steps and training['batch_size'] == config.hyperparameters.batch_size
    epochs = training['steps'] * training['batch_size'] / rows['train']
    assert f'{epochs:.2f} epochs of the {rows["train"]:,} training rows' in result.render()


def test_rows_lost_between_two_steps_fail_the_run_naming_the_step():
    counts = {'read': 3000, 'train': 2000, 'eval': 1000, 'evaluated': 1000}
    assert run_summary.unaccounted(counts) == []
    assert run_summary.unaccounted({**counts, 'read': 3001})[0].startswith('the span has 3,001 rows but ExampleGen')
    assert run_summary.unaccounted({**counts, 'evaluated': 999}) == [
        'the Evaluator counted 999 examples of the 1,000 it was given (the eval split)']
    # An evaluated sample is accounted for by its recorded size, not the split's.
    sampled = {**counts, 'eval sample': 400, 'evaluated': 400}
    assert run_summary.unaccounted(sampled) == []
    assert run_summary.unaccounted({**sampled, 'evaluated': 399})[0].startswith('the Evaluator counted 399')


def test_the_summary_says_when_validation_stopped_training_and_which_weights_it_kept():
    def line(**training):
        summary = run_summary.RunSummary('r', [], 1.0, rows={'read': 150_000, 'train': 100_000, 'eval': 50_000},
                                         training=training)
        return next(text for text in summary.render().splitlines() if text.startswith('Training: '))
    assert 'validation' not in line(steps=6250, batch_size=64, taken=6250, kept=6250)
    assert line(steps=6250, batch_size=64, taken=3000, kept=1000).endswith(
        'validation AUC stopped improving: stopped after 3,000 steps, kept the weights at 1,000 steps (0.64 epochs)')
    assert line(steps=2000, batch_size=64, taken=2000, kept=1000).endswith(
        'validation AUC stopped improving: kept the weights at 1,000 steps (0.64 epochs)')


def test_first_model_is_blessed_and_pushed_to_a_versioned_directory(first_run):
    config, result, _ = first_run
    assert result.blessed is True
    assert result.metrics['auc'] >= config.thresholds.min_auc
    assert result.baseline_metrics == {}  # nothing was pushed before
    version = latest_pushed_version(config.serving_model_dir)
    assert result.pushed_to == os.path.join(config.serving_model_dir, version)
    assert os.path.isfile(os.path.join(result.pushed_to, 'saved_model.pb'))


def test_pushed_model_traces_back_to_its_data_schema_and_blessing(first_run):
    config, result, _ = first_run
    store, executions = _executions_by_node(config)

    def inputs(node):
        events = store.get_events_by_execution_ids([executions[node].id])
        return {e.path.steps[0].key: e.artifact_id for e in events if e.type == e.INPUT}

    def outputs(node):
        events = store.get_events_by_execution_ids([executions[node].id])
        return {e.path.steps[0].key: e.artifact_id for e in events if e.type == e.OUTPUT}

    assert inputs('Pusher')['model'] == outputs('Trainer')['model']
    assert inputs('Pusher')['model_blessing'] == outputs('Evaluator')['blessing']
    # The Pusher pushed only after the candidate was served, answered, fast enough, and behaved.
    assert inputs('Pusher')['infra_blessing'] == outputs('InfraValidation')['blessing']
    assert inputs('InfraValidation')['model'] == outputs('Trainer')['model']
    infra = store.get_artifacts_by_id([outputs('InfraValidation')['blessing']])[0]
    assert infra.custom_properties['blessed'].int_value == 1, infra.custom_properties['reason'].string_value
    assert json.loads(infra.custom_properties['checks_failed'].string_value) == []
    assert infra.custom_properties['checks_passed'].int_value >= 18  # 5 signatures x 2 protocols, 5 cases, ...
    assert 'Infra validation: passed' in result.render()
    assert inputs('Trainer')['transform_graph'] == outputs('Transform')['transform_graph']
    assert inputs('Trainer')['schema'] == outputs('ImportSchemaGen')['schema']
    assert inputs('Transform')['examples'] == outputs('CsvExampleGen')['examples']
    # The Trainer reads ExampleGen's examples through Transform's graph; Transform wrote no examples.
    assert inputs('Trainer')['examples'] == outputs('CsvExampleGen')['examples']
    assert set(outputs('Transform')) == {'transform_graph'}
    assert inputs('Evaluator')['baseline_model'] == outputs('LatestBlessedModel')['baseline']
    examples = store.get_artifacts_by_id([outputs('CsvExampleGen')['examples']])[0]
    assert examples.custom_properties['span'].int_value == 1
    example_gen = executions['CsvExampleGen']
    assert example_gen.custom_properties['input_base'].string_value == config.data_root


def test_pushed_model_serves_both_signatures_with_the_trained_models_predictions(first_run, taxi_rows):
    config, result, _ = first_run
    store, executions = _executions_by_node(config)
    trained_id = next(e.artifact_id for e in store.get_events_by_execution_ids([executions['Trainer'].id])
                      if e.type == e.OUTPUT)
    trained_uri = store.get_artifacts_by_id([trained_id])[0].uri
    trained = tf.saved_model.load(os.path.join(trained_uri, 'Format-Serving'))
    pushed = tf.saved_model.load(result.pushed_to)

    header, rows = taxi_rows
    sample = [dict(zip(header, row)) for row in rows[-300:]]  # rows the run never saw
    examples = {k: tf.constant(v) for k, v in contract.example_inputs(sample).items()}
    raw = {k: tf.constant(v) for k, v in contract.raw_inputs(sample).items()}
    expected = trained.signatures[contract.PREDICT_EXAMPLES](**examples)[contract.PROBABILITIES].numpy()
    by_example = pushed.signatures[contract.PREDICT_EXAMPLES](**examples)[contract.PROBABILITIES].numpy()
    by_raw = pushed.signatures[contract.PREDICT_RAW](**raw)[contract.PROBABILITIES].numpy()

    assert expected.shape == (300, 1)
    np.testing.assert_allclose(by_example, expected, rtol=1e-6)
    np.testing.assert_allclose(by_raw, expected, rtol=1e-5, atol=1e-6)
    assert 0.05 < expected.mean() < 0.95  # not a constant model


def test_a_run_with_nothing_new_to_do_claims_no_push_and_every_view_credits_the_run_that_pushed(first_run):
    """The first run again, as a schedule that waited for the workspace would start it: every execution comes
    from the cache, the Pusher's too, and TFX records that cached Pusher with the first run's PushedModel as
    its output. It pushed nothing: the summary, `runs`, `models list` and `lineage` say who did."""
    config, first, _ = first_run
    version = int(os.path.basename(first.pushed_to))
    scheduled = run_trigger.Trigger(run_trigger.SCHEDULE, {'cron': '0 3 * * *'})
    lines = []
    cached = local_runner.run(config, emit_line=lines.append, trigger=scheduled, pages=write_run_pages)
    assert cached.succeeded and cached.state_of('Pusher') == 'cached'
    assert {c.state for c in cached.components} == {'cached'}, cached.render()
    assert cached.pushed_to is None and cached.push_cached == (version, first.run_id)
    text = cached.render()
    assert 'Pushed to' not in text and f'version {version}, pushed by run {first.run_id}' in text
    report_line = next(line for line in lines if line.startswith('Report: '))
    with open(report_line[len('Report: '):]) as f:
        report = f.read()
    assert 'Pushed to' not in report and f'pushed by run {first.run_id}' in report

    store = metadata_store.connect_existing(config.metadata_path)
    assert registry.Registry(store, config.serving_model_dir).version(version).run == first.run_id
    assert lineage.trace(store, config.serving_model_dir, version).run.name == first.run_id
    listed = {r['run']: r for r in run_history.rows(run_record.all_runs(store))}
    assert listed[first.run_id]['pushed_version'] == version and listed[first.run_id]['push_cached'] is None
    row = listed[cached.run_id]
    assert row['pushed_version'] is None
    assert row['push_cached'] == {'version': version, 'run': first.run_id, 'number': listed[first.run_id]['number']}
    table = run_history.render_text(list(listed.values()))
    (line,) = [line for line in table.splitlines() if cached.run_id in line]
    assert f'cached (v{version} by #{listed[first.run_id]["number"]})' in line


@pytest.fixture(scope='module')
def pushed_before_rejections(first_run):
    config, result, _ = first_run
    return sorted(os.listdir(config.serving_model_dir)), _tree_digest(result.pushed_to)


def _assert_nothing_new_pushed(config, pushed_before):
    versions, digest = pushed_before
    assert sorted(os.listdir(config.serving_model_dir)) == versions
    assert _tree_digest(os.path.join(config.serving_model_dir, versions[-1])) == digest


def test_raised_threshold_blesses_nothing_and_pushes_nothing(first_run, pushed_before_rejections):
    config, _, _ = first_run
    # A sample size is asked for, but the in-process Evaluator judges the whole eval split (only TFMA's
    # executor, where it runs instead, samples).
    strict = dataclasses.replace(config, thresholds=Thresholds(min_auc=0.999), max_eval_examples=300)
    result = local_runner.run(strict, emit_line=lambda line: None)
    assert result.succeeded
    assert result.blessed is False
    assert result.pushed_to is None
    assert result.rows['evaluated'] == result.rows['eval'] > 300 and 'eval sample' not in result.rows
    assert 'evenly spaced sample' not in result.render()
    # Data, schema and Transform were reused from the first run.
    for node in ('CsvExampleGen', 'StatisticsGen', 'Transform'):
        assert result.state_of(node) == 'cached'
    _assert_nothing_new_pushed(config, pushed_before_rejections)


def test_worse_model_than_the_pushed_baseline_is_not_blessed(first_run, pushed_before_rejections):
    config, first, _ = first_run
    # Only the change threshold can fail: absolute bounds are off.
    worse = dataclasses.replace(config, train_steps=1,
                                thresholds=Thresholds(min_auc=0.0, min_accuracy=0.0, max_auc_drop=0.01))
    result = local_runner.run(worse, emit_line=lambda line: None)
    assert result.succeeded
    assert result.baseline_metrics['auc'] == pytest.approx(first.metrics['auc'], abs=1e-6)
    assert result.metrics['auc'] < result.baseline_metrics['auc'] - 0.01
    assert result.blessed is False
    assert result.pushed_to is None
    _assert_nothing_new_pushed(config, pushed_before_rejections)


def test_run_report_shows_components_slices_and_data(first_run):
    config, result, progress = first_run
    report_line = next(line for line in progress if line.startswith('Report: '))
    with open(report_line[len('Report: '):]) as f:
        tables = read_tables(f.read())
    components = {row[0]: row[1] for row in tables['Components'][1:]}
    assert components == {node: 'done' for node in NODES}
    evaluation = next(rows for heading, rows in tables.items() if heading.startswith('Evaluation'))
    assert next(h for h in tables if h.startswith('Evaluation')) == 'Evaluation: blessed'
    header, *slices = evaluation
    by_slice = {row[0]: dict(zip(header, row)) for row in slices}
    assert {'overall', 'trip_start_hour=0', 'payment_type=Cash'} <= set(by_slice)
    assert float(by_slice['overall']['AUC']) == pytest.approx(result.metrics['auc'], abs=1e-3)
    training = next(rows for heading, rows in tables.items() if heading.startswith('Training data'))
    assert 'fare' in {row[0] for row in training[1:]}


def test_run_report_charts_feature_importance_and_states_the_eval_outlier_share(first_run):
    _, _, progress = first_run
    report_line = next(line for line in progress if line.startswith('Report: '))
    with open(report_line[len('Report: '):]) as f:
        page = f.read()
    chart = ElementTree.fromstring(page[page.index('<svg'):page.index('</svg>') + len('</svg>')])
    namespace = '{http://www.w3.org/2000/svg}'
    bars = {title.text.split(':')[0]: float(title.text.split(':')[1])
            for title in chart.iter(f'{namespace}title')}
    assert set(bars) == {f.name for f in FEATURES}
    assert all(value >= 0 for value in bars.values())
    share = re.search(r'id="outlier-share">([0-9.]+)% of (\d+) eval examples', page)
    assert share and 0 <= float(share.group(1)) <= 100 and int(share.group(2)) > 0
