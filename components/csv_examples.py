"""CsvExampleGen's executor, vectorised with Arrow when Beam runs in process.

TFX's CSV executor spends far more Python on every row than parsing the CSV
costs (docs/performance.md#tfxs-csv-executor): it parses each line,
infers types cell by cell, builds a tf.Example proto, serialises it to hash the
split, and serialises it again to write it. This executor writes the same
artifact from Arrow columns:

- the same tf.Examples: TFX's own type inference (`_InferValueType`, widest
  type over the column) and TFX's own cell handlers, applied once per distinct
  value of a column instead of once per cell;
- the same bytes: each feature is TFX's deterministic serialisation of that
  feature, and an Example is them concatenated in key order, which is what
  `SerializeToString(deterministic=True)` gives; so the SHA-256 hash split puts
  every row in the split TFX's executor puts it in;
- the same files: gzipped TFRecords named as WriteSplit names them under
  Split-<name>/, with the same split names, payload and file format properties.

It reads in blocks, so memory stays bounded by the block, not the span: one
pass infers the column types (TFX infers over all rows too), a second writes.

Anything it does not mirror goes to TFX's executor unchanged: Beam on a remote
runner (Dataflow scales ExampleGen out), input splits without an output split
config, a partition feature, or Parquet output. CSV quoting follows RFC 4180
(Arrow's parser); TFX's csv module tolerates some malformed quoting differently.
"""

import hashlib
import itertools
import os
from typing import Any, Dict, Iterator, List

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.example_gen import utils, write_split
from tfx.components.example_gen.csv_example_gen import component as csv_component
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.components.util import examples_utils
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils
from tfx_bsl.coders import csv_decoder

from components import beam_runner

ColumnType = csv_decoder.ColumnType

# TFX's handlers: an empty cell is a feature with an empty value list.
_HANDLERS = {ColumnType.INT: csv_executor._int_handler,  # pylint: disable=protected-access
             ColumnType.FLOAT: csv_executor._float_handler,  # pylint: disable=protected-access
             ColumnType.STRING: csv_executor._bytes_handler}  # pylint: disable=protected-access

# Arrow parses a block of this size at a time (several threads on one block) and reads several ahead: the
# block bounds ExampleGen's memory (docs/performance.md#examplegens-blocks-and-split-hashing).
BLOCK_BYTES = 8 << 20
# WriteSplit's names: beam.io.WriteToTFRecord with prefix data_tfrecord and suffix .gz.
SHARD_NAME = 'data_tfrecord-00000-of-00001.gz'
# zlib's fastest level: gzip as TFX writes it, files about a quarter larger, written in three
# quarters of the time and read as fast (docs/performance.md#examples-compression).
_WRITE_OPTIONS = tf.io.TFRecordOptions(compression_type='GZIP', compression_level=1)


def _mirrored(input_config: example_gen_pb2.Input, output_config: example_gen_pb2.Output,
              exec_properties: Dict[str, Any]) -> bool:
    file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
    payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    return (len(input_config.splits) == 1 and bool(output_config.split_config.splits)
            and not output_config.split_config.HasField('partition_feature_name')
            and file_format in (None, example_gen_pb2.FILE_FORMAT_UNSPECIFIED, example_gen_pb2.FORMAT_TFRECORDS_GZIP)
            and payload_format in (None, example_gen_pb2.FORMAT_TF_EXAMPLE))


class Executor(csv_executor.Executor):
    """TFX's CSV executor, with the in-process case done in columns."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        for artifact in output_dict[standard_component_specs.EXAMPLES_KEY]:
            record_span(exec_properties, artifact)
        if not (beam_runner.in_process(self._beam_pipeline_args or []) and _mirrored(input_config, output_config, exec_properties)):
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        outputs = output_dict[standard_component_specs.EXAMPLES_KEY]
        split_names = utils.generate_output_split_names(input_config, output_config)
        artifact_utils.get_single_instance(outputs).split_names = artifact_utils.encode_split_names(split_names)
        files = csv_files(os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                                       input_config.splits[0].pattern))
        buckets, total = [], 0
        for split in output_config.split_config.splits:
            total += split.hash_buckets
            buckets.append(total)
        counts = write_splits(files, buckets, [artifact_utils.get_split_uri(outputs, name) for name in split_names])
        logging.info('Examples generated: %s', ', '.join(f'{n} {c:,}' for n, c in zip(split_names, counts)))
        for artifact in outputs:
            _set_formats(artifact, exec_properties)


def _set_formats(artifact: types.Artifact, exec_properties: Dict[str, Any]) -> None:
    """The payload and file format properties TFX's executor sets."""
    payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload_format:
        examples_utils.set_payload_format(artifact, payload_format)
    file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
    if file_format:
        examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))


