"""Ground truth that arrives after the prediction: an append-only feedback store.

A feedback record names one served example (the request id the server
returned, and the example's position in that request when it carried several)
and what was later observed: a value the label is derived from (a taxi trip's
`tips`) or the label itself. The server does not interpret the values (it
knows no model); the monitor joins them with the request log by request id
and turns them into labels.

Durability: every accepted batch (one POST, one CSV file) becomes one
JSON-lines file of its own, written completely and synced under a temporary
name, then renamed into place (on gs:// an object appears whole or not at
all). A crash leaves whole batches and at worst an ignored temporary file;
no file is ever rewritten, so nothing already stored can be lost.

Records are never merged. A second record for an example already stored is
refused as a duplicate when the writer can see the first (same store), and
reported by `read` when it cannot (two replicas writing one bucket): the
first record stays the one that counts. Whether a request id was ever served
is not decided here (the request log is written asynchronously and possibly
by another replica); the `feedback` command and the monitor check it against
the request log.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
import uuid
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import tensorflow as tf

from foundation.atomic_file import write_atomically

PATTERN = 'feedback-*.jsonl'
REQUEST_ID, EXAMPLE = 'request_id', 'example'
# The one observed name the store understands: the label itself (0 or 1).
LABEL = 'label'
# Record keys the store adds; a caller cannot send them as observed values.
_RESERVED = {REQUEST_ID, EXAMPLE, 'observed', 'received_micros', 'source'}
MAX_REQUEST_ID_CHARS = 128

Key = Tuple[str, int]


class FeedbackError(ValueError):
    """Feedback that cannot be accepted or read; the message says which item or file and why."""


@dataclasses.dataclass(frozen=True)
class Feedback:
    request_id: str
    example: int
    observed: Mapping[str, float]
    received_micros: int = 0
    source: str = ''

    @property
    def key(self) -> Key:
        return self.request_id, self.example

    def to_json(self) -> str:
        return json.dumps({REQUEST_ID: self.request_id, EXAMPLE: self.example, 'observed': dict(self.observed),
                           'received_micros': self.received_micros, 'source': self.source}, sort_keys=True)


def now_micros() -> int:
    return int(time.time() * 1e6)


def parse(item, where: str, allowed: Optional[Iterable[str]] = None) -> Feedback:
    """A Feedback from one submitted item: {"request_id": ..., ["example": i,] name: number, ...}.

    `where` names the item in errors ("item 3", "line 7"); `allowed`, when given, are the only
    observed names accepted (a misspelt column would otherwise be stored, and its correction
    refused as a duplicate). A `label` is 0 or 1.
    """
    if not isinstance(item, Mapping):
        raise FeedbackError(f'{where}: expected an object with "request_id" and an observed value, got {item!r}')
    request_id = item.get(REQUEST_ID)
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > MAX_REQUEST_ID_CHARS:
        raise FeedbackError(f'{where}: "request_id" must be the non-empty id (at most {MAX_REQUEST_ID_CHARS} '
                            f'characters) the server returned in X-Request-Id, got {request_id!r}')
    example = item.get(EXAMPLE, 0)
    if isinstance(example, str) and example.strip().isdigit():
        example = int(example)
    if isinstance(example, bool) or not isinstance(example, int) or example < 0:
        raise FeedbackError(f'{where}: "example" is the example\'s position in the request (0, 1, ...), '
                            f'got {example!r}')
    observed = {}
    for name, value in item.items():
        if name in (REQUEST_ID, EXAMPLE):
            continue
        if name in _RESERVED:
            raise FeedbackError(f'{where}: {name!r} is not an observed value')
        if allowed is not None and name not in allowed:
            raise FeedbackError(f'{where}: {name!r} is not an observed value this model takes: '
                                f'{", ".join(sorted(allowed))}')
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise FeedbackError(f'{where}: observed value {name!r} must be a finite number, got {value!r}')
        if name == LABEL and number not in (0.0, 1.0):
            raise FeedbackError(f'{where}: "label" is 0 or 1, got {value!r}')
        observed[name] = number
    if not observed:
        raise FeedbackError(f'{where}: no observed value for request {request_id!r}: send the label '
                            '(e.g. "label": 1) or what it is derived from (e.g. "tips": 2.5)')
    return Feedback(request_id.strip(), example, observed)


def parse_all(items: Iterable, where: str = 'item', allowed: Optional[Iterable[str]] = None) -> List[Feedback]:
    """Every item parsed, or a FeedbackError for the first bad one (so nothing of a bad batch is stored)."""
    allowed = set(allowed) if allowed is not None else None
    return [parse(item, f'{where} {i}', allowed) for i, item in enumerate(items, 1)]


def _files(directory: str) -> List[str]:
    return sorted(tf.io.gfile.glob(os.path.join(directory, PATTERN))) if tf.io.gfile.isdir(directory) else []


def _read_file(path: str) -> List[Feedback]:
    records = []
    with tf.io.gfile.GFile(path, 'r') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                records.append(Feedback(raw[REQUEST_ID], int(raw[EXAMPLE]), dict(raw['observed']),
                                        int(raw.get('received_micros', 0)), raw.get('source', '')))
            except (ValueError, KeyError, TypeError) as e:
                raise FeedbackError(f'{path}, line {number}: not a feedback record ({e}); the store holds only '
                                    'files this system wrote: move foreign files out of it') from None
    return records


def read(directory: str) -> Tuple[Dict[Key, Feedback], List[Feedback]]:
    """(the first record of each example, in the order received; the later ones, as duplicates)."""
    everything = [r for path in _files(directory) for r in _read_file(path)]
    everything.sort(key=lambda r: r.received_micros)
    first: Dict[Key, Feedback] = {}
    duplicates = []
    for record in everything:
        if record.key in first:
            duplicates.append(record)
        else:
            first[record.key] = record
    return first, duplicates


@dataclasses.dataclass(frozen=True)
class Stored:
    """What `FeedbackStore.append` did with a batch."""

    stored: int
    path: Optional[str]
    duplicates: List[Feedback]


class FeedbackStore:
    """Appends batches to a directory (local or gs://); safe for the server's threads."""

    def __init__(self, directory: str):
        self.directory = directory
        tf.io.gfile.makedirs(directory)
        self._lock = threading.Lock()
        first, _ = read(directory)  # also refuses to start on a store holding foreign files
        self._seen = set(first)

    def append(self, records: List[Feedback], source: str) -> Stored:
        """Stores the records whose example has no feedback yet, in one file; reports the rest.

        Duplicates within the batch are reported too: the first occurrence is stored.
        """
        with self._lock:
            now = now_micros()
            fresh, duplicates, keys = [], [], set()
            for record in records:
                if record.key in self._seen or record.key in keys:
                    duplicates.append(record)
                else:
                    keys.add(record.key)
                    fresh.append(dataclasses.replace(record, received_micros=now, source=source))
            if not fresh:
                return Stored(0, None, duplicates)
            name = f'feedback-{time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1e6))}-{now % 1_000_000:06d}-' \
                   f'{uuid.uuid4().hex[:8]}.jsonl'
            path = os.path.join(self.directory, name)
            text = ''.join(r.to_json() + '\n' for r in fresh)
            if '://' in path:
                with tf.io.gfile.GFile(path, 'w') as f:  # an object store publishes an object whole
                    f.write(text)
            else:
                write_atomically(path, text)
            self._seen.update(keys)
            return Stored(len(fresh), path, duplicates)
