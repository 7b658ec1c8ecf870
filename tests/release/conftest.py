"""Two versions pushed by real pipeline runs, and a registry each test may change on its own."""

import dataclasses
import os
import shutil

import pytest

from cli import main as cli
from pipeline import data, local_runner
from pipeline.config import PipelineConfig, Thresholds
from release import policy
from serving import labels, traffic
from support.release_users import ALICE, BOB, MALLORY
from support.samples import SAMPLE_ROWS


@dataclasses.dataclass(frozen=True)
class Versions:
    base_path: str
    metadata_path: str
    first: int       # the first run's version: no baseline, blessed
    drifted: int     # trained on a drifted span: blessed, its drift verdict demands a review
    unregistered: int  # a copy put there by hand: no PushedModel in ML Metadata


@pytest.fixture(scope='session')
def versions(first_run, tmp_path_factory):
    """The first run's version and its metadata, then a run on a drifted span that is pushed (thresholds
    loose enough to bless a 100-step model), and a version directory no pipeline pushed."""
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
    summary = local_runner.run(config, emit_line=lambda line: None)
    assert summary.succeeded and summary.pushed_to, summary.render()
    drifted = int(os.path.basename(summary.pushed_to))
    unregistered = drifted + 1000
    shutil.copytree(summary.pushed_to, os.path.join(config.serving_model_dir, str(unregistered)))
    return Versions(config.serving_model_dir, config.metadata_path, first, drifted, unregistered)


@dataclasses.dataclass
class Workspace:
    """A copy of the metadata store and a serving config of its own: one test's registry."""

    versions: Versions
    metadata_path: str
    serving_config: str

    def args(self, user=None):
        flags = ['--model-base-path', self.versions.base_path, '--metadata-path', self.metadata_path,
                 '--serving-config', self.serving_config]
        return flags + (['--user', user] if user else [])

    def models(self, *argv, user=None):
        return cli.main(['models', *map(str, argv), *self.args(user)])

    def canary(self, *argv, user=None):
        return cli.main(['canary', *map(str, argv), *self.args(user)])

    @property
    def traffic_config(self):
        return os.path.join(os.path.dirname(self.serving_config), 'traffic.json')

    def serving(self):
        """(labels, canary percent) the serving files say."""
        if not os.path.exists(self.serving_config):
            return {}, None
        return labels.read_labels(self.serving_config), traffic.read_split(self.traffic_config).get('chicago-taxi')

    def release_both(self):
        """first -> stable; drifted -> canary at 20%, asserting each step."""
        v = self.versions
        assert self.models('approve', v.first, '--reason', 'eval AUC fine', user=ALICE) == 0
        assert self.models('promote', v.first, '--to', 'stable', '--reason', 'first release', user=BOB) == 0
        # The canary's version is not loaded yet: the config first only loads it, nothing is recorded ...
        promote = ('promote', v.drifted, '--to', 'canary', '--percent', 20, '--reason', 'new span')
        assert self.models(*promote, user=BOB) == 0
        assert self.serving() == ({'stable': v.first}, 0.0)
        # ... and once the servers have it, the same command moves the label and records the decision.
        assert self.models(*promote, user=BOB) == 0
        assert self.serving() == ({'stable': v.first, 'canary': v.drifted}, 20.0)


@pytest.fixture
def workspace(versions, tmp_path):
    metadata_path = str(tmp_path / 'metadata.sqlite')
    shutil.copy(versions.metadata_path, metadata_path)
    return Workspace(versions, metadata_path, str(tmp_path / 'serving_config' / 'models.config'))


@pytest.fixture(autouse=True)
def nobody_by_default(monkeypatch):
    """Who acts is always said: no test may pass as the login name by accident."""
    monkeypatch.setenv(policy.USER_VARIABLE, MALLORY)
