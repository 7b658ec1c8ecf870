"""The model server's request logs, read as Arrow record batches TFDV takes.

The server (serving/telemetry.py) writes one tf.Example per served example:
the features as received, the model's outputs, and `model_name`,
`model_version`, `signature_name`, `request_id`, `timestamp_micros`, in
`*.tfrecord` files (a file being written is `*.tfrecord.partial`, never read
here). tfx_bsl's decoder turns them into the columns TFDV's statistics
generators read, typed by the version's schema.
"""

import os
from typing import Dict, Iterator, List

import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders import example_coder

MODEL_VERSION, TIMESTAMP, REQUEST_ID = 'model_version', 'timestamp_micros', 'request_id'
_META = {MODEL_VERSION: schema_pb2.INT, TIMESTAMP: schema_pb2.INT, REQUEST_ID: schema_pb2.BYTES}
_BATCH = 50_000


class LogError(ValueError):
    """A request log cannot be read; the message names the file."""


def log_files(directory: str) -> List[str]:
    if not tf.io.gfile.isdir(directory):
        raise LogError(f'no request log directory at {directory}')
    return sorted(tf.io.gfile.glob(os.path.join(directory, '*.tfrecord')))


def reading_schema(schema: schema_pb2.Schema, outputs: Dict[str, int]) -> schema_pb2.Schema:
    """The version's schema plus the log's metadata and the outputs to read (name -> schema type)."""
    extended = schema_pb2.Schema()
    extended.feature.extend(f for f in schema.feature)
    for name, kind in {**_META, **outputs}.items():
        extended.feature.add(name=name, type=kind)
    return extended


def _records(path: str) -> Iterator[List[bytes]]:
    batch = []
    try:
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            batch.append(record)
            if len(batch) == _BATCH:
                yield batch
                batch = []
    except tf.errors.OpError as e:
        raise LogError(f'{path} is not a readable TFRecord file ({e.message.splitlines()[0]})') from None
    if batch:
        yield batch


def read(directory: str, schema: schema_pb2.Schema, start_micros: int, end_micros: int) -> pa.Table:
    """Every logged example served in [start, end), as a table with `schema`'s columns."""
    decoder = example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString())
    batches = []
    for path in log_files(directory):
        for records in _records(path):
            try:
                batch = decoder.DecodeBatch(records)
            except Exception as e:  # a record that is not a tf.Example
                raise LogError(f'{path} holds records that are not tf.Examples ({e})') from None
            served = _single_values(batch, TIMESTAMP)
            keep = pc.and_(pc.greater_equal(served, start_micros), pc.less(served, end_micros))
            batches.append(batch.filter(keep))
    return pa.Table.from_batches(batches, schema=decoder.ArrowSchema()).combine_chunks() if batches else \
        decoder.ArrowSchema().empty_table()


def _single_values(batch, name: str) -> pa.Array:
    """A column every log record has exactly one value of, as a flat array."""
    column = batch.column(batch.schema.get_field_index(name))
    return pc.list_flatten(column) if len(column) else pa.array([], pa.int64())


def versions(table: pa.Table) -> Dict[int, pa.Table]:
    """The table split by the model version that answered."""
    if not table.num_rows:
        return {}
    column = pc.list_flatten(table.column(MODEL_VERSION).combine_chunks())
    return {int(v): table.filter(pc.equal(column, v)) for v in pc.unique(column).to_pylist()}
