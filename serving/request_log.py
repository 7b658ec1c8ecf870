"""The request log: every answered request, as tf.Examples in TFRecord files, kept as an audit record.

One tf.Example per served example (the layout is `telemetry.log_examples`'s, which stays the
reference encoding): the features as received, less declared missing-value markers, each
output, and `model_name`, `model_version`, `signature_name`, `request_id`, `caller` (the token's
name, else the client's address: `core.Call.identity`), `example_index`, `timestamp_micros`. The
form `tfdv.generate_statistics_from_tfrecord` reads.

What a regulated user may rely on (docs in serving/README.md, "Request log"):

- Exactly once. A record is queued before the answer is sent and written once; files are
  renamed, never copied. A file being written is `*.tfrecord.partial`; readers glob
  `*.tfrecord`.
- Nothing silently lost. When the writer falls behind, `overflow` decides: `block` (the
  default) makes the request wait for room, up to `block_seconds`, then fails it with
  UNAVAILABLE, so no answer goes out unlogged; `shed` answers and says so
  (`X-Request-Logged: false`, gRPC trailing metadata `x-request-logged: false`). Either way a
  metric counts it.
- Crashes. Written records are flushed to the OS after every batch the writer takes (it gathers
  for up to 50 ms, then encodes them together), so a SIGKILL loses what sat in the queue: the
  last tens of milliseconds when the writer keeps up. The
  writer holds an exclusive lock on its `.partial` file; a `.partial` nobody holds is an
  orphan of a dead writer, and `recover_orphans` (run when a logger starts, and by the
  monitor before it reads) cuts it after its last complete record and completes it. Files
  rotate every `rotate_seconds` (default 10 s), which bounds what a filesystem without locks
  (an object store) can lose.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import queue
import struct
import threading
import time
import uuid
from typing import List, Mapping, Optional, Sequence, Tuple

import grpc
import numpy as np
import pyarrow as pa
import tensorflow as tf
from tfx_bsl.coders import example_coder

from serving.errors import ServingError
from serving.telemetry import EXAMPLE_INDEX, Metrics, batch_size, log_examples

log = logging.getLogger(__name__)

PARTIAL = '.partial'
# A file is created under this suffix, locked, then renamed to `.partial`: a `.partial` is
# locked from the moment it exists, so an unlocked one is always an orphan.
_CREATING = '.creating'
OVERFLOW_POLICIES = ('block', 'shed')
# Records the writer takes from the queue at once (one encode, one write, one flush), and how long it
# waits to gather them: the bound on how long an answered request's record stays unwritten.
_CHUNK = 512
_GATHER_SECONDS = 0.05


# -- encoding: Arrow columns to tf.Examples in C++ (tfx_bsl), many requests at once ---------------
# (docs/performance.md#request-log has its rate against the per-example reference encoding)

def _group_key(record) -> tuple:
    meta, inputs, outputs, serialized_input, missing = record
    shapes = tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted({**inputs, **outputs}.items()))
    return shapes, serialized_input, tuple(sorted(missing.items()))


def _offsets(counts: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.array(offsets)


def _column(arrays: Sequence[np.ndarray], rule: Optional[str]) -> pa.Array:
    """One feature for every example of the grouped requests: a list per example, values kept
    as `telemetry._feature` keeps them; an example left with none has no feature (null)."""
    values = np.concatenate([np.reshape(a, (len(a), -1)) for a in arrays])
    rows, width = values.shape
    flat = values.reshape(-1)
    keep = None  # every value kept
    if flat.dtype == object or flat.dtype.kind in 'SU':
        flat = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
        if rule == 'empty':
            keep = np.fromiter((v != b'' for v in flat), bool, len(flat))
        kind = pa.binary()
    elif flat.dtype.kind == 'f':
        keep = ~np.isnan(flat) if rule == 'nan' else ~(flat < 0) if rule == 'negative' else None
        flat, kind = flat.astype(np.float32, copy=False), pa.float32()
    elif flat.dtype.kind in 'iub':
        keep = flat >= 0 if rule == 'negative' else None
        flat, kind = flat.astype(np.int64, copy=False), pa.int64()
    else:
        raise TypeError(f'cannot log values of type {flat.dtype}')
    if keep is None or keep.all():  # the common case: a fixed number of values per example
        return pa.ListArray.from_arrays(pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32)),
                                        pa.array(flat, kind))
    counts = keep.reshape(rows, width).sum(axis=1)
    kept = [v for v, k in zip(flat, keep) if k] if kind == pa.binary() else flat[keep]
    return pa.ListArray.from_arrays(_offsets(counts), pa.array(kept, kind), mask=pa.array(counts == 0))


def _without_nulls(columns: List[pa.Array], names: List[str], total: int) -> List[bytes]:
    """tf.Examples of the columns, leaving a feature out of an example where its entry is null.

    The encoder would write such a feature with no values; the reference encoding leaves it out
    (a reader walking the features would meet one with no kind). Rows are encoded in groups by
    which columns are null for them, each group without those columns."""
    nullable = [i for i, column in enumerate(columns) if column.null_count]
    if not nullable:
        return example_coder.RecordBatchToExamples(pa.RecordBatch.from_arrays(columns, names))
    nulls = np.stack([columns[i].is_null().to_numpy(zero_copy_only=False) for i in nullable], axis=1)
    patterns, group = np.unique(nulls, axis=0, return_inverse=True)
    encoded: List[bytes] = [b''] * total
    for g, pattern in enumerate(patterns):
        rows = pa.array(np.flatnonzero(group.reshape(-1) == g))
        dropped = {nullable[j] for j in np.flatnonzero(pattern)}
        kept = [i for i in range(len(columns)) if i not in dropped]
        subset = pa.RecordBatch.from_arrays([columns[i].take(rows) for i in kept], [names[i] for i in kept])
        for row, example in zip(rows.to_pylist(), example_coder.RecordBatchToExamples(subset)):
            encoded[row] = example
    return encoded


def _encode_group(records) -> List[bytes]:
    first = records[0]
    _, inputs, outputs, serialized_input, missing = first
    sizes = [batch_size(r[1], r[2]) for r in records]
    total = sum(sizes)
    names, columns = [], []
    for name in sorted(outputs):
        names.append(name)
        columns.append(_column([r[2][name] for r in records], None))
    if serialized_input is None:
        for name in sorted(inputs):
            names.append(name)
            columns.append(_column([r[1][name] for r in records], missing.get(name)))
    one_each = _offsets(np.ones(total, np.int64))
    for name in first[0]:
        if isinstance(first[0][name], int):
            values = pa.array(np.repeat(np.array([r[0][name] for r in records], np.int64), sizes))
        else:  # each request's value encoded once, then repeated for its examples
            values = pa.array(np.repeat(np.array([str(r[0][name]).encode() for r in records], object), sizes),
                              pa.binary())
        names.append(name)
        columns.append(pa.ListArray.from_arrays(one_each, values))
    names.append(EXAMPLE_INDEX)
    columns.append(pa.ListArray.from_arrays(one_each, pa.array(np.concatenate([np.arange(s) for s in sizes]))))
    encoded = _without_nulls(columns, names, total)
    if serialized_input is None:
        return encoded
    # A serialized message followed by another is their merge (protobuf's encoding): the example as
    # the client sent it, with the outputs and metadata added, without parsing it.
    received = [example for r in records for example in r[1][serialized_input]]
    return [bytes(sent) + added for sent, added in zip(received, encoded)]


def encode(records: Sequence) -> List[bytes]:
    """Serialized tf.Examples for queued records (see `telemetry.log_examples`), in order."""
    out: List[bytes] = []
    i = 0
    while i < len(records):
        record = records[i]
        if batch_size(record[1], record[2]) is None:  # not a batch: the reference path, one example
            out.extend(e.SerializeToString() for e in log_examples(record))
            i += 1
            continue
        key, j = _group_key(record), i + 1
        while j < len(records) and batch_size(records[j][1], records[j][2]) is not None \
                and _group_key(records[j]) == key:
            j += 1
        out.extend(_encode_group(records[i:j]))
        i = j
    return out


# -- files ------------------------------------------------------------------------------------------

def _local(path: str) -> bool:
    return '://' not in path


def _complete_prefix(path: str) -> Tuple[int, int]:
    """(bytes, records) of the file's leading complete TFRecords: length, its CRC, data, its CRC."""
    size = os.path.getsize(path)
    offset = records = 0
    with open(path, 'rb') as f:
        while offset + 12 <= size:
            f.seek(offset)
            (length,) = struct.unpack('<Q', f.read(8))
            end = offset + 12 + length + 4
            if end > size:
                break
            offset, records = end, records + 1
    return offset, records