def record_span(exec_properties: Dict[str, Any], artifact: types.Artifact) -> None:
    """The driver's span, version and input fingerprint on the Examples artifact.

    LocalDagRunner's ExampleGen driver sets them on the artifact itself; on
    Kubeflow the driver's results reach the executor only as exec properties
    (TFX's entry point provisions outputs from the ExecutorInput, not from the
    driver's ExecutorOutput), numbers as doubles. Without this, a Kubeflow
    run's Examples would have no span, which the triggers and reports read.
    """
    if exec_properties.get(utils.SPAN_PROPERTY_NAME) is None:
        return
    artifact.span = int(exec_properties[utils.SPAN_PROPERTY_NAME])
    if exec_properties.get(utils.VERSION_PROPERTY_NAME) is not None:
        artifact.version = int(exec_properties[utils.VERSION_PROPERTY_NAME])
    if exec_properties.get(utils.FINGERPRINT_PROPERTY_NAME):
        artifact.set_string_custom_property(utils.FINGERPRINT_PROPERTY_NAME,
                                            exec_properties[utils.FINGERPRINT_PROPERTY_NAME])


def csv_files(pattern: str) -> List[str]:
    """The files of a split, all with the first one's header (TFX's checks and messages)."""
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise RuntimeError(f'Split pattern {pattern} does not match any files.')
    names = io_utils.load_csv_column_names(files[0])
    for path in files[1:]:
        if io_utils.load_csv_column_names(path) != names:
            raise RuntimeError(f'Files in same split {pattern} have different header.')
    return files


def _check_quotes(path: str) -> None:
    """TFX's executor refuses a file whose last record leaves a quote open; Arrow would
    read to the end of the file as one value. Every record closes its quotes, so the
    file's body has an even number of them."""
    quotes = 0
    with tf.io.gfile.GFile(path, 'rb') as f:
        f.readline()  # the header
        while chunk := f.read(BLOCK_BYTES):
            quotes += chunk.count(b'"')
    if quotes % 2:
        raise ValueError(f'Invalid CSV in {path}: a quoted value is never closed (unbalanced quotes)')


def _blocks(path: str, names: List[str]) -> Iterator[pa.RecordBatch]:
    """Every cell as a string, an empty one as null; the header skipped."""
    source = path if '://' not in path else tf.io.gfile.GFile(path, 'rb')
    try:
        yield from pcsv.open_csv(
            source,
            read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES, skip_rows=1, column_names=names),
            # A quoted value may span lines, as TFX's executor allows.
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                                null_values=[''], strings_can_be_null=True,
                                                quoted_strings_can_be_null=True))
    except pa.ArrowInvalid as error:
        raise ValueError(f'Invalid CSV in {path}: {error}') from error


