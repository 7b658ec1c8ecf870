"""The monitor over request logs in the server's own format: clean traffic raises
nothing, drifted traffic names the features, a units bug upstream is skew (fares
in cents, miles in km), a check that could not run says so, and a log that is
not a log is a clear error."""

import csv
import dataclasses
import datetime
import json
import os
import random
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store
from cli import main as cli
from foundation.model_files import SCHEMA_FILE
from monitoring import commands as monitoring_commands
from monitoring import metadata_record, monitor, request_logs
from serving import feedback
from serving.telemetry import log_examples
from support.log_times import END, HOUR
from support.samples import SAMPLE_ROWS, as_dicts
from taxi_model import contract
from taxi_model.features import FEATURES

pytestmark = pytest.mark.e2e


def _settings(log_dir, model_base, feedback_dir=None) -> monitor.Settings:
    return monitor.Settings(str(log_dir), model_base[0], END, HOUR, contract.PROBABILITIES, contract.IS_OUTLIER,
                            feedback_dir=str(feedback_dir) if feedback_dir else None,
                            labeler=contract.labels_from_feedback, label_features=contract.FEEDBACK_FEATURES)


def _run(log_dir, model_base, feedback_dir=None):
    """The reports of a pass over the hour before END; every logged version here carries its schema."""
    found = monitor.monitor(_settings(log_dir, model_base, feedback_dir))
    assert found.unmonitored == []
    return found.reports


def test_clean_traffic_raises_nothing(served, traffic, model_base, tmp_path):
    served(tmp_path, traffic['clean'], END - HOUR - 60_000_000, 'previous')
    served(tmp_path, traffic['clean later'], END - 60_000_000, 'current')
    (report,) = _run(tmp_path, model_base)
    assert report.version == model_base[1]
    assert (report.examples, report.previous_examples) == (750, 750)
    assert report.alerts == [], report.alerts
    assert report.not_checked == []  # every check ran, for every feature
    assert {f.feature for f in report.skew} == {f.feature for f in report.drift} == {f.name for f in FEATURES}
    assert report.outlier_rate < 0.05


def test_drifted_traffic_names_the_drifted_features_and_the_prediction_drift(served, traffic, model_base, tmp_path):
    served(tmp_path, traffic['clean'], END - HOUR - 60_000_000, 'previous')
    served(tmp_path, traffic['drifted'], END - 60_000_000, 'current')
    (report,) = _run(tmp_path, model_base)
    alerts = {a['alert']: a for a in report.alerts}
    assert {'fare', 'payment_type', 'trip_start_hour'} <= set(alerts['drift']['features'])
    assert {'fare', 'payment_type'} <= set(alerts['skew']['features'])
    assert 'prediction_drift' in alerts
    assert all(a['model_version'] == model_base[1] for a in report.alerts)


def test_a_units_bug_upstream_is_caught_as_skew(served, traffic, model_base, tmp_path):
    served(tmp_path, traffic['units bug'], END - 60_000_000, 'current')
    (report,) = _run(tmp_path, model_base)
    alerts = {a['alert']: a for a in report.alerts}
    assert 'fare' in alerts['skew']['features']
    # Fares a hundred times too large are far from anything trained on.
    assert alerts['outlier_rate']['outlier_rate'] > 0.5


def test_miles_sent_in_km_are_caught_as_skew_and_drift_in_location_and_scale(served, taxi_rows, model_base,
                                                                             tmp_path):
    """A units bug upstream that keeps the shape: in the training quantile buckets trip_miles' divergence
    stayed at 0.03-0.04 against its 0.1, skew and drift alike. 2,000 examples a window: from there a x1.6
    change on trip_miles is caught at any draw (docs/decisions.md#numeric-drift-location-scale-and-shape)."""
    header, rows = taxi_rows
    at = header.index('trip_miles')
    previous, current = (random.Random(seed).choices(rows[:SAMPLE_ROWS], k=2000) for seed in (3, 4))
    in_km = [row[:at] + [str(float(row[at]) * 1.609) if row[at] else ''] + row[at + 1:] for row in current]
    served(tmp_path, as_dicts(header, previous), END - HOUR - 60_000_000, 'previous')
    served(tmp_path, as_dicts(header, in_km), END - 60_000_000, 'current')
    (report,) = _run(tmp_path, model_base)
    alerts = {a['alert']: a for a in report.alerts}
    for kind, findings in (('skew', report.skew), ('drift', report.drift)):
        assert alerts[kind]['features'] == ['trip_miles'], alerts[kind]
        assert set(alerts[kind]['distances']['trip_miles']) == {'location/scale'}
        shape = next(f for f in findings if f.feature == 'trip_miles' and f.measure.startswith('Jensen-Shannon'))
        assert not shape.drifted


