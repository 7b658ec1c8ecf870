"""The scheduler as a service: a failing run is reported and scheduling goes on;
SIGTERM stops it cleanly; `--once` runs only when something is due."""

import os
import signal
import subprocess
import sys
import time

import pytest

from cli import main as cli

pytestmark = pytest.mark.component


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_failing_run_is_reported_and_scheduling_goes_on_until_sigterm(tmp_path):
    # A span whose CSV is empty: every run it triggers fails at once (exit 2), and the span stays untrained.
    (tmp_path / 'data' / 'span-1').mkdir(parents=True)
    (tmp_path / 'data' / 'span-1' / 'data.csv').write_text('')
    command = [os.path.join(os.path.dirname(sys.executable), 'taxi-pipeline'), 'schedule', '--workspace',
               str(tmp_path), '--poll', '1s', '--no-alert-trigger']
    service = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 180
        while sum('FAILED (exit 2); scheduling goes on' in line for line in lines) < 2:
            assert time.monotonic() < deadline and service.poll() is None, '\n'.join(lines)
            lines.append(service.stdout.readline().rstrip())
        service.send_signal(signal.SIGTERM)
        out, _ = service.communicate(timeout=120)
        lines.extend(out.splitlines())
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0
    assert any('run due: new_span {"last_trained_span": null, "span": 1}' in line for line in lines)
    assert any('is empty' in line for line in lines)  # the failed run's own reason, passed through
    assert lines[-1].endswith('run(s)') and 'stopped after' in lines[-1]


def test_once_with_nothing_due_runs_nothing(tmp_path, capsys):
    assert cli.main(['schedule', '--workspace', str(tmp_path), '--once']) == 0
    assert 'Nothing due.' in capsys.readouterr().out
    assert not (tmp_path / 'metadata.sqlite').exists()


def test_a_cron_expression_that_is_not_one_is_refused(tmp_path, capsys):
    assert cli.main(['schedule', '--workspace', str(tmp_path), '--cron', 'every night']) == cli.EXIT_BAD_INPUT
    assert 'crontab expression' in capsys.readouterr().err
