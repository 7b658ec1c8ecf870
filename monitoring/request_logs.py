"""The model server's request logs, read as Arrow record batches TFDV takes.

The server (serving/telemetry.py) writes one tf.Example per served example:
the features as received, the model's outputs, and `model_name`,
`model_version`, `signature_name`, `request_id`, `caller`, `timestamp_micros`, in
`*.tfrecord` files (a file being written is `*.tfrecord.partial`, never read
here). tfx_bsl's decoder turns them into the columns TFDV's statistics
generators read, typed by the version's schema.
"""

import os
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np

import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders import example_coder

from serving import request_log

MODEL_VERSION, TIMESTAMP, REQUEST_ID = 'model_version', 'timestamp_micros', 'request_id'
EXAMPLE_INDEX = 'example_index'  # position in its request; logs written before it existed read as 0
# Who called (a token's name, else the client's address); logs written before it existed read as null,
# `callers(table)` as UNKNOWN_CALLER.
CALLER = 'caller'
UNKNOWN_CALLER = ''
_META = {MODEL_VERSION: schema_pb2.INT, TIMESTAMP: schema_pb2.INT, REQUEST_ID: schema_pb2.BYTES,
         EXAMPLE_INDEX: schema_pb2.INT, CALLER: schema_pb2.BYTES}
_BATCH = 50_000


class LogError(ValueError):
    """A request log cannot be read; the message names the file."""


def log_files(directory: str) -> List[str]:
    """The completed log files, after completing those a stopped server left (serving/request_log.py)."""
    if not tf.io.gfile.isdir(directory):
        raise LogError(f'no request log directory at {directory}')
    request_log.recover_orphans(directory)
    return sorted(tf.io.gfile.glob(os.path.join(directory, '*.tfrecord')))


def reading_schema(schema: schema_pb2.Schema, outputs: Dict[str, int]) -> schema_pb2.Schema:
    """The version's schema plus the log's metadata and the outputs to read (name -> schema type)."""
    extended = schema_pb2.Schema()
    extended.feature.extend(f for f in schema.feature)
    for name, kind in {**_META, **outputs}.items():
        extended.feature.add(name=name, type=kind)
    return extended


def _records(path: str) -> Iterator[List[bytes]]:
    """The file's records in batches (tf.data batches them in C++; one at a time is slow:
    docs/performance.md#reading-request-logs)."""
    try:
        for batch in tf.data.TFRecordDataset(path).batch(_BATCH).as_numpy_iterator():
            yield list(batch)
    except tf.errors.OpError as e:
        raise LogError(f'{path} is not a readable TFRecord file ({e.message.splitlines()[0]})') from None


def _decode(decoder, records: List[bytes], path: str) -> pa.RecordBatch:
    try:
        return decoder.DecodeBatch(records)
    except Exception as e:  # a record that is not a tf.Example, or a feature of another type
        raise LogError(f"{path} holds records that are not this model's logged tf.Examples ({e})") from None


def scalars(column, default=0) -> np.ndarray:
    """One value per row of a list column whose rows hold one value (`default` where a row holds none)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    # Flattening is only aligned when no row is null or empty (logs from before a field existed).
    if len(column) and column.null_count == 0 and pc.min(pc.list_value_length(column)).as_py() == 1:
        return pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return np.array([v[0] if v else default for v in column.to_pylist()])


def callers(table: pa.Table) -> np.ndarray:
    """Who called, per row, as text (UNKNOWN_CALLER for rows logged before the log named callers)."""
    if CALLER not in table.column_names:
        return np.full(table.num_rows, UNKNOWN_CALLER, dtype=object)
    return np.array([v.decode('utf-8', 'backslashreplace') if isinstance(v, bytes) else str(v)
                     for v in scalars(table.column(CALLER), UNKNOWN_CALLER.encode())], dtype=object)


def read_by_version(directory: str, reading_schema_of: Callable[[int], Optional[schema_pb2.Schema]],
                    start_micros: int, end_micros: int, wanted_ids=frozenset(),
                    wanted_columns: Optional[Dict[str, int]] = None
                    ) -> tuple[Dict[int, pa.Table], Dict[int, int], pa.Table]:
    """Every example served in [start, end), by the version that answered, in one pass:
    (tables of the versions read, example counts of the versions skipped, and every example
    logged at any time whose request id is in `wanted_ids`: feedback arrives later than the
    window its request was served in). The last table has the log's metadata and
    `wanted_columns` (name -> schema type), one row per logged example, in log order.

    Each version's rows are decoded with the schema `reading_schema_of(version)`
    gives (None skips the version, and its examples are counted): the log's
    metadata is decoded first, then only the rows of the window, per version.
    """
    meta = example_coder.ExamplesToRecordBatchDecoder(reading_schema(schema_pb2.Schema(), {}).SerializeToString())
    decoders, batches, skipped, found = {}, {}, {}, []
    wanted = pa.array(sorted(wanted_ids), pa.binary()) if wanted_ids else None
    joined = example_coder.ExamplesToRecordBatchDecoder(
        reading_schema(schema_pb2.Schema(), wanted_columns or {}).SerializeToString())
    for path in log_files(directory):
        for records in _records(path):
            info = _decode(meta, records, path)
            if wanted is not None:
                ids = pa.array(scalars(info.column(info.schema.get_field_index(REQUEST_ID)), b''), pa.binary())
                hits = np.flatnonzero(pc.is_in(ids, value_set=wanted).to_numpy(zero_copy_only=False))
                if len(hits):
                    found.append(_decode(joined, [records[i] for i in hits], path))
            served = pc.list_flatten(info.column(info.schema.get_field_index(TIMESTAMP)))
            versions_served = pc.list_flatten(info.column(info.schema.get_field_index(MODEL_VERSION)))
            in_window = pc.and_(pc.greater_equal(served, start_micros), pc.less(served, end_micros))
            for version in pc.unique(versions_served.filter(in_window)).to_pylist():
                if version not in decoders:
                    schema = reading_schema_of(version)
                    decoders[version] = (example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString())
                                         if schema is not None else None)
                rows = np.flatnonzero(pc.and_(in_window, pc.equal(versions_served, version)).to_numpy(
                    zero_copy_only=False))
                if decoders[version] is None:
                    skipped[version] = skipped.get(version, 0) + len(rows)
                    continue
                batches.setdefault(version, []).append(_decode(decoders[version], [records[i] for i in rows], path))
    logged = pa.Table.from_batches(found).combine_chunks() if found else None
    return ({version: pa.Table.from_batches(parts).combine_chunks() for version, parts in batches.items()}, skipped,
            logged)


def between(table: pa.Table, start_micros: int, end_micros: int) -> pa.Table:
    """The rows served in [start, end)."""
    served = pc.list_flatten(table.column(TIMESTAMP).combine_chunks()) if table.num_rows else pa.array([], pa.int64())
    return table.filter(pc.and_(pc.greater_equal(served, start_micros), pc.less(served, end_micros)))