def test_traffic_outside_the_window_is_not_counted(served, traffic, model_base, tmp_path):
    served(tmp_path, traffic['clean'], END + 60_000_000, 'future')
    served(tmp_path, traffic['clean'], END - 3 * HOUR, 'old')
    assert _run(tmp_path, model_base) == []


def test_the_command_writes_a_report_and_gauges_and_exits_3_on_alerts(served, traffic, model_base, tmp_path, capsys):
    logs = tmp_path / 'logs'
    served(logs, traffic['units bug'], END - 60_000_000, 'current')
    metrics = tmp_path / 'monitor.prom'
    end = '2027-01-15T08:00:00'
    code = cli.main(['monitor', '--request-log-dir', str(logs), '--model-base-path', model_base[0], '--window', '1h',
                     '--end', end, '--report-dir', str(tmp_path / 'reports'), '--metrics-file', str(metrics),
                     '--feedback-dir', str(tmp_path / 'no-feedback'),
                     '--metadata-path', str(tmp_path / 'm.sqlite')])
    assert code == monitoring_commands.ALERT_EXIT
    out = capsys.readouterr().out
    alerts = [json.loads(line) for line in out.splitlines() if line.startswith('{')]
    assert any(a.get('alert') == 'skew' and 'fare' in a['features'] for a in alerts)
    # Nothing was served the hour before: drift was not checked, and the pass says so, on its line and as JSON.
    assert 'drift not checked: no traffic in the previous window' in out
    assert {'not_checked': 'drift', 'model_version': model_base[1],
            'reason': 'no traffic in the previous window'} in alerts
    report = next(line for line in out.splitlines() if line.startswith('Report: '))[len('Report: '):]
    page = open(report).read()
    assert '<svg' in page and 'Training/serving skew' in page and 'fare' in page
    gauges = metrics.read_text()
    # One series per test of a feature (shape, location/scale), each beside its own threshold.
    assert f'taxi_monitor_distance{{feature="fare",kind="skew",model_version="{model_base[1]}",test="' in gauges
    assert f'taxi_monitor_threshold{{feature="fare",kind="skew",model_version="{model_base[1]}",test="' in gauges
    assert f'taxi_monitor_alerts{{model_version="{model_base[1]}"}}' in gauges


def test_a_mistyped_store_path_is_an_error_not_a_new_store(served, traffic, model_base, tmp_path, capsys):
    served(tmp_path / 'logs', traffic['clean'], END - 60_000_000, 'current')
    typo = tmp_path / 'metdata.sqlite'
    code = cli.main(['monitor', '--request-log-dir', str(tmp_path / 'logs'), '--model-base-path', model_base[0],
                     '--end', '2027-01-15T08:00:00', '--report-dir', str(tmp_path / 'reports'),
                     '--feedback-dir', str(tmp_path / 'no-feedback'), '--metadata-path', str(typo)])
    out, err = capsys.readouterr()
    alerted = any('alert' in json.loads(line) for line in out.splitlines() if line.startswith('{'))
    # Alerts keep their exit code (they went out first); otherwise the unrecorded pass fails the command.
    assert code == (monitoring_commands.ALERT_EXIT if alerted else 1) and not typo.exists()
    assert f'the pass could not be recorded in ML Metadata: MissingStore: no ML Metadata store at {typo}' in err


