"""A registry each test may change on its own, over the versions of real pipeline runs (`versions`, tests/conftest.py)."""

import dataclasses
import os
import shutil

import pytest

from cli import main as cli
from release import policy
from serving import labels, traffic
from support.release_users import ALICE, BOB, MALLORY


@dataclasses.dataclass
class Workspace:
    """A copy of the metadata store and a serving config of its own: one test's registry."""

    versions: object  # Versions, from tests/conftest.py
    metadata_path: str
    serving_config: str
    identities: object  # support.release_users.Identities

    def args(self, user=None):
        flags = ['--model-base-path', self.versions.base_path, '--metadata-path', self.metadata_path,
                 '--serving-config', self.serving_config]
        return flags + (self.identities.flags(user) if user else [])

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
def workspace(versions, tmp_path, identities):
    metadata_path = str(tmp_path / 'metadata.sqlite')
    shutil.copy(versions.metadata_path, metadata_path)
    return Workspace(versions, metadata_path, str(tmp_path / 'serving_config' / 'models.config'), identities)


@pytest.fixture(autouse=True)
def shared_versions_stay(monkeypatch):
    """`models list` quarantines versions ML Metadata does not know once they are older than the grace period;
    the session's hand-copied `unregistered` version is shared by every test, so here nothing is that old
    unless a test says so."""
    from components.pusher import push_destination
    monkeypatch.setattr(push_destination, 'GRACE_SECONDS', 10 ** 10)


@pytest.fixture(autouse=True)
def identities(release_identities, monkeypatch):
    """Who acts is always said, and signs: no test may pass as the login name by accident (unsaid, Mallory
    acts, with her key)."""
    monkeypatch.setenv(policy.USER_VARIABLE, MALLORY)
    return release_identities.install(monkeypatch)
