"""Access control for the serving endpoints: bearer tokens with roles.

Both servers (embedded and gateway) and both protocols ask this module, and
only this module, who may call what:

    REST `Authorization: Bearer <token>`, gRPC metadata `authorization: Bearer <token>`

    endpoint                                                      role needed
    predict, classify, regress; gRPC MultiInference               predict
      the same on an explanation signature                        explain
        (serving.EXPLAIN_SIGNATURES, per MultiInference task;
        '' means serving_default, which is not one)
    POST /v1/feedback                                             feedback
    gRPC HandleReloadConfigRequest                                admin
    model metadata (REST .../metadata, gRPC GetModelMetadata)     any valid token
    anything else (malformed paths, unknown verbs)                any valid token
    model status (REST GET /v1/models/NAME..., GetModelStatus)    none: open
    Prometheus metrics (GET /monitoring/prometheus/metrics)       none: open

Roles are not hierarchical (`admin` does not imply `predict`); a token may
hold several. Status and metrics stay open because the kubelet's readiness,
startup and liveness probes and Prometheus's scrape cannot present a
secret; they reveal model names, versions, states and counters, never data
or tokens. Whatever this table does not name needs a valid token (fail closed).

Refusals use TF Serving's error shape: UNAUTHENTICATED (REST 401, with
`WWW-Authenticate: Bearer`) for a missing or unknown token, PERMISSION_DENIED
(403) for a valid token without the role, naming the role and the token's
name, never the token.

The tokens file (`serve --auth-tokens FILE`, `taxi-pipeline serving-tokens`):

    {"tokens": [{"name": "ci-bot", "sha256": "<hex>", "roles": ["predict", "feedback"],
                 "created": "2026-01-01T00:00:00+00:00",
                 "rate_limit": {"per_second": 5, "burst": 10}}]}

holds only each token's SHA-256. `rate_limit` is optional: the token's own limit
(serving/rate_limit.py), or "unlimited"; without it the server's `--rate-limit`
applies. It is re-read when it changes (checked on every request: one stat), so
rotating tokens through a Kubernetes Secret
mount needs no restart; a file that cannot be read or parsed stops the
server from starting, and later keeps the last good tokens in force (logged
once per change).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import secrets
import threading
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

import grpc

from serving import EXPLAIN_SIGNATURES
from serving.errors import ServingError
from serving.rate_limit import RateLimit

log = logging.getLogger(__name__)

PREDICT, EXPLAIN, FEEDBACK, ADMIN = 'predict', 'explain', 'feedback', 'admin'
ROLES = (PREDICT, EXPLAIN, FEEDBACK, ADMIN)

# Endpoints, as both front ends name them to `required_roles`.
CLASSIFY, REGRESS, MULTI_INFERENCE = 'classify', 'regress', 'multi_inference'
METADATA, STATUS, METRICS, RELOAD, OTHER = 'metadata', 'status', 'metrics', 'reload', 'other'
INFERENCE = frozenset({PREDICT, CLASSIFY, REGRESS, MULTI_INFERENCE})
GRPC_ENDPOINTS = {'Predict': PREDICT, 'Classify': CLASSIFY, 'Regress': REGRESS, 'MultiInference': MULTI_INFERENCE,
                  'GetModelMetadata': METADATA, 'GetModelStatus': STATUS, 'HandleReloadConfigRequest': RELOAD}
# A token's roles were checked and none is needed (any valid token will do).
ANY_TOKEN: FrozenSet[str] = frozenset()

_SHA256_HEX = re.compile(r'[0-9a-f]{64}')
_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._@-]{0,99}')
_FIELDS = {'name', 'sha256', 'roles', 'created', 'rate_limit'}
# A token's `rate_limit` that exempts it from the server's default limit.
UNLIMITED = 'unlimited'


def required_roles(endpoint: str, signatures: Sequence[str] = ('',)) -> Optional[FrozenSet[str]]:
    """The roles a call needs: None if it is open, `ANY_TOKEN` if any valid token will do.

    `signatures` are the signature names as the request gives them (MultiInference:
    one per task); '' is the default signature, which is not an explanation one.
    """
    if endpoint in INFERENCE:
        return frozenset(EXPLAIN if name in EXPLAIN_SIGNATURES else PREDICT for name in signatures or ('',))
    if endpoint == FEEDBACK:
        return frozenset({FEEDBACK})
    if endpoint == RELOAD:
        return frozenset({ADMIN})
    if endpoint in (STATUS, METRICS):
        return None
    # Metadata, and whatever this mapping does not name: a valid token (fail closed).
    return ANY_TOKEN


def grpc_signatures(request) -> Tuple[str, ...]:
    """The signature names a gRPC request asks for (MultiInference: each task's)."""
    tasks = getattr(request, 'tasks', None)
    if tasks is not None:
        return tuple(task.model_spec.signature_name for task in tasks) or ('',)
    spec = getattr(request, 'model_spec', None)
    return (spec.signature_name,) if spec is not None else ('',)


def hash_token(token: str) -> str:
    # A plain SHA-256, not a slow KDF: tokens are 32 random bytes
    # (secrets.token_urlsafe), so guessing one from its hash is as hopeless as
    # guessing it outright, and a KDF's deliberate cost would be paid on every request.
    return hashlib.sha256(token.encode('utf-8', 'backslashreplace')).hexdigest()


@dataclasses.dataclass(frozen=True)
class Token:
    """What the file says about one token (never the token itself)."""

    name: str
    roles: FrozenSet[str]
    created: str = ''
    # The token's own rate limit, UNLIMITED, or None: the server's default applies.
    rate_limit: Union[RateLimit, str, None] = None

    def describe_roles(self) -> str:
        return ', '.join(r for r in ROLES if r in self.roles) or 'none'

    def limit(self, default: Optional[RateLimit]) -> Optional[RateLimit]:
        """The rate limit this token's calls are held to, given the server's default."""
        if self.rate_limit == UNLIMITED:
            return None
        return self.rate_limit or default

    def describe_limit(self) -> str:
        if self.rate_limit is None:
            return 'server default'
        return UNLIMITED if self.rate_limit == UNLIMITED else self.rate_limit.describe()


# --- the tokens file ------------------------------------------------------------------------------------


def _parse(path: str, text: str) -> Dict[str, Token]:
    """sha256 -> Token; ValueError naming the file and the entry for anything malformed."""
    where = f'the tokens file {path}'
    try:
        document = json.loads(text)
    except ValueError as e:  # the decoder's message gives a position, never the content
        raise ValueError(f'{where} is not valid JSON: {e}') from None
    if not isinstance(document, dict) or set(document) != {'tokens'} or not isinstance(document['tokens'], list):
        raise ValueError(f'{where} must be a JSON object {{"tokens": [...]}} and nothing else; write it with '
                         '`taxi-pipeline serving-tokens add`')
    by_hash: Dict[str, Token] = {}
    names = set()
    for i, entry in enumerate(document['tokens'], start=1):
        label = f'{where}, token {i}'
        if not isinstance(entry, dict):
            raise ValueError(f'{label}: expected an object with name, sha256, roles')
        unknown, missing = set(entry) - _FIELDS, {'name', 'sha256', 'roles'} - set(entry)
        if unknown or missing:
            raise ValueError(f'{label}: ' + '; '.join(
                ([f'unknown field(s) {sorted(unknown)}'] if unknown else []) +
                ([f'missing field(s) {sorted(missing)}'] if missing else [])))
        name = entry['name']
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f'{label}: "name" must be letters, digits, ".", "_", "@" or "-" (at most 100)')
        label = f'{label} ({name!r})'
        if name in names:
            raise ValueError(f'{label}: the name is used twice')
        digest = entry['sha256']
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise ValueError(f'{label}: "sha256" must be 64 lowercase hex digits (the hash, never the token)')
        if digest in by_hash:
            raise ValueError(f'{label}: the same token as {by_hash[digest].name!r}')
        roles = entry['roles']
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
            raise ValueError(f'{label}: "roles" must be a non-empty list of {", ".join(ROLES)}')
        bad = [r for r in roles if r not in ROLES]
        if bad:
            raise ValueError(f'{label}: unknown role(s) {bad}; roles are {", ".join(ROLES)}')
        created = entry.get('created', '')
        if not isinstance(created, str):
            raise ValueError(f'{label}: "created" must be a string (an ISO time)')
        names.add(name)
        by_hash[digest] = Token(name, frozenset(roles), created, _parse_limit(label, entry.get('rate_limit')))
    return by_hash


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_limit(label: str, found) -> Union[RateLimit, str, None]:
    if found is None or found == UNLIMITED:
        return found
    usage = (f'{label}: "rate_limit" must be {{"per_second": N, "burst": M}} (burst optional, at least 1) or '
             f'"{UNLIMITED}"')
    if not isinstance(found, dict) or not found or set(found) - {'per_second', 'burst'} \
            or not all(_number(v) for v in found.values()) or 'per_second' not in found:
        raise ValueError(usage)
    try:
        return RateLimit.of(found['per_second'], found.get('burst'))
    except ValueError as e:
        raise ValueError(f'{label}: {e}') from None