def test_a_version_that_carries_no_schema_is_reported_as_unmonitored(served, traffic, model_base, tmp_path,
                                                                    capsys):
    base = tmp_path / 'models'
    old = base / str(model_base[1])
    shutil.copytree(os.path.join(model_base[0], str(model_base[1])), old)
    os.remove(old / SCHEMA_FILE)  # as versions exported before they carried their schema
    served(tmp_path / 'logs', traffic['clean'], END - 60_000_000, 'current')
    found = monitor.monitor(monitor.Settings(str(tmp_path / 'logs'), str(base), END, HOUR,
                                             contract.PROBABILITIES, contract.IS_OUTLIER))
    assert found.reports == [] and found.unmonitored == [monitor.Unmonitored(model_base[1], 750)]
    code = cli.main(['monitor', '--request-log-dir', str(tmp_path / 'logs'), '--model-base-path', str(base),
                     '--end', '2027-01-15T08:00:00', '--report-dir', str(tmp_path / 'reports'),
                     '--feedback-dir', str(tmp_path / 'no-feedback'),
                     '--metadata-path', str(tmp_path / 'm.sqlite')])
    assert code == monitoring_commands.ALERT_EXIT
    assert f'{model_base[1]}: 750 examples NOT monitored' in capsys.readouterr().out


def test_a_log_that_is_not_a_tfrecord_file_is_a_clear_error(model_base, tmp_path, capsys):
    (tmp_path / 'requests-1.tfrecord').write_bytes(b'this is not a TFRecord file at all' * 10)
    with pytest.raises(request_logs.LogError, match='requests-1.tfrecord'):
        _run(tmp_path, model_base)
    assert cli.main(['monitor', '--request-log-dir', str(tmp_path), '--model-base-path', model_base[0],
                     '--report-dir', str(tmp_path / 'r'), '--feedback-dir', str(tmp_path / 'f'),
                     '--metadata-path', str(tmp_path / 'm.sqlite')]) == cli.EXIT_BAD_INPUT
    assert 'requests-1.tfrecord' in capsys.readouterr().err


@pytest.mark.parametrize('window, message', [('an hour', 'duration'), ('0h', 'longer than 0')])
def test_a_bad_window_is_refused(window, message):
    with pytest.raises(ValueError, match=message):
        monitoring_commands.parse_window(window)


# -- ground truth: feedback and live metrics ---------------------------------------------------

def _feedback_csv(path, request_id, rows, wrong=False, extra=()):
    """Feedback for the examples of one logged request: the tips each trip paid, or with `wrong`
    the opposite of the true label; `extra` rows are appended as they are."""
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['request_id', 'example', 'label' if wrong else 'tips'])
        for i, row in enumerate(rows):
            if not row['tips']:
                continue
            tips, fare = float(row['tips']), float(row['fare'] or 0)
            writer.writerow([request_id, i, int(not tips > 0.2 * fare) if wrong else tips])
        writer.writerows(extra)
    return str(path)


