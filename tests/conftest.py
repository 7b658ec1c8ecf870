"""Shared fixtures. The end-to-end runs are session-scoped: one real pipeline
run (a few tens of seconds) serves every test that inspects its results."""

import csv
import os

import pytest

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from pipeline import data

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

# Small enough to keep the suite fast, large enough for a meaningful AUC.
SAMPLE_ROWS = 3000
TRAIN_STEPS = 300


@pytest.fixture(scope='session')
def taxi_rows():
    """(header, rows) of the TFX taxi sample."""
    return data.read_rows(data.taxi_sample_path())


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def as_dicts(header, rows):
    return [dict(zip(header, row)) for row in rows]


@pytest.fixture(scope='session')
def e2e_workspace(tmp_path_factory):
    workspace = tmp_path_factory.mktemp('e2e')
    data.prepare_sample(str(workspace / 'data'), rows=SAMPLE_ROWS)
    return workspace


@pytest.fixture(scope='session')
def first_run(e2e_workspace):
    """The pipeline run end to end once, on a fresh workspace: (config, summary)."""
    from pipeline import local_runner
    from pipeline.config import PipelineConfig
    config = PipelineConfig.for_workspace(str(e2e_workspace), train_steps=TRAIN_STEPS, eval_steps=50)
    lines = []
    result = local_runner.run(config, emit_line=lines.append)
    return config, result, lines
