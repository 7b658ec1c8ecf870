"""Counting, reading and decoding the records of gzipped TFRecord files (TFX's Examples splits) in batches:
for the Evaluator's sample, the run's row accounting, and Beam run in process."""

import queue
import threading
from typing import Iterator, List, Optional, Sequence, TypeVar

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
