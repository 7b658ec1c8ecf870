"""Who may do what: the approvers list kept in the repository (release/approvers.yaml).

Roles are `approve` (approve or reject a version for production) and
`promote` (canary, stable, rollback). The file is read whole and checked
strictly: an unknown role, a name listed twice in one role or an empty file
is an error, never a silently narrower policy. Its SHA-256 goes into every
recorded decision, so the policy that allowed it can be found in git.

Identity: the CLI acts as `--user`, else TAXI_PIPELINE_USER, else the login
name, and proves it by signing the decision with a key the file lists for
that name under `keys:` (OpenSSH public keys, as in git's allowed_signers;
release.signing). A name is a claim, the key is the proof: a person without
a listed key can read the registry but decide nothing. Keys are never
removed from the file while decisions signed with them are in the history
(they would no longer verify); a key that must stop being trusted is removed
together with a reviewed re-signing of the history, which the docs describe.

`unsigned_history: N` accepts the first N decisions unsigned: those a
registry recorded before signing began, reviewed once by an auditor.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import os
from typing import Dict, FrozenSet, Optional

import yaml

APPROVE, PROMOTE = ROLES = ('approve', 'promote')
DEFAULT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'approvers.yaml')
USER_VARIABLE = 'TAXI_PIPELINE_USER'


class NotAllowed(ValueError):
    """The acting user lacks the role, or the rules refuse the transition (exit 2: nothing changed)."""


@dataclasses.dataclass(frozen=True)
class Policy:
    path: str
    sha256: str
    members: Dict[str, FrozenSet[str]]  # role -> names
    # name -> OpenSSH public keys ('<type> <base64>', no comment) that sign as that name.
    keys: Dict[str, FrozenSet[str]] = dataclasses.field(default_factory=dict)
    unsigned_history: int = 0

    def require(self, user: str, role: str, doing: str) -> None:
        if user not in self.members.get(role, frozenset()):
            allowed = ', '.join(sorted(self.members.get(role, ()))) or 'nobody'
            raise NotAllowed(f'{user!r} may not {doing}: that needs the {role!r} role in {self.path} '
                             f'(who has it: {allowed})')

    def require_key(self, user: str, public_key: str) -> None:
        """Refuses a signing key the file does not list for `user`."""
        from release import signing
        listed = self.keys.get(user, frozenset())
        if public_key not in listed:
            raise NotAllowed(f'the signing key ({signing.fingerprint(public_key)}) is not one {self.path} lists for '
                             f'{user}' + ('' if listed else f': {user} has no key there yet; add the public key '
                                          '(ssh-keygen -y -f KEY) under keys:'))

    def allowed_signers(self) -> str:
        """The keys as OpenSSH's allowed_signers file, for `ssh-keygen -Y verify` by an auditor."""
        from release import signing
        return ''.join(f'{name} namespaces="{signing.NAMESPACE}" {key}\n'
                       for name, keys in sorted(self.keys.items()) for key in sorted(keys))


def load(path: Optional[str] = None) -> Policy:
    path = path or DEFAULT_FILE
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ValueError(f'{path} is not valid YAML: {e}') from None
    roles = (document or {}).get('roles') if isinstance(document, dict) else None
    if not isinstance(roles, dict) or not roles:
        raise ValueError(f'{path}: expected a "roles:" mapping of {" and ".join(ROLES)} to lists of names')
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f'{path}: unknown role(s) {sorted(unknown)}; roles are {", ".join(ROLES)}')
    members = {}
    for role, names in roles.items():
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f'{path}: role {role!r} must list names (non-empty strings)')
        if len(set(names)) != len(names):
            raise ValueError(f'{path}: role {role!r} lists a name twice')
        members[role] = frozenset(n.strip() for n in names)
    keys = _keys(path, document.get('keys') or {}, set().union(*members.values()))
    unsigned = document.get('unsigned_history', 0)
    if not isinstance(unsigned, int) or isinstance(unsigned, bool) or unsigned < 0:
        raise ValueError(f'{path}: unsigned_history must be a count of decisions (0 or more), not {unsigned!r}')
    return Policy(path, hashlib.sha256(raw).hexdigest(), members, keys, unsigned)


def _keys(path: str, section, names) -> Dict[str, FrozenSet[str]]:
    from release import signing
    if not isinstance(section, dict):
        raise ValueError(f'{path}: keys: must map each name to a list of SSH public keys')
    keys = {}
    for name, listed in section.items():
        if name not in names:
            raise ValueError(f'{path}: keys: lists {name!r}, who has no role (a typo?)')
        if not isinstance(listed, list) or not listed:
            raise ValueError(f'{path}: keys for {name!r} must be a list of SSH public keys')
        found = set()
        for text in listed:
            try:
                key = signing.normalize_key(str(text))
                signing.load_public_key(key)
            except ValueError as e:
                raise ValueError(f'{path}: a key of {name!r} is not an SSH public key: {e}') from None
            found.add(key)
        keys[name] = frozenset(found)
    return keys


def current_user(given: Optional[str] = None) -> str:
    user = given or os.environ.get(USER_VARIABLE) or getpass.getuser()
    if not user or not user.strip():
        raise ValueError(f'no user: pass --user or set {USER_VARIABLE}')
    return user.strip()
