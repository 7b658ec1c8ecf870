"""Shared fixtures. The end-to-end runs are session-scoped: one real pipeline
run (a few tens of seconds) serves every test that inspects its results."""

import os

# As the CLI entry point and the pipeline image do: Keras 2 for tf.Transform
# and TFMA, chosen before TensorFlow loads.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import pytest  # noqa: E402

from pipeline import data  # noqa: E402
from support.samples import SAMPLE_ROWS, TRAIN_STEPS  # noqa: E402


@pytest.fixture(scope='session')
def taxi_rows():
    """(header, rows) of the TFX taxi sample."""
    return data.read_rows(data.taxi_sample_path())


@pytest.fixture(scope='session')
def e2e_workspace(tmp_path_factory):
    workspace = tmp_path_factory.mktemp('e2e')
    data.prepare_sample(str(workspace / 'data'), rows=SAMPLE_ROWS)
    return workspace


@pytest.fixture(scope='session')
def first_run(e2e_workspace):
    """The pipeline run end to end once, on a fresh workspace: (config, summary, printed lines)."""
    from pipeline import local_runner
    from pipeline.config import PipelineConfig
    config = PipelineConfig.for_workspace(str(e2e_workspace), train_steps=TRAIN_STEPS, eval_steps=50)
    lines = []
    result = local_runner.run(config, emit_line=lines.append)
    return config, result, lines