def _store_files(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_feedback_gives_live_metrics_and_wrong_labels_raise_an_alert(served, traffic, model_base, tmp_path):
    served(tmp_path / 'logs', traffic['clean later'], END - 60_000_000, 'current')
    right, wrong = tmp_path / 'right', tmp_path / 'wrong'
    for store, is_wrong in ((right, False), (wrong, True)):
        csv_file = _feedback_csv(tmp_path / f'{store.name}.csv', 'current', traffic['clean later'], wrong=is_wrong)
        assert cli.main(['feedback', csv_file, '--feedback-dir', str(store),
                         '--request-log-dir', str(tmp_path / 'logs')]) == 0

    (good,) = _run(tmp_path / 'logs', model_base, right)
    assert good.live.examples >= 700 and good.alerts == []
    assert good.live.auc > 0.8 and good.live.auc_ci[0] < good.live.auc < good.live.auc_ci[1]

    (bad,) = _run(tmp_path / 'logs', model_base, wrong)
    assert bad.live.examples == good.live.examples
    assert bad.live.accuracy < 0.5 and bad.live.accuracy == pytest.approx(1 - good.live.accuracy)
    alerts = {a['metric']: a for a in bad.alerts if a['alert'] == 'live_metric'}
    assert set(alerts) == {'auc', 'accuracy'}
    assert alerts['accuracy']['model_version'] == model_base[1]
    assert alerts['accuracy']['labelled_examples'] == bad.live.examples


def test_feedback_for_unknown_or_duplicate_requests_is_reported_not_stored(served, traffic, model_base, tmp_path,
                                                                          capsys):
    logs, store = tmp_path / 'logs', tmp_path / 'feedback'
    rows = traffic['clean later'][:20]
    served(logs, rows, END - 60_000_000, 'current')
    first = _feedback_csv(tmp_path / 'first.csv', 'current', rows[:10])
    assert cli.main(['feedback', first, '--feedback-dir', str(store), '--request-log-dir', str(logs)]) == 0
    stored = feedback.read(str(store))[0]
    assert set(stored) == {('current', i) for i in range(10) if rows[i]['tips']}

    # Examples 5-9 again, 10-19 new, an id never served, an example the request did not have.
    again = _feedback_csv(tmp_path / 'again.csv', 'current', rows,
                          extra=[['never-served', 0, 1.5], ['current', 999, 1.5]])
    # Rows 0-4 again as they were (harmless), rows 5-9 with other tips (refused: the first record stands).
    lines = open(again).read().splitlines()
    changed = [line if not line.startswith(tuple(f'current,{i},' for i in range(5, 10)))
               else f'{line.rsplit(",", 1)[0]},{float(line.rsplit(",", 1)[1]) + 1}' for line in lines[1:]]
    open(again, 'w').write('\n'.join([lines[0]] + changed) + '\n')
    capsys.readouterr()
    assert cli.main(['feedback', again, '--feedback-dir', str(store), '--request-log-dir', str(logs)]) \
        == cli.EXIT_BAD_INPUT  # some rows were refused, and the output says which
    out = capsys.readouterr().out
    assert 'NOT stored: feedback already recorded with other values' in out and 'current#5' in out
    assert 'current#0' not in out.split('NOT stored')[1]  # the unchanged rows are not reported as refused
    assert 'never-served#0' in out and 'current#999' in out
    first_records, duplicates = feedback.read(str(store))
    assert ('never-served', 0) not in first_records and ('current', 999) not in first_records
    assert {('current', i) for i in range(20) if rows[i]['tips']} == set(first_records)
    assert duplicates == []  # refused at the door, so the store holds one record per example
    # The earlier values stand.
    assert all(first_records[key] == stored[key] for key in stored)


def test_the_monitor_names_feedback_no_logged_request_has_and_duplicates_from_two_writers(
        served, traffic, model_base, tmp_path):
    logs, store = tmp_path / 'logs', tmp_path / 'feedback'
    served(logs, traffic['clean later'], END - 60_000_000, 'current')
    # Two replicas write one store: neither sees the other's records.
    one, two = feedback.FeedbackStore(str(store)), feedback.FeedbackStore(str(store))
    one.append(feedback.parse_all([{'request_id': 'current', 'example': 0, 'label': 1},
                                   {'request_id': 'ghost', 'label': 0}]), source='replica-1')
    two.append(feedback.parse_all([{'request_id': 'current', 'example': 0, 'label': 0}]), source='replica-2')
    found = monitor.monitor(_settings(logs, model_base, store))
    assert [(r.request_id, r.example) for r in found.feedback.unknown] == [('ghost', 0)]
    assert [(d.request_id, d.source) for d in found.feedback.duplicates] == [('current', 'replica-2')]
    (report,) = found.reports
    assert report.live.examples == 1 and report.live.positives == 1  # the first record counts


@pytest.mark.parametrize('content, message', [
    ('request_id,tips\ncurrent,1.5\ncurrent,lots\n', 'line 3'),
    ('tips,fare\n1.5,3\n', 'request_id'),
    ('request_id,example,tips\ncurrent,-1,2\n', 'line 2'),
    ('request_id,tips\ncurrent,1,2\n', 'columns'),
    ('request_id,tips\ncurrent,\n', 'no observed value'),
])
def test_a_malformed_feedback_file_stores_nothing_and_loses_nothing(served, traffic, model_base, tmp_path, capsys,
                                                                    content, message):
    logs, store = tmp_path / 'logs', tmp_path / 'feedback'
    served(logs, traffic['clean later'][:10], END - 60_000_000, 'current')
    good = _feedback_csv(tmp_path / 'good.csv', 'current', traffic['clean later'][:10])
    assert cli.main(['feedback', good, '--feedback-dir', str(store), '--request-log-dir', str(logs)]) == 0
    before = (_store_files(store), feedback.read(str(store))[0])
    bad = tmp_path / 'bad.csv'
    bad.write_text(content)
    assert cli.main(['feedback', str(bad), '--feedback-dir', str(store), '--request-log-dir', str(logs)]) \
        == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert (_store_files(store), feedback.read(str(store))[0]) == before


def test_the_command_shows_live_metrics_in_the_report_and_the_gauges(served, traffic, model_base, tmp_path, capsys):
    logs, store = tmp_path / 'logs', tmp_path / 'feedback'
    served(logs, traffic['clean later'], END - 60_000_000, 'current')
    csv_file = _feedback_csv(tmp_path / 'f.csv', 'current', traffic['clean later'], wrong=True)
    assert cli.main(['feedback', csv_file, '--feedback-dir', str(store), '--request-log-dir', str(logs)]) == 0
    metrics = tmp_path / 'monitor.prom'
    code = cli.main(['monitor', '--request-log-dir', str(logs), '--model-base-path', model_base[0],
                     '--end', '2027-01-15T08:00:00', '--report-dir', str(tmp_path / 'reports'),
                     '--feedback-dir', str(store), '--metrics-file', str(metrics),
                     '--metadata-path', str(tmp_path / 'm.sqlite')])
    assert code == monitoring_commands.ALERT_EXIT
    out = capsys.readouterr().out
    assert any(json.loads(line).get('alert') == 'live_metric' for line in out.splitlines() if line.startswith('{'))
    page = open(next(line for line in out.splitlines() if line.startswith('Report: '))[len('Report: '):]).read()
    assert 'Live metrics' in page and 'Calibration' in page and page.count('<svg') >= 2
    gauges = metrics.read_text()
    assert f'taxi_monitor_live_metric{{metric="accuracy",model_version="{model_base[1]}"}}' in gauges
    assert f'taxi_monitor_labelled_examples{{model_version="{model_base[1]}"}}' in gauges

    # The estimate before labels, from the calibration the version carries: on its summary line, as gauges, in
    # the report; the labels (all wrong) beside it: the label rate moved and the realised accuracy fell below
    # what the estimate allows for the same examples, the inputs undrifted: label drift and concept drift.
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f'  version {model_base[1]}: 750 examples'))
    shown = re.search(r', estimated accuracy (0\.\d{3}) \[(0\.\d{3}), (0\.\d{3})\], AUC (0\.\d{3}) \[', lines[at])
    assert shown, lines[at]
    assert lines[at].index('estimated accuracy') < lines[at].index('live on ')

    def gauge(name, **labels):
        text = ','.join(f'{k}="{v}"' for k, v in sorted({**labels, 'model_version': model_base[1]}.items()))
        return float(re.search(rf'^{name}{{{re.escape(text)}}} (\S+)$', gauges, re.M).group(1))
    accuracy = [gauge(f'taxi_monitor_estimated_metric{end}', metric='accuracy') for end in ('', '_lower', '_upper')]
    assert [f'{v:.3f}' for v in accuracy] == list(shown.groups()[:3])
    assert accuracy[1] < accuracy[0] < accuracy[2] and accuracy[0] > 0.7  # clean traffic: the model is good on it
    assert f'{gauge("taxi_monitor_estimated_metric", metric="auc"):.3f}' == shown.group(4)
    assert gauge('taxi_monitor_estimated_metric_minimum', metric='accuracy') == 0.6  # judged: 750 served
    assert gauge('taxi_monitor_label_rate', source='feedback') > 0.6 > gauge('taxi_monitor_label_rate',
                                                                             source='training')
    assert gauge('taxi_monitor_concept_drift') == 1
    assert lines[at + 1].startswith('    label drift: label rate ')
    assert '; concept drift: realised accuracy ' in lines[at + 1]
    alerted = {json.loads(line).get('alert') for line in lines if line.startswith('{')}
    assert {'label_drift', 'concept_drift'} <= alerted
    before = page.split('Before labels')[1].split('<h3>Live metrics')[0]
    estimated = f'{shown.group(1)} [{shown.group(2)}, {shown.group(3)}]'
    realised = re.search(r'accuracy (0\.\d{3}) \[', lines[at].split('live on ')[1]).group(1)
    assert estimated in before and f'>{realised}</text>' in before  # each drawn, in the accuracy chart
    assert 'Label drift' in before and 'Concept drift:' in before


