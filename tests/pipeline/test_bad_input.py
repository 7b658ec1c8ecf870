"""Bad input stops the run before Transform with a clear message, exit code 2,
and nothing trained or pushed."""

import os
import subprocess
import sys

import pytest

from cli import main as cli
from support.html_tables import read_tables
from support.samples import write_csv

pytestmark = pytest.mark.e2e


ROWS = 1000


def _run_cli(workspace, data_root, capsys):
    code = cli.main(['run', '--workspace', str(workspace), '--data-root', str(data_root), '--train-steps', '5'])
    return code, capsys.readouterr()


def _assert_stopped_before_training(workspace, output, features):
    assert not os.path.exists(workspace / 'serving_model')
    assert not os.path.exists(workspace / 'pipeline_root' / 'Trainer')
    assert not os.path.exists(workspace / 'pipeline_root' / 'Transform')
    assert 'AnomaliesGate FAILED' in output.out
    # The run's HTML report lists the anomalies too.
    report = next(line for line in output.out.splitlines() if line.startswith('Report: '))[len('Report: '):]
    with open(report) as f:
        tables = read_tables(f.read())
    assert {row[0]: row[1] for row in tables['Components']}.get('AnomaliesGate') == 'FAILED'
    anomalies = ' '.join(row[1] for row in tables['Data anomalies'][1:])
    assert all(feature in anomalies for feature in features)


def _corrupt(rows, header, column, value, every=10):
    index = header.index(column)
    out = [list(r) for r in rows]
    for r in out[::every]:
        r[index] = value
    return out


def _drop_column(header, rows, column):
    dropped = header.index(column)
    return header[:dropped] + header[dropped + 1:], [r[:dropped] + r[dropped + 1:] for r in rows]


@pytest.mark.parametrize('corrupt, expect', [
    pytest.param(lambda h, r: (h, _corrupt(r, h, 'trip_miles', 'twelve')), ['trip_miles'], id='text_in_numeric_column'),
    pytest.param(lambda h, r: _drop_column(h, r, 'payment_type'), ['payment_type', 'Column dropped'],
                 id='missing_column'),
    pytest.param(lambda h, r: (h, _corrupt(r, h, 'payment_type', 'Bitcoin')), ['payment_type', 'Bitcoin'],
                 id='out_of_domain_value'),
])
def test_anomalous_data_stops_the_run_with_the_features_named(tmp_path, taxi_rows, capsys, corrupt, expect):
    header, rows = corrupt(taxi_rows[0], taxi_rows[1][:ROWS])
    write_csv(str(tmp_path / 'data' / 'span-1' / 'data.csv'), header, rows)

    code, output = _run_cli(tmp_path / 'ws', tmp_path / 'data', capsys)

    assert code == cli.EXIT_BAD_INPUT
    assert 'Data anomalies found' in output.err
    for text in expect:
        assert text in output.err, output.err
    _assert_stopped_before_training(tmp_path / 'ws', output, expect[:1])


def test_empty_file_exits_non_zero_from_the_console_script(tmp_path):
    (tmp_path / 'data' / 'span-1').mkdir(parents=True)
    (tmp_path / 'data' / 'span-1' / 'data.csv').write_text('')
    script = os.path.join(os.path.dirname(sys.executable), 'taxi-pipeline')
    proc = subprocess.run([script, 'run', '--workspace', str(tmp_path / 'ws'), '--data-root',
                           str(tmp_path / 'data')], capture_output=True, text=True, timeout=300)
    assert proc.returncode == cli.EXIT_BAD_INPUT
    assert 'data.csv is empty' in proc.stderr
    assert not os.path.exists(tmp_path / 'ws' / 'serving_model')
    assert not os.path.exists(tmp_path / 'ws' / 'pipeline_root')


@pytest.mark.parametrize('flag, value', [('--train-epochs', '0'), ('--train-epochs', 'nan'), ('--train-steps', '-1')])
def test_training_that_covers_nothing_is_refused_before_anything_runs(tmp_path, capsys, flag, value):
    code = cli.main(['run', '--workspace', str(tmp_path / 'w'), '--data-root', str(tmp_path / 'd'), flag, value])
    assert code == cli.EXIT_BAD_INPUT
    assert flag[2:].replace('-', '_') in capsys.readouterr().err
    assert not os.path.exists(tmp_path / 'w' / 'pipeline_root')
