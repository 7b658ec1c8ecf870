"""Canary traffic split: which share of a model's unaddressed requests the `canary` label answers.

TF Serving answers a request that names neither a version nor a label with
the latest loaded version, which during a canary is the canary: it has no
traffic split of its own. The split happens here, in the embedded server
and in the gateway in front of TF Serving, from one small file beside
models.config (`TRAFFIC_FILE`), written by the release registry
(`write_split`):

    {"models": {"chicago-taxi": {"canary_percent": 10.0}}}

Only requests for a model listed there that name neither a version nor a
label are split: they go to the `stable` label, or to `canary` for the
model's share of callers. Requests that name a version or a label are served
as asked (that is how clients and tests pin), and a model the file does not
list is served as TF Serving serves it (the latest version).

Sticky without session affinity: a caller's side is a hash of the model name
and the caller's key (`CALLER_HEADER`, else the request id), the same in
every process and replica, so whichever gateway replica a request reaches,
a caller keeps seeing the same version. This is why no service mesh (Istio)
or KServe is needed: the split is in the gateway, identical in every replica.

No failed request when a side is missing: a `canary` label that is absent or
whose version is not loaded sends the request to `stable`; a missing `stable`
label, to the latest version, as without a split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from typing import Callable, Dict, Optional, Tuple, TypeVar

from foundation.atomic_file import write_atomically
from serving import CANARY_LABEL, LOGGED_HEADER, STABLE_LABEL

log = logging.getLogger(__name__)

# The traffic file's name, beside models.config (serving/config/, the pod's /config).
TRAFFIC_FILE = 'traffic.json'
# Who is calling: the caller's side of the split follows this key. gRPC metadata keys are lower case.
CALLER_HEADER = 'X-Caller-Id'
CALLER_METADATA = CALLER_HEADER.lower()
# Which version answered a REST predict/classify/regress, and by which label (the split's or the request's).
VERSION_HEADER = 'X-Model-Version'
LABEL_HEADER = 'X-Model-Label'
# gRPC: the label in the trailing metadata. TF Serving's response model_spec
# carries the name, signature and version only (never version_label), so the
# response proto is left as TF Serving would fill it.
LABEL_METADATA = LABEL_HEADER.lower()

_PERCENT = 'canary_percent'
# Where a request goes when its label cannot answer: canary -> stable -> latest (None).
_FALLBACK = {CANARY_LABEL: (CANARY_LABEL, STABLE_LABEL, None), STABLE_LABEL: (STABLE_LABEL, None), None: (None,)}

T = TypeVar('T')


# -- the file ----------------------------------------------------------------------------------

def _check_percent(percent, where: str) -> float:
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not math.isfinite(percent) \
            or not 0 <= percent <= 100:
        raise ValueError(f'{where}: canary_percent must be a number from 0 to 100, got {percent!r}')
    return float(percent)


def _reject_constant(name: str):
    raise ValueError(f'{name} is not a number JSON allows')


def _parse(text: str, path: str) -> Dict[str, float]:
    example = '{"models": {"chicago-taxi": {"canary_percent": 10}}}'
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise ValueError(f'traffic file {path} is not valid JSON ({e}); expected e.g. {example}') from None
    if not isinstance(document, dict) or set(document) != {'models'} or not isinstance(document['models'], dict):
        raise ValueError(f'traffic file {path} must be an object with only a "models" object, e.g. {example}')
    split = {}
    for name, entry in document['models'].items():
        where = f'traffic file {path}, model {name!r}'
        if not name:
            raise ValueError(f'traffic file {path}: a model name is empty')
        if not isinstance(entry, dict) or set(entry) != {_PERCENT}:
            raise ValueError(f'{where}: expected {{"canary_percent": <0 to 100>}}, got {json.dumps(entry)}')
        split[name] = _check_percent(entry[_PERCENT], where)
    return split


def read_split(path: str) -> Dict[str, float]:
    """Model name -> canary percent from the traffic file; {} if there is no file.

    ValueError naming the file and what is wrong if it is malformed.
    """
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    return _parse(text, path)


def write_split(path: str, model_name: str, canary_percent: float) -> None:
    """Sets `model_name`'s canary percent, keeping the other models' entries; atomic.

    Refuses (ValueError) a percent outside 0..100 and an existing file that is
    malformed, rather than replacing what someone wrote by hand.
    """
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f'model name must be a non-empty string, got {model_name!r}')
    percent = _check_percent(canary_percent, f'model {model_name!r}')
    split = read_split(path)
    split[model_name] = percent
    document = {'models': {name: {_PERCENT: value} for name, value in sorted(split.items())}}
    write_atomically(path, json.dumps(document, indent=2) + '\n')


# -- routing ---------------------------------------------------------------------------------

def _hash64(model_name: str, caller_key: str) -> int:
    """sha256 of the model name, a NUL and the key: its first 8 bytes as a big-endian integer.

    Not Python's hash(), which is salted per process: every replica must agree.
    The model name is part of it, so a caller in one model's canary is not
    thereby in every model's canary.
    """
    digest = hashlib.sha256(f'{model_name}\0{caller_key}'.encode('utf-8', 'surrogatepass')).digest()
    return int.from_bytes(digest[:8], 'big')


def canary_position(model_name: str, caller_key: str) -> float:
    """The caller's place in [0, 1) for this model: the caller is in the canary if it is
    below canary_percent / 100."""
    return _hash64(model_name, caller_key) / 2 ** 64


def route(model_name: str, split: Dict[str, float], caller_key: str) -> Optional[str]:
    """The label an unaddressed request for `model_name` goes to: STABLE_LABEL or
    CANARY_LABEL, the same for the same caller; None if the model is not split."""
    percent = split.get(model_name)
    if percent is None:
        return None
    # Compared as integer against float (exact in Python), not as hash / 2**64, which can
    # round up to 1.0: 100 percent is then every caller, 0 percent none.
    return CANARY_LABEL if _hash64(model_name, caller_key) < percent / 100 * 2 ** 64 else STABLE_LABEL


def label_unavailable(error: BaseException) -> bool:
    """Whether `error` is the server saying the label or its version cannot answer (TF
    Serving's and the embedded server's words), not a problem with the request itself."""
    # By code name, as serving.errors.ServingError has it: this module imports no gRPC,
    # so the release registry can use it with the standard library alone.
    code = getattr(error, 'code_name', None)
    if code == 'NOT_FOUND':  # "Servable not found for request: Specific(name, 5)"
        return True
    return code == 'INVALID_ARGUMENT' and 'Unrecognized servable version label' in getattr(error, 'message', '')


class TrafficSplit:
    """The traffic file as a server uses it: re-read when it changes, the last good split kept.

    Malformed at construction: ValueError (the server refuses to start).
    Malformed later: an error is logged and the last good split stays.
    The file is looked at (one stat) at most every `check_seconds`, by
    whichever request comes first.
    """

    def __init__(self, path: str, check_seconds: float = 1.0, retry_seconds: float = 1.0):
        self.path = path
        self.check_seconds = check_seconds
        # A label found unable to answer is not asked again for this long: the
        # gateway's fallback would otherwise cost an upstream call per request.
        self.retry_seconds = retry_seconds
        self._stamp = self._file_stamp()
        self._split = read_split(path)
        if self._stamp is None:
            log.warning('no traffic file at %s yet: no model is split until it appears', path)
        self._next_check = time.monotonic() + check_seconds
        self._lock = threading.Lock()
        self._down: Dict[Tuple[str, Optional[str]], float] = {}  # (model, label) -> retry at

    def _file_stamp(self):
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    @property
    def split(self) -> Dict[str, float]:
        """Model name -> canary percent, as of the latest check."""
        if time.monotonic() >= self._next_check and self._lock.acquire(blocking=False):
            try:  # one request re-reads; the others use the split they have
                self._next_check = time.monotonic() + self.check_seconds
                self.refresh()
            finally:
                self._lock.release()
        return self._split

    def refresh(self) -> bool:
        """Re-reads the file if it changed; whether the split was replaced."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        try:
            split = read_split(self.path)
        except (ValueError, OSError) as e:
            log.error('keeping the last good traffic split %s: %s', self._split, e)
            self._stamp = stamp  # logged once; read again when the file changes again
            return False
        self._stamp = stamp
        if stamp is None and self._split:
            log.warning('traffic file %s was removed: no model is split any more', self.path)
        if split != self._split:
            log.info('traffic split from %s: %s', self.path, split or 'none')
        self._split = split
        return True

    def describe(self) -> str:
        """One line for the server's start-up banner."""
        models = ', '.join(f'{name}: {percent:g}% to {CANARY_LABEL}' for name, percent in sorted(self.split.items()))
        return (f'{models or "no model split yet"} (from {self.path}, re-read when it changes; unaddressed '
                f'requests only, sticky per {CALLER_HEADER})')

    def choose(self, model_name: str, version: Optional[int], label: Optional[str],
               caller_key: str) -> Optional[str]:
        """The split's label for a request, or None when it is served as asked (it names a
        version or a label, or its model is not split)."""
        if version is not None or label:
            return None
        return route(model_name, self.split, caller_key)

    def fallback(self, model_name: str, label: Optional[str],
                 attempt: Callable[[Optional[str]], T]) -> Tuple[T, Optional[str]]:
        """(attempt(label), label) for the first of `label`, then stable, then the latest
        (None) that can answer. Errors other than an unavailable label are raised as they are."""
        chain = _FALLBACK[label]
        for candidate in chain[:-1]:
            key = (model_name, candidate)
            if self._down.get(key, 0) > time.monotonic():
                continue
            try:
                result = attempt(candidate)
            except Exception as e:
                if not label_unavailable(e):
                    raise
                if key not in self._down:
                    log.warning('model %s: label %r cannot answer (%s); its share of the traffic split goes to %s',
                                model_name, candidate, e.message, chain[chain.index(candidate) + 1] or 'the latest '
                                'version')
                self._down[key] = time.monotonic() + self.retry_seconds
                continue
            if self._down.pop(key, None) is not None:
                log.info('model %s: label %r answers again', model_name, candidate)
            return result, candidate
        return attempt(chain[-1]), chain[-1]


def route_call(traffic: Optional[TrafficSplit], call, model_name: str, version: Optional[int],
               label: Optional[str], attempt: Callable[[Optional[str]], T]) -> T:
    """attempt(label) for the label the request is served by, its own or the split's.

    Records on `call` (`serving.core.Call`) the label that answered
    (`call.label`: the request's, the split's, or None for a version or the
    latest) and whether the split chose it (`call.split`).
    """
    choice = traffic.choose(model_name, version, label, call.caller_key) if traffic else None
    if choice is None:
        call.label = label or None
        return attempt(label)
    call.split = True
    result, call.label = traffic.fallback(model_name, choice, attempt)
    return result


def response_headers(call) -> Tuple[Tuple[str, str], ...]:
    """REST headers saying which version, and by which label, answered an inference call."""
    if not call.api or not call.version:
        return ()
    headers = ((VERSION_HEADER, call.version),)
    # An answer whose record the request log shed says so (serving/request_log.py).
    headers += ((LOGGED_HEADER, 'false'),) if not call.logged else ()
    return headers + (((LABEL_HEADER, call.label),) if call.label else ())