def _limit_record(limit: Union[RateLimit, str]):
    return limit if limit == UNLIMITED else {'per_second': limit.per_second, 'burst': limit.burst}


def read_tokens(path: str) -> Dict[str, Token]:
    """sha256 -> Token from the file; ValueError that says what is wrong and how to fix it."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f'cannot read the tokens file {path}: {e.strerror or e}; create it with '
                         f'`taxi-pipeline serving-tokens add --file {path} --name NAME --roles predict`') from None
    except UnicodeDecodeError as e:
        raise ValueError(f'the tokens file {path} is not UTF-8 text: {e.reason} at byte {e.start}') from None
    return _parse(path, text)


def _write(path: str, by_hash: Dict[str, Token]) -> None:
    from foundation.atomic_file import write_atomically
    entries = [{'name': t.name, 'sha256': digest, 'roles': [r for r in ROLES if r in t.roles], 'created': t.created,
                **({'rate_limit': _limit_record(t.rate_limit)} if t.rate_limit is not None else {})}
               for digest, t in sorted(by_hash.items(), key=lambda item: item[1].name)]
    new = not os.path.exists(path)
    # Atomic: a server re-reading the file mid-write sees the old or the new file, never half of one.
    write_atomically(path, json.dumps({'tokens': entries}, indent=2) + '\n')
    if new:
        # Owner-only: hashes alone let no one in, but the file need not tell others which clients exist.
        os.chmod(path, 0o600)


def parse_roles(text: str) -> FrozenSet[str]:
    roles = [r.strip() for r in text.split(',') if r.strip()]
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f'--roles {text!r}: ' + (f'unknown role(s) {bad}; ' if bad else 'no role given; ') +
                         f'give a comma-separated list of {", ".join(ROLES)}')
    return frozenset(roles)


def _editing(path: str):
    """Exclusive while a command reads, changes and rewrites the tokens file: two `add`s at once
    must not each write the file without the other's token."""
    from foundation.atomic_file import exclusive
    return exclusive(path + '.lock')