@dataclasses.dataclass
class Recovered:
    files: int = 0
    records: int = 0


def recover_orphans(directory: str) -> Recovered:
    """Completes the `.partial` files no writer holds: cut after the last complete record, renamed
    to `.tfrecord` (removed if empty). Local filesystems only (an object store has no locks)."""
    recovered = Recovered()
    if not _local(directory) or not os.path.isdir(directory):
        return recovered
    for name in sorted(os.listdir(directory)):
        if not name.endswith(('.tfrecord' + PARTIAL, '.tfrecord' + _CREATING)):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # completed meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live writer's
                continue
            if not os.path.exists(path):  # completed between open and lock
                continue
            if name.endswith(_CREATING):  # its writer stopped before writing anything
                os.remove(path)
                continue
            length, records = _complete_prefix(path)
            os.truncate(path, length)
            target = path[:-len(PARTIAL)]
            if records:
                os.rename(path, target)
                recovered.files += 1
                recovered.records += records
                log.warning('recovered %d request log records from %s, left by a writer that stopped', records,
                            name)
            else:
                os.remove(path)
        finally:
            os.close(fd)
    return recovered


class _File:
    """The file being written: its writer, and (local files) the lock that marks it as alive."""

    def __init__(self, path: str):
        self.path, self.count, self.opened = path, 0, time.monotonic()
        self._lock_fd = None
        if _local(path):
            # Locked before it is a `.partial`, so no recoverer takes a live file for an orphan
            # (the lock is the open file's, and survives the rename).
            self._lock_fd = os.open(path + _CREATING, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            os.rename(path + _CREATING, path + PARTIAL)
        self.writer = tf.io.TFRecordWriter(path + PARTIAL)

    def write(self, records: List[bytes]) -> None:
        for record in records:
            self.writer.write(record)
        self.writer.flush()
        self.count += len(records)

    def finish(self) -> None:
        self.writer.close()
        try:
            if self.count:
                tf.io.gfile.rename(self.path + PARTIAL, self.path, overwrite=False)
            else:
                tf.io.gfile.remove(self.path + PARTIAL)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)


