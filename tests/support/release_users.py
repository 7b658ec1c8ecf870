"""The people in release/approvers.yaml the tests act as, one who is not in it, and their SSH keys.

Every release decision is signed by its actor's key, listed in the approvers file. The shipped file
lists no keys (each team adds its own), so the tests act under a copy of it with keys made for the
session: `Identities.policy_file`, which tests put in place of the shipped file.
"""

import os
import subprocess

import yaml

from release import policy

ALICE, CAROL = 'alice@example.com', 'carol@example.com'  # approve (Carol also promotes)
BOB, EVALUATOR = 'bob@example.com', 'canary-evaluator'  # promote
MALLORY = 'mallory@example.com'  # no role
PEOPLE = (ALICE, CAROL, BOB, EVALUATOR, MALLORY)


class Identities:
    """An SSH key per person (`key[name]`), and the approvers file listing each one's public key."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.key = {}
        for name in PEOPLE:
            path = os.path.join(directory, name.split('@')[0])
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path], check=True)
            self.key[name] = path
        with open(policy.DEFAULT_FILE) as f:
            document = yaml.safe_load(f)
        members = set().union(*map(set, document['roles'].values()))
        document['keys'] = {name: [self.public(name)] for name in PEOPLE if name in members}
        self.policy_file = os.path.join(directory, 'approvers.yaml')
        with open(self.policy_file, 'w') as f:
            yaml.safe_dump(document, f)

    def public(self, name: str) -> str:
        with open(self.key[name] + '.pub') as f:
            return ' '.join(f.read().split()[:2])

    def flags(self, name: str):
        return ['--user', name, '--signing-key', self.key[name]]

    def install(self, monkeypatch) -> 'Identities':
        """The approvers file with these keys is the policy; whoever acts without saying signs as Mallory."""
        monkeypatch.setattr(policy, 'DEFAULT_FILE', self.policy_file)
        monkeypatch.setenv('TAXI_PIPELINE_SIGNING_KEY', self.key[MALLORY])
        return self