# -- the record: every pass in ML Metadata, linked to the pushed model it judged ------------

def test_passes_are_recorded_in_ml_metadata_linked_to_the_pushed_model_with_history(
        first_run, served, traffic, model_base, tmp_path, capsys):
    config = first_run[0]
    store_path = tmp_path / 'metadata.sqlite'
    shutil.copy(config.metadata_path, store_path)  # the run that pushed the version, not shared with other tests
    logs = tmp_path / 'logs'
    served(logs, traffic['clean'], END - HOUR - 60_000_000, 'earlier')
    served(logs, traffic['units bug'], END - 60_000_000, 'current')
    for end in ('2027-01-15T07:00:00', '2027-01-15T08:00:00'):
        cli.main(['monitor', '--request-log-dir', str(logs), '--model-base-path', model_base[0], '--end', end,
                  '--report-dir', str(tmp_path / 'reports'), '--feedback-dir', str(tmp_path / 'none'),
                  '--metadata-path', str(store_path)])
    out = capsys.readouterr().out
    # The version was copied to another base path: its PushedModel is found by its version number.
    assert 'no PushedModel at this push destination' in out

    store = metadata_store.connect(str(store_path))
    history = metadata_record.history(store, model_base[0], model_base[1])
    assert metadata_record.history(store, '/another/model', model_base[1]) == []
    assert {h['pushed_model_link'] for h in history} == {metadata_store.BY_VERSION}
    assert [h['window_end_micros'] for h in history] == [END - HOUR, END]
    assert [h['examples'] for h in history] == [750, 750]
    assert history[0]['alerts'] == 0 and history[1]['alerts'] > 0
    assert 'fare' in history[1]['findings']['skew'] and history[1]['findings']['alerts']

    # Lineage: from the version's PushedModel, forward to the passes that judged it.
    pushed = metadata_store.pushed_model(store, model_base[0], model_base[1])
    assert pushed is not None and pushed.custom_properties['pushed_version'].string_value == str(model_base[1])
    options = metadata_store_pb2.LineageSubgraphQueryOptions(max_num_hops=2)
    options.starting_artifacts.filter_query = f'id = {pushed.id}'
    graph = store.get_lineage_subgraph(options)
    types = {t.id: t.name for t in store.get_execution_types()}
    monitors = [e for e in graph.executions if types[e.type_id] == metadata_record.EXECUTION_TYPE]
    assert len(monitors) == 2
    results = [a for a in graph.artifacts if a.type_id == store.get_artifact_type(metadata_record.RESULT_TYPE).id]
    assert sorted(a.properties['window_end_micros'].int_value for a in results) == [END - HOUR, END]

    # The estimate before labels is recorded with the findings, and drawn across the recorded windows.
    for entry in history:
        estimate = entry['findings']['estimation']['estimate']
        assert estimate['examples'] == 750 and 0.5 < estimate['accuracy']['estimated'] <= 1
        assert estimate['auc']['interval'][0] <= estimate['auc']['estimated'] <= estimate['auc']['interval'][1]
    page = open(history[1]['report']).read()
    assert 'History: 2 recorded windows' in page
    assert 'Live and estimated metrics' in page and '■ estimated AUC' in page