def add_token(path: str, name: str, roles: Iterable[str], rate_limit: Union[RateLimit, str, None] = None) -> str:
    """Creates a token for `name` with `roles` (and its own `rate_limit`, or UNLIMITED), stores its hash in
    `path` (created if missing); returns the token.

    The token is returned once and stored nowhere: lost, it is revoked and a new one added.
    """
    roles = frozenset(roles)
    if not roles or not roles <= set(ROLES):
        raise ValueError(f'roles must be among {", ".join(ROLES)}, not {sorted(roles)}')
    if not _NAME.fullmatch(name or ''):
        raise ValueError(f'--name {name!r}: use letters, digits, ".", "_", "@" or "-" (at most 100), '
                         'starting with a letter or digit')
    with _editing(path):
        by_hash = read_tokens(path) if os.path.exists(path) else {}
        if any(t.name == name for t in by_hash.values()):
            raise ValueError(f'{path} already has a token named {name!r}: revoke it first '
                             f'(`taxi-pipeline serving-tokens revoke --file {path} --name {name}`) or choose another '
                             'name')
        token = secrets.token_urlsafe(32)
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
        by_hash[hash_token(token)] = Token(name, roles, created, rate_limit)
        _write(path, by_hash)
    return token


def revoke_token(path: str, name: str) -> None:
    with _editing(path):
        by_hash = read_tokens(path)
        kept = {digest: t for digest, t in by_hash.items() if t.name != name}
        if len(kept) == len(by_hash):
            names = ', '.join(sorted(t.name for t in by_hash.values())) or 'none'
            raise ValueError(f'{path} has no token named {name!r} (it has: {names})')
        _write(path, kept)


