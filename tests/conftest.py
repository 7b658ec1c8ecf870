"""Shared fixtures. The end-to-end runs are session-scoped: one real pipeline
run (a few tens of seconds) serves every test that inspects its results."""

import os

# As the CLI entry point and the pipeline image do: Keras 2 for tf.Transform
# and TFMA, chosen before TensorFlow loads.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import dataclasses  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

from components import code_version  # noqa: E402
from pipeline import data  # noqa: E402
from support.samples import SAMPLE_ROWS, SECOND_COMMIT, TRAIN_STEPS  # noqa: E402


TIERS = ('unit', 'component', 'e2e')
# Session fixtures that run the whole pipeline: a test using one is end-to-end, whatever it checks.
PIPELINE_RUNS = {'e2e_workspace', 'first_run', 'versions'}


def pytest_collection_modifyitems(config, items):
    """Every test is in exactly one tier, and a test that runs the pipeline is in e2e: so `-m unit` stays the
    fast lane, and a new test module cannot leave the lanes without saying where it belongs."""
    wrong = []
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        runs = sorted(PIPELINE_RUNS & set(item.fixturenames))
        if len(tiers) != 1:
            wrong.append(f'{item.nodeid}: {"no tier" if not tiers else "tiers " + ", ".join(tiers)}; mark the module '
                         f'with one of {", ".join(TIERS)} (pytestmark = pytest.mark.unit)')
        elif runs and tiers != ['e2e']:
            wrong.append(f'{item.nodeid}: marked {tiers[0]} but runs the pipeline (fixture {runs[0]}): it is e2e')
    if wrong:
        raise pytest.UsageError('tests outside the tiers (pytest.ini, "markers"):\n  ' + '\n  '.join(wrong))


@pytest.fixture(scope='session', autouse=True)
def scratch_under_basetemp(tmp_path_factory):
    """Libraries leave temp files behind (TFDV's statistics when given no output
    path, for one): the suite's go under pytest's base temp, which pytest prunes,
    not into the machine's temp dir, where they pile up run after run."""
    scratch = tmp_path_factory.mktemp('scratch')
    patch = pytest.MonkeyPatch()
    patch.setenv('TMPDIR', str(scratch))  # subprocesses too
    patch.setattr(tempfile, 'tempdir', str(scratch))
    yield scratch
    patch.undo()


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
    from provenance.reports import write_run_pages
    config = PipelineConfig.for_workspace(str(e2e_workspace), train_steps=TRAIN_STEPS, eval_steps=50)
    lines = []
    result = local_runner.run(config, emit_line=lines.append, pages=write_run_pages)
    return config, result, lines


@dataclasses.dataclass(frozen=True)
class Versions:
    base_path: str
    metadata_path: str
    first: int       # the first run's version: no baseline, blessed
    drifted: int     # trained on a drifted span: blessed, its drift verdict demands a review
    unregistered: int  # a copy put there by hand: no PushedModel in ML Metadata
    first_run: str   # the run names that pushed them
    drifted_run: str


@pytest.fixture(scope='session')
def versions(first_run, tmp_path_factory):
    """The first run's version and its metadata, then a run on a drifted span that is pushed (thresholds
    loose enough to bless a 100-step model), and a version directory no pipeline pushed."""
    from pipeline import local_runner
    from pipeline.config import PipelineConfig, Thresholds
    from provenance.reports import write_run_pages
    _, result, _ = first_run
    root = tmp_path_factory.mktemp('release')
    config = PipelineConfig.for_workspace(str(root), train_steps=100, eval_steps=20, thresholds=Thresholds(
        min_auc=0.5, min_accuracy=0.5, max_auc_drop=0.5))
    shutil.copy(first_run[0].metadata_path, config.metadata_path)
    first = int(os.path.basename(result.pushed_to))
    shutil.copytree(result.pushed_to, os.path.join(config.serving_model_dir, str(first)))
    # Trips moved to the night: a drift the check flags that keeps both labels (data.drifted turns
    # card tips to cash, leaving no positive label to evaluate).
    header, rows = data.read_rows(data.taxi_sample_path())
    hour = header.index('trip_start_hour')
    data.write_span(config.data_root, 2, header, [row[:hour] + [str((int(row[hour]) + 12) % 24)] + row[hour + 1:]
                                                  if row[hour] else row for row in rows[:SAMPLE_ROWS]])
    # As the pipeline image says which commit it holds: the second run names another commit than the first.
    previous = os.environ.get(code_version.COMMIT_VARIABLE)
    os.environ[code_version.COMMIT_VARIABLE] = SECOND_COMMIT
    try:
        summary = local_runner.run(config, emit_line=lambda line: None, pages=write_run_pages)
    finally:
        if previous is None:
            del os.environ[code_version.COMMIT_VARIABLE]
        else:
            os.environ[code_version.COMMIT_VARIABLE] = previous
    assert summary.succeeded and summary.pushed_to, summary.render()
    drifted = int(os.path.basename(summary.pushed_to))
    unregistered = drifted + 1000
    shutil.copytree(summary.pushed_to, os.path.join(config.serving_model_dir, str(unregistered)))
    return Versions(config.serving_model_dir, config.metadata_path, first, drifted, unregistered,
                    result.run_id, summary.run_id)


@pytest.fixture(scope='session')
def release_identities(tmp_path_factory):
    """SSH keys for the people of release/approvers.yaml, and that file with their keys (support.release_users)."""
    from support.release_users import Identities
    return Identities(str(tmp_path_factory.mktemp('identities')))
