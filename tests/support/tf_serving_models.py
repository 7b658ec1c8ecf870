"""TF Serving's own test models (tests/data/tf_serving_testdata), copied where a server can load them,
and the `taxi-pipeline serve` command started the way a user starts it."""

import os
import shutil
import subprocess
import sys

TESTDATA = os.path.join(os.path.dirname(__file__), os.pardir, 'data', 'tf_serving_testdata')
HALF_PLUS_TWO = 'saved_model_half_plus_two_cpu'
# Settled: no file changed for a while, so a server loads the version at once.
_SETTLED = 1_600_000_000


def settled_copy(name: str, target) -> str:
    """TF Serving's test model `name` (a base path with its version directories) copied to `target`."""
    shutil.copytree(os.path.join(TESTDATA, name), target)
    settle(target)
    return str(target)


def settle(directory) -> None:
    for root, _, files in os.walk(directory):
        for file in files:
            os.utime(os.path.join(root, file), (_SETTLED, _SETTLED))


def start_serve(*args):
    """`taxi-pipeline serve ARGS...` in its own process, returned once it serves, with its banner."""
    process = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), 'taxi-pipeline'), 'serve', *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if 'Press Ctrl-C' in line:
            return process, ''.join(lines)
    raise AssertionError(f'`taxi-pipeline serve` did not start (exit {process.wait()}): {"".join(lines)}')
