"""Counting, reading and decoding the records of gzipped TFRecord files (TFX's Examples splits) in batches:
for the Evaluator's sample, the run's row accounting, and Beam run in process.

Two decodings into Arrow record batches:
- `RecordBatches`: tfx_bsl's decoder, TFXIO's own. It tells a feature an example lacks (a null
  list) from one it holds with no values (an empty list), which TFDV counts apart.
- `ParsedRecordBatches`: `tf.io.parse_example`, for a reader that sees the batches only through a
  TensorAdapter (tf.Transform's analysis). It gives that reader the same tensors: through a dense
  representation it fills defaults where the TensorAdapter fills them and fails where it fails (and
  on an example of the wrong length in a batch whose lengths add up, which the adapter would misread);
  through a varlen sparse one, a null list and an empty one are the same row. It parses on tf.data's
  threads, in C++, while the decoder holds one core per batch
  (docs/performance.md#parsing-for-transforms-analysis).
"""

import queue
import threading
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.util import examples_utils, tfxio_utils
from tfx.proto import example_gen_pb2
from tfx_bsl.coders import example_coder

# Records per dataset step: a step per record costs far more than the record
# (docs/performance.md#reading-records-in-batches).
_BATCH = 4096
# Batches made ahead of their consumer (see `ahead`).
_AHEAD = 2

T = TypeVar('T')


def record_count(files: List[str]) -> int:
    """Records in gzipped TFRecord `files` (0 for none)."""
    batches = tf.data.TFRecordDataset(files, compression_type='GZIP').batch(_BATCH)
    return int(batches.reduce(tf.constant(0, tf.int64),
                              lambda count, batch: count + tf.shape(batch, out_type=tf.int64)[0]).numpy())


def batched(dataset: tf.data.Dataset):
    """A dataset's records as bytes, read in batches (an eager step per record is slow: see `_BATCH`)."""
    for batch in dataset.batch(_BATCH):
        yield from batch.numpy()


def gzipped_examples(examples: List[types.Artifact]) -> bool:
    """True when Examples artifacts hold gzipped tf.Example records and no data view: what RecordBatches reads."""
    return (all(examples_utils.get_file_format(e) == 'tfrecords_gzip' for e in examples)
            and tfxio_utils.resolve_payload_format_and_data_view_uri(examples)
            == (example_gen_pb2.FORMAT_TF_EXAMPLE, None))


def records(patterns: Sequence[str]) -> tf.data.Dataset:
    """The records of the gzipped TFRecord files `patterns` match, file by file in name order."""
    files = [f for pattern in patterns for f in sorted(tf.io.gfile.glob(pattern))]
    return tf.data.TFRecordDataset(files, compression_type='GZIP')


