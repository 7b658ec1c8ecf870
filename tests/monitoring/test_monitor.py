"""The monitor over request logs in the server's own format: clean traffic raises
nothing, drifted traffic names the features, a units bug upstream is skew,
and a log that is not a log is a clear error."""

import json
import os
import random
import shutil

import numpy as np
import pytest
import tensorflow as tf

from cli import main as cli
from components.trainer import SCHEMA_FILE
from monitoring import commands as monitoring_commands
from monitoring import monitor, request_logs
from pipeline import data
from serving.telemetry import log_examples
from support.samples import SAMPLE_ROWS, as_dicts
from taxi_model import contract

HOUR = 3600 * 1_000_000
END = 1_800_000_000 * 1_000_000  # a fixed "now": 2027-01-15T08:00:00Z


@pytest.fixture(scope='module')
def model_base(first_run, tmp_path_factory):
    """The first run's pushed version, alone in a base path."""
    pushed = first_run[1].pushed_to
    base = tmp_path_factory.mktemp('models') / 'chicago-taxi'
    shutil.copytree(pushed, base / os.path.basename(pushed))
    return str(base), int(os.path.basename(pushed))


@pytest.fixture(scope='module')
def served(model_base):
    """Writes rows to a log directory as the server logs them: served by the version, at a time."""
    model = tf.saved_model.load(os.path.join(model_base[0], str(model_base[1])))
    predict = model.signatures[contract.PREDICT_RAW]

    def write(directory, rows, at_micros, name):
        inputs = contract.raw_inputs(rows)
        outputs = {k: v.numpy() for k, v in predict(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
        meta = {'model_name': 'chicago-taxi', 'model_version': model_base[1], 'signature_name': contract.PREDICT_RAW,
                'request_id': 'r', 'timestamp_micros': at_micros}
        missing = json.loads(contract.missing_values_json())[contract.PREDICT_RAW]
        os.makedirs(directory, exist_ok=True)
        with tf.io.TFRecordWriter(os.path.join(directory, f'{name}.tfrecord')) as writer:
            for example in log_examples((meta, inputs, outputs, None, missing)):
                writer.write(example.SerializeToString())
    return write


@pytest.fixture(scope='module')
def traffic(taxi_rows):
    """Rows like the training data (drawn from the rows the first run trained on), and variants."""
    header, rows = taxi_rows
    clean = random.Random(1).choices(rows[:SAMPLE_ROWS], k=1500)
    at = {name: i for i, name in enumerate(header)}

    def units_bug(row):  # an upstream change: fares in cents
        row = list(row)
        row[at['fare']] = str(float(row[at['fare']]) * 100) if row[at['fare']] else ''
        return row
    return {'clean': as_dicts(header, clean[:750]), 'clean later': as_dicts(header, clean[750:]),
            'drifted': as_dicts(header, data.drifted(header, clean[750:])),
            'units bug': as_dicts(header, [units_bug(r) for r in clean[750:]])}


def _run(log_dir, model_base):
    """The reports of a pass over the hour before END; every logged version here carries its schema."""
    reports, unmonitored = monitor.monitor(monitor.Settings(str(log_dir), model_base[0], END, HOUR,
                                                            contract.PROBABILITIES, contract.IS_OUTLIER))
    assert unmonitored == []
    return reports


def test_clean_traffic_raises_nothing(served, traffic, model_base, tmp_path):
    served(tmp_path, traffic['clean'], END - HOUR - 60_000_000, 'previous')
    served(tmp_path, traffic['clean later'], END - 60_000_000, 'current')
    (report,) = _run(tmp_path, model_base)
    assert report.version == model_base[1]
    assert (report.examples, report.previous_examples) == (750, 750)
    assert report.alerts == [], report.alerts
    assert {f.feature for f in report.skew} >= {'fare', 'payment_type'}
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
                     '--end', end, '--report-dir', str(tmp_path / 'reports'), '--metrics-file', str(metrics)])
    assert code == monitoring_commands.ALERT_EXIT
    out = capsys.readouterr().out
    alerts = [json.loads(line) for line in out.splitlines() if line.startswith('{')]
    assert any(a['alert'] == 'skew' and 'fare' in a['features'] for a in alerts)
    report = next(line for line in out.splitlines() if line.startswith('Report: '))[len('Report: '):]
    page = open(report).read()
    assert '<svg' in page and 'Training/serving skew' in page and 'fare' in page
    gauges = metrics.read_text()
    assert f'taxi_monitor_distance{{feature="fare",kind="skew",model_version="{model_base[1]}"}}' in gauges
    assert f'taxi_monitor_alerts{{model_version="{model_base[1]}"}}' in gauges


def test_a_version_that_carries_no_schema_is_reported_as_unmonitored(served, traffic, model_base, tmp_path,
                                                                    capsys):
    base = tmp_path / 'models'
    old = base / str(model_base[1])
    shutil.copytree(os.path.join(model_base[0], str(model_base[1])), old)
    os.remove(old / SCHEMA_FILE)  # as versions exported before they carried their schema
    served(tmp_path / 'logs', traffic['clean'], END - 60_000_000, 'current')
    reports, unmonitored = monitor.monitor(monitor.Settings(str(tmp_path / 'logs'), str(base), END, HOUR,
                                                            contract.PROBABILITIES, contract.IS_OUTLIER))
    assert reports == [] and unmonitored == [monitor.Unmonitored(model_base[1], 750)]
    code = cli.main(['monitor', '--request-log-dir', str(tmp_path / 'logs'), '--model-base-path', str(base),
                     '--end', '2027-01-15T08:00:00', '--report-dir', str(tmp_path / 'reports')])
    assert code == monitoring_commands.ALERT_EXIT
    assert f'{model_base[1]}: 750 examples NOT monitored' in capsys.readouterr().out


def test_a_log_that_is_not_a_tfrecord_file_is_a_clear_error(model_base, tmp_path, capsys):
    (tmp_path / 'requests-1.tfrecord').write_bytes(b'this is not a TFRecord file at all' * 10)
    with pytest.raises(request_logs.LogError, match='requests-1.tfrecord'):
        _run(tmp_path, model_base)
    assert cli.main(['monitor', '--request-log-dir', str(tmp_path), '--model-base-path', model_base[0],
                     '--report-dir', str(tmp_path / 'r')]) == cli.EXIT_BAD_INPUT
    assert 'requests-1.tfrecord' in capsys.readouterr().err


@pytest.mark.parametrize('window, message', [('an hour', 'duration'), ('0h', 'longer than 0')])
def test_a_bad_window_is_refused(window, message):
    with pytest.raises(ValueError, match=message):
        monitoring_commands.parse_window(window)
