"""Who may do what: the approvers list kept in the repository (release/approvers.yaml).

Roles are `approve` (approve or reject a version for production) and
`promote` (canary, stable, rollback). The file is read whole and checked
strictly: an unknown role, a name listed twice in one role or an empty file
is an error, never a silently narrower policy. Its SHA-256 goes into every
recorded decision, so the policy that allowed it can be found in git.

Identity: the CLI acts as `--user`, else TAXI_PIPELINE_USER, else the login
name. It trusts the account it runs under, as git does for authorship; on a
cluster the identity is the CronJob's or the CI job's service account name,
and the approvers file is what decides.
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

    def require(self, user: str, role: str, doing: str) -> None:
        if user not in self.members.get(role, frozenset()):
            allowed = ', '.join(sorted(self.members.get(role, ()))) or 'nobody'
            raise NotAllowed(f'{user!r} may not {doing}: that needs the {role!r} role in {self.path} '
                             f'(who has it: {allowed})')


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
    return Policy(path, hashlib.sha256(raw).hexdigest(), members)


def current_user(given: Optional[str] = None) -> str:
    user = given or os.environ.get(USER_VARIABLE) or getpass.getuser()
    if not user or not user.strip():
        raise ValueError(f'no user: pass --user or set {USER_VARIABLE}')
    return user.strip()