# -- what the review found: late feedback, classify rows, reused ids, old logs, aligned windows ----

def _labels_file(tmp_path, name, request_id, rows, wrong=False):
    return _feedback_csv(tmp_path / f'{name}.csv', request_id, rows, wrong=wrong)


def test_feedback_counts_in_the_pass_of_the_window_it_arrives_in_whenever_the_request_was_served(
        served, traffic, model_base, tmp_path):
    logs, store = tmp_path / 'logs', tmp_path / 'feedback'
    served(logs, traffic['clean'], END - HOUR - 60_000_000, 'earlier')  # served in the hour before
    assert cli.main(['feedback', _labels_file(tmp_path, 'f', 'earlier', traffic['clean']), '--feedback-dir',
                     str(store), '--request-log-dir', str(logs)]) == 0  # received in the judged hour
    (report,) = _run(logs, model_base, store)
    assert report.examples == 0 and report.live.examples >= 700
    earlier = monitor.monitor(dataclasses.replace(_settings(logs, model_base, store), end_micros=END - HOUR))
    (before,) = earlier.reports
    assert before.examples == 750 and before.live is None  # the feedback had not arrived yet


def test_feedback_on_answers_without_a_probability_is_set_aside_not_fatal(served, traffic, model_base, tmp_path):
    logs, store = tmp_path / 'logs', tmp_path / 'feedback'
    rows = traffic['clean later'][:200]
    served(logs, rows, END - 60_000_000, 'predicted')
    # A classify request: its log rows carry scores, not `probabilities`.
    examples = np.array([contract.to_tf_example(r).SerializeToString() for r in rows], dtype=object)
    meta = {'model_name': 'chicago-taxi', 'model_version': model_base[1], 'signature_name': 'classification',
            'request_id': 'classified', 'timestamp_micros': END - 60_000_000}
    with tf.io.TFRecordWriter(str(logs / 'classified.tfrecord')) as writer:
        for example in log_examples((meta, {'examples': examples}, {'scores': np.full((200, 2), 0.5)}, 'examples',
                                     {})):
            writer.write(example.SerializeToString())
    for name in ('predicted', 'classified'):
        assert cli.main(['feedback', _labels_file(tmp_path, name, name, rows), '--feedback-dir', str(store),
                         '--request-log-dir', str(logs)]) == 0
    (report,) = _run(logs, model_base, store)
    with_tips = sum(1 for r in rows if r['tips'])
    assert report.live.examples == with_tips and report.unlabelable == with_tips


