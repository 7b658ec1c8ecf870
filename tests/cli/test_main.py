"""The dispatcher: every command is reachable, help costs no TensorFlow import,
and what a handler raises becomes the documented exit code."""

import os
import subprocess
import sys

import pytest

from cli import main as cli
from components.anomalies_gate.gate import DataAnomaliesError
from pipeline import commands as pipeline_commands

pytestmark = pytest.mark.component


def test_help_lists_every_command_without_loading_tensorflow():
    out = subprocess.run([sys.executable, '-c', 'import sys\nfrom cli import main\ntry:\n    main.main(["--help"])\n'
                          'except SystemExit:\n    pass\nprint("tensorflow" in sys.modules)'],
                         capture_output=True, text=True, timeout=60)
    for command in ('run', 'prepare-data', 'schema-draft', 'compile', 'submit', 'serve', 'serving-labels',
                    'serving-tokens', 'predict', 'explain', 'models', 'canary'):
        assert command in out.stdout, command
    assert out.stdout.strip().endswith('False'), out.stderr


@pytest.mark.parametrize('raised, code', [
    (ValueError('bad flag'), cli.EXIT_BAD_INPUT),
    (DataAnomaliesError({'train': ['fare: out of range']}), cli.EXIT_BAD_INPUT),
    (FileNotFoundError(2, 'No such file', 'rows.csv'), cli.EXIT_BAD_INPUT),
    (pipeline_commands.PipelineFailed('Trainer failed'), cli.EXIT_FAILED),
    (RuntimeError('anything else'), cli.EXIT_FAILED),
])
def test_what_a_handler_raises_becomes_the_exit_code_and_a_message(monkeypatch, capsys, raised, code):
    def handler(args):
        raise raised

    monkeypatch.setattr(pipeline_commands, 'prepare_command', handler)
    assert cli.main(['prepare-data']) == code
    assert capsys.readouterr().err.startswith('error: ')


def test_the_entry_point_chooses_keras_2_before_tensorflow_loads():
    env = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
    out = subprocess.run([sys.executable, '-c', 'import cli.main, tensorflow as tf; print(tf.keras.Model.__module__)'],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip().startswith('tf_keras'), out.stderr[-2000:]


def _console_script(tmp_path, handler_body: str) -> subprocess.CompletedProcess:
    """Runs the console script's entry point in a fresh process, with `prepare-data`'s handler replaced."""
    script = '\n'.join([
        'import atexit, sys, tempfile, threading, time',
        'from cli import main',
        'from pipeline import commands',
        'def handler(args):',
        *('    ' + line for line in handler_body.strip().splitlines()),
        'commands.prepare_command = handler',
        'sys.argv = ["taxi-pipeline", "prepare-data"]',
        'main.console_main()',
    ])
    return subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)


def test_the_console_script_keeps_the_exit_code_the_output_and_the_exit_handlers(tmp_path):
    out = _console_script(tmp_path, '''
handler.left = tempfile.TemporaryDirectory(dir='.')  # alive at exit: only its finalizer removes it
atexit.register(lambda: open('exit-handler-ran', 'w').close())
print('all of it', end='')  # not flushed by the handler
return 3''')
    assert out.returncode == 3, out.stderr[-2000:]
    assert out.stdout == 'all of it'
    assert sorted(os.listdir(tmp_path)) == ['exit-handler-ran']


def test_the_console_script_waits_for_a_thread_still_working(tmp_path):
    out = _console_script(tmp_path, '''
def work():
    time.sleep(1)
    open('finished', 'w').close()
threading.Thread(target=work).start()
return 0''')
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.listdir(tmp_path) == ['finished']


def test_a_busy_or_failing_metadata_store_is_one_line_not_a_proto_dump():
    from ml_metadata import errors as mlmd_errors
    # As ML Metadata reported two commands at once on one SQLite store (its errors carry the status text).
    busy = mlmd_errors.AbortedError('mlmd_sqlite: database is locked\nquery: INSERT INTO `Execution` ...\n{\n}')
    racing = mlmd_errors.FailedPreconditionError(
        'MLMD cannot be upgraded: a subset of tables are missing; this may be a concurrent connection to the empty '
        'database\ndetails: {\n  table: "Type"\n}')
    for error in (busy, racing):
        code, line = cli.error_line(error)
        assert code == cli.EXIT_BUSY and '\n' not in line and line.startswith('the ML Metadata store is busy')
    # Another of its errors is its first line; our own errors keep every line (a list of anomalies).
    assert cli.error_line(mlmd_errors.NotFoundError('no such type\n{\n}')) == (cli.EXIT_FAILED, 'no such type')
    assert cli.error_line(ValueError('2 anomalies:\n  fare: ...\n  tips: ...')) == \
        (cli.EXIT_BAD_INPUT, '2 anomalies:\n  fare: ...\n  tips: ...')


def test_a_store_busy_past_ml_metadatas_retries_names_the_run_that_holds_it(tmp_path):
    from ml_metadata import errors as mlmd_errors
    from pipeline.workspace_lock import WorkspaceLock
    # What a command met after ML Metadata's own retries while a run wrote the store (measured: ~20 s).
    aborted = mlmd_errors.AbortedError('Concurrent writes aborted after max number of retries.')
    metadata_path = str(tmp_path / 'metadata.sqlite')
    code, line = cli.error_line(aborted, metadata_path)
    assert code == cli.EXIT_BUSY and 'another process is writing it' in line and 'about 20 s' in line
    with WorkspaceLock(str(tmp_path), command='run --span 4'):
        code, line = cli.error_line(aborted, metadata_path)
    assert code == cli.EXIT_BUSY and '\n' not in line
    assert f'`taxi-pipeline run --span 4` (pid {os.getpid()}' in line and metadata_path in line
