"""Request logs in the server's own format, written at chosen times, and feedback that
arrives within the hour the passes judge."""

import os
import random
import shutil

import pytest

from pipeline import data
from serving import feedback
from support.log_times import END, HOUR
from support.samples import SAMPLE_ROWS, as_dicts
from support.served_traffic import LogWriter


@pytest.fixture(scope='session')
def model_base(first_run, tmp_path_factory):
    """The first run's pushed version, alone in a base path."""
    pushed = first_run[1].pushed_to
    base = tmp_path_factory.mktemp('models') / 'chicago-taxi'
    shutil.copytree(pushed, base / os.path.basename(pushed))
    return str(base), int(os.path.basename(pushed))


@pytest.fixture(scope='session')
def served(model_base):
    """Writes rows to a log directory as the server logs them: served by the version, at a time."""
    writer = LogWriter(*model_base)

    def write(directory, rows, at_micros, name, request_id=None, strip=()):
        writer.write(directory, rows, at_micros, name, request_id, strip)
    return write


@pytest.fixture(autouse=True)
def feedback_arrives_in_the_window(monkeypatch):
    """Feedback stored here arrives half an hour before END, inside the hour the passes judge."""
    clock = iter(range(END - HOUR // 2, END))
    monkeypatch.setattr(feedback, 'now_micros', lambda: next(clock))


@pytest.fixture(scope='session')
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