def test_a_reused_request_id_counts_its_feedback_once(served, traffic, model_base, tmp_path):
    logs, store = tmp_path / 'logs', tmp_path / 'feedback'
    rows = traffic['clean later'][:100]
    served(logs, rows, END - 120_000_000, 'first', request_id='same')
    served(logs, rows, END - 60_000_000, 'retry', request_id='same')  # a client retried with the same id
    assert cli.main(['feedback', _labels_file(tmp_path, 'f', 'same', rows), '--feedback-dir', str(store),
                     '--request-log-dir', str(logs)]) == 0
    found = monitor.monitor(_settings(logs, model_base, store))
    (report,) = found.reports
    assert report.live.examples == sum(1 for r in rows if r['tips'])
    assert found.feedback.reused == report.live.examples


def test_logs_from_before_example_indexes_existed_read_beside_new_ones(served, traffic, model_base, tmp_path):
    logs, store = tmp_path / 'logs', tmp_path / 'feedback'
    rows = traffic['clean later'][:100]
    served(logs, rows, END - 120_000_000, 'old', strip=(request_logs.EXAMPLE_INDEX,))
    served(logs, rows, END - 60_000_000, 'new')
    assert cli.main(['feedback', _labels_file(tmp_path, 'f', 'new', rows), '--feedback-dir', str(store),
                     '--request-log-dir', str(logs)]) == 0
    (report,) = _run(logs, model_base, store)
    assert report.examples == 200 and report.live.examples == sum(1 for r in rows if r['tips'])


@pytest.mark.parametrize('header, row, message', [
    ('request_id,example,tip', 'new,0,1.5', "'tip' is not an observed value this model takes"),
    ('request_id,example,label', 'new,0,7', '"label" is 0 or 1'),
])
def test_feedback_this_model_cannot_use_is_refused(served, traffic, model_base, tmp_path, capsys, header, row,
                                                   message):
    served(tmp_path / 'logs', traffic['clean later'][:10], END - 60_000_000, 'new')
    (tmp_path / 'f.csv').write_text(f'{header}\n{row}\n')
    assert cli.main(['feedback', str(tmp_path / 'f.csv'), '--feedback-dir', str(tmp_path / 'store'),
                     '--request-log-dir', str(tmp_path / 'logs')]) == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert feedback.read(str(tmp_path / 'store')) == ({}, [])


def test_aligned_windows_tile_time_whenever_the_pass_starts():
    hour = 3600
    for minute in (0, 5, 59):
        now = datetime.datetime(2027, 1, 15, 8, minute, 30, tzinfo=datetime.timezone.utc)
        assert monitoring_commands.aligned_end(now, hour) == datetime.datetime(2027, 1, 15, 8,
                                                                                 tzinfo=datetime.timezone.utc)
    assert monitoring_commands.aligned_end(datetime.datetime(2027, 1, 15, 8, 44, tzinfo=datetime.timezone.utc),
                                           1800).minute == 30


def test_the_label_the_store_validates_is_the_models():
    assert contract.FEEDBACK_LABEL == feedback.LABEL and feedback.LABEL in contract.FEEDBACK_VALUES
