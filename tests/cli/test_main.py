"""The dispatcher: every command is reachable, help costs no TensorFlow import,
and what a handler raises becomes the documented exit code."""

import os
import subprocess
import sys

import pytest

from cli import main as cli
from components.anomalies_gate import DataAnomaliesError
from pipeline import commands as pipeline_commands

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