def list_tokens(path: str) -> List[Token]:
    return sorted(read_tokens(path).values(), key=lambda t: t.name)


# --- checking requests ------------------------------------------------------------------------------------


def _unauthenticated(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNAUTHENTICATED, message)


def _stat(path: str) -> Optional[tuple]:
    """What changes when the file is replaced: a Secret update swaps a symlink, an atomic write a file."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size


class AccessControl:
    """The tokens of one file, kept in line with it; answers who may call what."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        # Stat before reading: a change during the read is then seen (and read) at the next request.
        self._seen = _stat(path)
        self._by_hash = read_tokens(path)  # at startup, a bad file is the caller's ValueError
        if not self._by_hash:
            log.warning('the tokens file %s holds no tokens: only model status and metrics are reachable', path)

    @property
    def tokens(self) -> List[Token]:
        return sorted(self._current().values(), key=lambda t: t.name)

    def _current(self) -> Dict[str, Token]:
        seen = _stat(self.path)
        if seen != self._seen:
            with self._lock:
                if seen != self._seen:
                    # Tried once per change, good or bad, so a broken file is logged once, not per request.
                    self._seen = seen
                    try:
                        self._by_hash = read_tokens(self.path)
                        log.info('tokens file %s re-read: %d token(s)', self.path, len(self._by_hash))
                    except ValueError as e:
                        log.error('ignoring the changed tokens file: %s; the last good tokens (%d) stay in force',
                                  e, len(self._by_hash))
        return self._by_hash

    def authenticate(self, credentials: Optional[str]) -> Token:
        """The token `credentials` (an Authorization header's value) names; UNAUTHENTICATED otherwise.

        No message repeats what the client sent: it may be a real token sent to the wrong server.
        """
        if not credentials:
            raise _unauthenticated('Missing bearer token: send the header "Authorization: Bearer <token>" (gRPC: '
                                   'metadata "authorization: Bearer <token>")')
        scheme, _, token = credentials.strip().partition(' ')
        token = token.strip()
        if scheme.lower() != 'bearer' or not token:
            raise _unauthenticated('Unsupported credentials: this server takes only "Authorization: Bearer <token>"')
        # Looked up by hash: a dict lookup's timing reveals at most a hash prefix, which does not
        # help find a token whose hash matches (no plaintext comparison takes place).
        found = self._current().get(hash_token(token))
        if found is None:
            raise _unauthenticated('Invalid bearer token: unknown to this server (revoked, mistyped, or issued '
                                   'for another server)')
        return found

    def authorize(self, credentials: Optional[str], endpoint: str, signatures: Sequence[str] = ('',),
                  what: str = '') -> Optional[Token]:
        """The caller's token if it may call `endpoint` on `signatures` (None for an open endpoint);
        UNAUTHENTICATED or PERMISSION_DENIED otherwise. `what` names the call in the message."""
        needed = required_roles(endpoint, signatures)
        if needed is None:
            return None
        token = self.authenticate(credentials)
        missing = needed - token.roles
        if missing:
            on = ', '.join(sorted({repr(s or 'serving_default') for s in signatures}))
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                               f'Token {token.name!r} lacks the role '
                               f'{" and ".join(repr(r) for r in ROLES if r in missing)} needed to call '
                               f'{what or endpoint}' + (f' on signature {on}' if endpoint in INFERENCE else '') +
                               f'; it has: {token.describe_roles()}')
        return token

    def authorize_any_inference(self, credentials: Optional[str], what: str) -> Token:
        """Before a REST body is decoded, its signature (in the body) is unknown: the caller must at
        least hold a token with `predict` or `explain`, so no one else gets the body decoded."""
        token = self.authenticate(credentials)
        if not token.roles & {PREDICT, EXPLAIN}:
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                               f'Token {token.name!r} lacks the role \'predict\' (\'explain\' on an explanation '
                               f'signature) needed to call {what}; it has: {token.describe_roles()}')
        return token