class RequestLogger:
    """Writes served examples to rotating TFRecord files in `directory`."""

    def __init__(self, directory: str, metrics: Metrics, overflow: str = 'block', block_seconds: float = 5.0,
                 max_records_per_file: int = 100_000, rotate_seconds: float = 10.0, queue_size: int = 10_000):
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f'request log overflow must be one of {", ".join(OVERFLOW_POLICIES)}, not {overflow!r}')
        self.directory = directory
        tf.io.gfile.makedirs(directory)
        self.overflow, self.block_seconds = overflow, block_seconds
        self._metrics = metrics
        self._max_records, self._rotate_seconds = max_records_per_file, rotate_seconds
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._sequence = 0
        self._writer_id = uuid.uuid4().hex[:12]
        self.recovered = recover_orphans(directory)
        if self.recovered.records:
            metrics.log_recovered.inc(self.recovered.records)
        self._thread = threading.Thread(target=self._loop, name='request-log', daemon=True)
        self._thread.start()

    def log(self, model_name: str, version: int, signature_name: str, request_id: str,
            inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
            serialized_input: Optional[str] = None, missing: Optional[Mapping[str, str]] = None,
            caller: str = '') -> bool:
        """Queues one request's examples: True if queued; False if shed (the caller says so in its
        answer). Under `block`, raises UNAVAILABLE if no room came within `block_seconds`. `caller`:
        who called (a token's name or a client address; '' unknown)."""
        meta = {'model_name': model_name, 'model_version': int(version), 'signature_name': signature_name,
                'request_id': request_id, 'caller': caller or '', 'timestamp_micros': int(time.time() * 1e6)}
        record = (meta, dict(inputs), dict(outputs), serialized_input, dict(missing or {}))
        try:
            if self.overflow == 'block':
                try:
                    self._queue.put_nowait(record)
                except queue.Full:
                    started = time.perf_counter()
                    self._queue.put(record, timeout=self.block_seconds)
                    self._metrics.log_blocked_seconds.inc(time.perf_counter() - started)
            else:
                self._queue.put_nowait(record)
            return True
        except queue.Full:
            if self.overflow == 'shed':
                self._metrics.log_dropped.labels('shed').inc()
                return False
            self._metrics.log_dropped.labels('refused').inc()
            raise ServingError(grpc.StatusCode.UNAVAILABLE,
                               f'The request log is full (no room within {self.block_seconds:g} s): the request was '
                               'not answered, so that no answer goes unlogged; retry later') from None

    def _open(self) -> _File:
        self._sequence += 1
        stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
        # Replicas write one directory, and in a container every server is pid 1: the writer's
        # own random id keeps names apart.
        return _File(os.path.join(self.directory, f'requests-{stamp}-{self._writer_id}-{self._sequence:05d}.tfrecord'))

    def _take(self) -> Tuple[list, bool]:
        """Up to _CHUNK queued records (waiting up to a second for the first, then up to _GATHER_SECONDS
        for more: encoding many at once is what makes it cheap); and whether to stop."""
        try:
            first = self._queue.get(timeout=1.0)
        except queue.Empty:
            return [], False
        if first is None:
            return [], True
        records, deadline = [first], time.monotonic() + _GATHER_SECONDS
        while len(records) < _CHUNK:
            try:
                record = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if record is None:
                return records, True
            records.append(record)
        return records, False

    def _loop(self) -> None:
        current: Optional[_File] = None
        while True:
            records, stop = self._take()
            try:
                if current and (stop or current.count >= self._max_records
                                or time.monotonic() - current.opened >= self._rotate_seconds):
                    current.finish()
                    current = None
                if records:
                    encoded = encode(records)
                    if current is None:
                        current = self._open()
                    current.write(encoded)
                    self._metrics.log_records.inc(len(encoded))
                if stop:
                    if current:
                        current.finish()
                    return
            except Exception:  # a full disk or a bad record must not stop logging for good
                log.exception('request logging failed; %d request(s) not logged; continuing with a new file',
                              len(records))
                self._metrics.log_dropped.labels('failed').inc(len(records))
                current = None
                if stop:
                    return

    def close(self, timeout: float = 30.0) -> bool:
        """Writes what is queued and completes the current file; False if that did not finish in time."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.error('request log did not drain; some records are lost')
            return False
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()
