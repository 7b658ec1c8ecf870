"""Bad input stops the run before Transform with a clear message, exit code 2,
and nothing trained or pushed."""

import os
import subprocess
import sys

import pytest

from pipeline import cli

from conftest import write_csv

ROWS = 1000


def _run_cli(workspace, data_root, capsys):
    code = cli.main(['run', '--workspace', str(workspace), '--data-root', str(data_root), '--train-steps', '5'])
    return code, capsys.readouterr()


def _assert_stopped_before_training(workspace, output):
    assert not os.path.exists(workspace / 'serving_model')
    assert not os.path.exists(workspace / 'pipeline_root' / 'Trainer')
    assert not os.path.exists(workspace / 'pipeline_root' / 'Transform')
    assert 'AnomaliesGate FAILED' in output.out
    # The run's HTML report lists the anomalies too.
    report = next(line for line in output.out.splitlines() if line.startswith('Report: '))[len('Report: '):]
    with open(report) as f:
        page = f.read()
    assert 'Data anomalies' in page and 'FAILED' in page


def _corrupt(rows, header, column, value, every=10):
    index = header.index(column)
    out = [list(r) for r in rows]
    for r in out[::every]:
        r[index] = value
    return out


@pytest.mark.parametrize('case, expect', [
    ('text_in_numeric_column', ['trip_miles']),
    ('missing_column', ['payment_type', 'Column dropped']),
    ('out_of_domain_value', ['payment_type', 'Bitcoin']),
])
def test_anomalous_data_stops_the_run_with_the_features_named(tmp_path, taxi_rows, capsys, case, expect):
    header, rows = taxi_rows
    rows = rows[:ROWS]
    if case == 'text_in_numeric_column':
        rows = _corrupt(rows, header, 'trip_miles', 'twelve')
    elif case == 'out_of_domain_value':
        rows = _corrupt(rows, header, 'payment_type', 'Bitcoin')
    elif case == 'missing_column':
        dropped = header.index('payment_type')
        header = header[:dropped] + header[dropped + 1:]
        rows = [r[:dropped] + r[dropped + 1:] for r in rows]
    write_csv(str(tmp_path / 'data' / 'span-1' / 'data.csv'), header, rows)

    code, output = _run_cli(tmp_path / 'ws', tmp_path / 'data', capsys)

    assert code == cli.EXIT_BAD_INPUT
    assert 'Data anomalies found' in output.err
    for text in expect:
        assert text in output.err, output.err
    _assert_stopped_before_training(tmp_path / 'ws', output)


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