def ahead(items: Iterator[T], depth: int = _AHEAD) -> Iterator[T]:
    """`items`, in order, made by a thread up to `depth` ahead of the caller.

    tfx_bsl's decoder (and encoder) release Python's lock while they work, so a batch
    is decoded on the machine's other core while TFDV or tf.Transform works on the one
    before (docs/performance.md#decoding-ahead). An error raised making an item is raised
    here, in its place; a caller that stops early stops the thread.
    """
    done = object()
    made: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry) -> bool:  # False once the caller has stopped: nothing waits for the entry then
        while not stop.is_set():
            try:
                made.put(entry, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def make() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((done, None))
        except BaseException as e:  # handed to the caller, raised where the item would have been
            offer((done, e))

    thread = threading.Thread(target=make, name='record-files-ahead', daemon=True)
    thread.start()
    try:
        while True:
            item, error = made.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _decoded(patterns: Sequence[str], schema: Optional[bytes], batch_size: int,
             sample_rate: Optional[float] = None, sample_seed: Optional[int] = None) -> Iterator[pa.RecordBatch]:
    return ahead(_decode(patterns, schema, batch_size, sample_rate, sample_seed))


def _decode(patterns: Sequence[str], schema: Optional[bytes], batch_size: int,
            sample_rate: Optional[float] = None, sample_seed: Optional[int] = None) -> Iterator[pa.RecordBatch]:
    decoder = example_coder.ExamplesToRecordBatchDecoder(schema)
    if sample_rate is None:
        for batch in records(patterns).batch(batch_size).prefetch(1):
            yield decoder.DecodeBatch(batch.numpy())
        return
    # Each record kept with probability sample_rate, on its own, before decoding; the kept
    # records are decoded in batches of batch_size.
    draws = np.random.default_rng(sample_seed)
    kept: List[bytes] = []
    for batch in records(patterns).batch(_BATCH).prefetch(1):
        serialized = batch.numpy()
        kept.extend(serialized[draws.random(len(serialized)) < sample_rate])
        while len(kept) >= batch_size:
            yield decoder.DecodeBatch(kept[:batch_size])
            del kept[:batch_size]
    if kept:
        yield decoder.DecodeBatch(kept)


_ParseSpec = Dict[str, Union[tf.io.FixedLenFeature, tf.io.VarLenFeature]]
_TF_TYPES = {pa.large_list(pa.float32()): tf.float32, pa.large_list(pa.int64()): tf.int64,
             pa.large_list(pa.large_binary()): tf.string}


def parse_spec(tensor_representations: Mapping[str, schema_pb2.TensorRepresentation],
               arrow_schema: pa.Schema) -> Optional[_ParseSpec]:
    """The `tf.io.parse_example` spec that gives, column by column, the tensors the TensorAdapter of
    `tensor_representations` over `arrow_schema` (TFXIO's TensorAdapterConfig) makes of tfx_bsl's
    batches; None where that cannot be said (a representation other than dense or varlen sparse, a column
    of another type or in two representations): the caller decodes with `RecordBatches` then.

    A dense representation parses as a FixedLenFeature with its default, or none: a default fills where
    the adapter fills it (a lacking feature), and parse_example fails on an example with another number
    of values than the shape holds, or lacking the feature without a default. The adapter fails on those
    too, but checks a batch's total: an example short and another long by as much, it would misread.
    """
    spec: _ParseSpec = {}
    for representation in tensor_representations.values():
        kind = representation.WhichOneof('kind')
        column = (representation.dense_tensor.column_name if kind == 'dense_tensor'
                  else representation.varlen_sparse_tensor.column_name if kind == 'varlen_sparse_tensor' else None)
        if column is None or column in spec or arrow_schema.get_field_index(column) < 0:
            return None
        dtype = _TF_TYPES.get(arrow_schema.field(column).type)
        if dtype is None:
            return None
        if kind == 'varlen_sparse_tensor':
            spec[column] = tf.io.VarLenFeature(dtype)
            continue
        dense = representation.dense_tensor
        shape = [d.size for d in dense.shape.dim]
        default = None
        if dense.HasField('default_value'):
            # The adapter fills a lacking feature with the default repeated to the shape.
            default = [getattr(dense.default_value, dense.default_value.WhichOneof('kind'))] * int(np.prod(shape))
        spec[column] = tf.io.FixedLenFeature(shape, dtype, default)
    return spec


def _as_lists(tensor: Union[tf.Tensor, tf.SparseTensor], value_type: pa.DataType) -> pa.Array:
    """A batch's parsed feature as the Arrow list array tfx_bsl's decoder would make of it (a row per
    example; the rows a sparse feature lacks are empty lists, which a TensorAdapter reads as null ones)."""
    if isinstance(tensor, tf.SparseTensor):
        rows = int(tensor.dense_shape[0])
        # parse_example orders a sparse feature's values by example.
        counts = np.bincount(tensor.indices[:, 0].numpy(), minlength=rows)
        values = tensor.values.numpy()
    else:
        array = tensor.numpy()
        rows, width = array.shape[0], int(np.prod(array.shape[1:], dtype=np.int64))
        counts, values = np.full(rows, width, np.int64), array.reshape(-1)
    offsets = np.zeros(rows + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def _parsed(patterns: Sequence[str], spec: _ParseSpec, arrow_schema: pa.Schema,
            batch_size: int) -> Iterator[pa.RecordBatch]:
    dataset = (records(patterns).batch(batch_size)
               .map(lambda serialized: tf.io.parse_example(serialized, spec),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .prefetch(1))
    for parsed in dataset:
        yield pa.RecordBatch.from_arrays([_as_lists(parsed[f.name], f.type.value_type) for f in arrow_schema],
                                         schema=arrow_schema)


@beam.ptransform_fn
def ParsedRecordBatches(pipeline: beam.Pipeline, patterns: Sequence[str], spec: _ParseSpec,  # noqa: N802
                        arrow_schema: pa.Schema, batch_size: int) -> beam.PCollection:
    """The tf.Examples in the files `patterns` match, as Arrow record batches of `arrow_schema` and
    `batch_size` rows, parsed by `spec` (`parse_spec`): for a reader that sees them only through
    the TensorAdapter `spec` was made for. For Beam in process only, as `RecordBatches`."""
    return (pipeline
            | 'Patterns' >> beam.Create([list(patterns)])
            | 'ReadAndParse' >> beam.FlatMap(_parsed, spec, arrow_schema, batch_size))


@beam.ptransform_fn
def RecordBatches(pipeline: beam.Pipeline, patterns: Sequence[str],  # noqa: N802
                  schema: Optional[schema_pb2.Schema], batch_size: int,
                  sample_rate: Optional[float] = None, sample_seed: Optional[int] = None) -> beam.PCollection:
    """The tf.Examples in the files `patterns` match, decoded by `schema` (without one, with types
    inferred from the data) into Arrow record batches of `batch_size` rows, as TFXIO's `BeamSource`
    gives them (the same decoder). With `sample_rate`, a sample of them: each record kept with that
    probability, independently (a Bernoulli sample), in batches of `batch_size` kept rows; the same
    `sample_seed` draws the same sample of the same files, None fresh random numbers every run.

    For Beam in process only: one DoFn reads every file through tf.data. TFXIO's
    source reads with Beam's Python TFRecord reader (Python CRC and gunzip) and
    batches records one by one, which on one machine is most of the time of a pass
    (docs/performance.md#beams-io-in-process); on a distributed runner its splittable
    source is what spreads the reading.
    """
    serialized = None if schema is None else schema.SerializeToString()
    return (pipeline
            | 'Patterns' >> beam.Create([list(patterns)])
            | 'ReadAndDecode' >> beam.FlatMap(_decoded, serialized, batch_size, sample_rate, sample_seed))