def column_types(files: List[str]) -> Dict[str, ColumnType]:
    """TFX's inference: each column the widest of its values' types (INT < FLOAT < STRING)."""
    names = io_utils.load_csv_column_names(files[0])
    seen: Dict[str, set] = {name: set() for name in names}
    kinds = {name: ColumnType.UNKNOWN for name in names}
    for path in files:
        _check_quotes(path)
        for block in _blocks(path, names):
            for name in names:
                if kinds[name] == ColumnType.STRING:
                    continue  # as wide as it gets
                new = set(pc.unique(block.column(name)).drop_null().to_pylist()) - seen[name]
                seen[name] |= new
                kinds[name] = max([kinds[name]] + [csv_decoder._InferValueType(v.encode())  # pylint: disable=protected-access
                                                   for v in new])
    return kinds


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _Column:
    """One column's feature entries, each serialised once per distinct cell."""

    def __init__(self, name: str, kind: ColumnType):
        self._name, self._handler = name, _HANDLERS.get(kind)
        self._entries: Dict[str, bytes] = {}
        self._empty = self._entry(b'')

    def _entry(self, cell: bytes) -> bytes:
        feature = self._handler(cell) if self._handler else tf.train.Feature()
        return tf.train.Features(feature={self._name: feature}).SerializeToString(deterministic=True)

    def entries(self, cells: pa.Array) -> pa.Array:
        encoded = pc.dictionary_encode(cells)
        values = encoded.dictionary.to_pylist()
        table = [self._entries.get(v) or self._entries.setdefault(v, self._entry(v.encode())) for v in values]
        table.append(self._empty)
        return pc.take(pa.array(table, pa.binary()), pc.fill_null(encoded.indices, len(values)))


def _serialized(block: pa.RecordBatch, columns: Dict[str, _Column]) -> List[bytes]:
    """Each row's tf.Example, as SerializeToString(deterministic=True) writes it."""
    if block.num_rows == 0:
        return []
    body = pc.binary_join_element_wise(*[columns[name].entries(block.column(name)) for name in sorted(columns)],
                                       pa.scalar(b'', pa.binary()))
    lengths = pc.dictionary_encode(pc.binary_length(body))
    heads = pa.array([b'\n' + _varint(n) for n in lengths.dictionary.to_pylist()], pa.binary())
    return pc.binary_join_element_wise(pc.take(heads, lengths.indices), body,
                                       pa.scalar(b'', pa.binary())).to_pylist()


def split_indexes(records: List[bytes], buckets: List[int]) -> np.ndarray:
    """Each record's split: TFX's bucket, the SHA-256 of its bytes (a big-endian integer) modulo the
    buckets' total, placed among the splits' cumulative buckets as `bisect.bisect` places it.

    The modulo is taken byte by byte (each byte times 256**k mod total), so no 256-bit integer is built.
    """
    total = buckets[-1]
    digests = [hashlib.sha256(r).digest() for r in records]
    if total < 1 << 40:  # 32 bytes of at most 255 times a weight under `total` stay within int64
        matrix = np.frombuffer(b''.join(digests), np.uint8).reshape(-1, 32)
        bucket = np.zeros(len(records), np.int64)
        for k in range(32):  # a column at a time: no int64 copy of the whole matrix
            bucket += matrix[:, k].astype(np.int64) * pow(256, 31 - k, total)
        bucket %= total
    else:
        bucket = np.array([int.from_bytes(d, 'big') % total for d in digests], object)
    return np.searchsorted(np.array(buckets), bucket, side='right')


def write_splits(files: List[str], buckets: List[int], split_dirs: List[str]) -> List[int]:
    """Write the rows of `files` into gzipped TFRecords under `split_dirs`, split as
    TFX splits (SHA-256 of the serialised Example modulo the buckets); the row count per split."""
    names = io_utils.load_csv_column_names(files[0])
    columns = {name: _Column(name, kind) for name, kind in column_types(files).items()}
    for directory in split_dirs:
        tf.io.gfile.makedirs(directory)
    writers = [tf.io.TFRecordWriter(os.path.join(d, SHARD_NAME), _WRITE_OPTIONS) for d in split_dirs]
    counts = [0] * len(split_dirs)
    try:
        for path in files:
            for block in _blocks(path, names):
                records = _serialized(block, columns)
                if not records:
                    continue
                splits = split_indexes(records, buckets)
                for index, writer in enumerate(writers):
                    chosen = splits == index
                    for record in itertools.compress(records, chosen):
                        writer.write(record)
                    counts[index] += int(np.count_nonzero(chosen))
                logging.info('ExampleGen: %s rows written', f'{sum(counts):,}')
    finally:
        for writer in writers:
            writer.close()
    return counts


class CsvExampleGen(csv_component.CsvExampleGen):
    """TFX's CsvExampleGen (same id, spec, driver and outputs) with the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