def check(control: Optional[AccessControl], call, endpoint: str, signatures: Optional[Sequence[str]] = ('',),
          what: str = '') -> Optional[Token]:
    """Refuses `call` (a `serving.core.Call` carrying the client's credentials) unless it may reach
    `endpoint`; returns the token it was allowed with (None: no access control, or an open endpoint).
    `signatures` None: not known yet (REST, before its body is decoded). A refused inference call is
    counted under its API with the other errors; its model and signature labels stay empty, as
    nothing the client named has been checked."""
    if control is None:
        return None
    try:
        if signatures is None:
            token = control.authorize_any_inference(call.credentials, what or endpoint)
        else:
            token = control.authorize(call.credentials, endpoint, signatures, what)
        if token is not None:  # who called, by the token's name: feedback and the request log record it
            call.principal = token.name
        return token
    except ServingError:
        if endpoint in (PREDICT, CLASSIFY, REGRESS) and not call.api:
            call.api = endpoint
        raise


def client_host(address: Optional[str]) -> str:
    """Who called when no token says so: the client's IP address, without its port (a client's every
    connection is one caller). REST gives the socket's host; gRPC's `context.peer()` is a URI such as
    `ipv4:10.0.0.7:52144`, `ipv6:[::1]:52144` (percent-encoded in some gRPC versions) or `unix:...`."""
    import ipaddress
    import urllib.parse
    if not address:
        return ''
    address = urllib.parse.unquote(address)
    kind, colon, rest = address.partition(':')
    if colon and kind in ('ipv4', 'ipv6'):
        address = rest.rsplit(':', 1)[0] if rest.count(':') and (kind == 'ipv4' or rest.startswith('[')) else rest
    elif colon and kind in ('unix', 'unix-abstract'):
        return address
    try:
        ip = ipaddress.ip_address(address.strip('[]').split('%', 1)[0])
    except ValueError:
        return address
    mapped = getattr(ip, 'ipv4_mapped', None)  # an IPv4 client on a dual-stack socket is that IPv4 address
    return str(mapped or ip)


# --- exposure ---------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    import ipaddress
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to anything
        return False


def check_exposure(host: str, tokens_file: Optional[str], no_auth: bool) -> None:
    """ValueError for a server reachable from other machines with no tokens, unless that is asked for."""
    if tokens_file and no_auth:
        raise ValueError('--auth-tokens and --no-auth contradict each other: give one')
    if not tokens_file and not no_auth and not is_loopback(host):
        raise ValueError(f'--host {host} makes the server reachable from other machines, and without '
                         '--auth-tokens anyone there could call it: create tokens (`taxi-pipeline serving-tokens '
                         'add --file tokens.json --name NAME --roles predict`) and pass --auth-tokens tokens.json, '
                         'or pass --no-auth if the network already restricts who can connect')


def describe(control: Optional[AccessControl]) -> str:
    """The startup line's account of who may call what."""
    if control is None:
        return 'open to anyone who can connect (no --auth-tokens)'
    names = ', '.join(f'{t.name} ({t.describe_roles()})' for t in control.tokens) or 'none yet'
    return (f'bearer tokens from {control.path}, re-read when it changes: {names}; model status and metrics '
            'are open (probes, Prometheus)')


def describe_limits(control: Optional[AccessControl], default: Optional[RateLimit]) -> str:
    """The startup line's account of the rate limits (serving/rate_limit.py)."""
    own = [f'{t.name} {t.describe_limit()}' for t in (control.tokens if control else []) if t.rate_limit is not None]
    if default is None and not own:
        return 'none (--rate-limit)'
    who = 'per token' if control else 'per client address'
    text = f'{default.describe()} {who}' if default else f'none by default {who}'
    return text + (f'; own limits: {", ".join(own)}' if own else '') + '; over it: 429 / RESOURCE_EXHAUSTED'
