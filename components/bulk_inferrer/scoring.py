"""Scoring rows with an exported taxi model, and writing what came out (no TFX).

Used by the pipeline's BulkInferrer (PredictionLogs of the span's examples) and
by `taxi-pipeline score` (a CSV or a span scored by a pushed version into files a
warehouse loads, and optionally into the request log the monitor reads, so
offline predictions are watched for skew and drift like served ones).

The warehouse table's schema is `TABLE_SCHEMA` plus the input columns (as
read, text) and, with attributions, one `attribution_<feature>` float per raw
feature. Every file is written whole or not at all (foundation/atomic_file.py).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from foundation.atomic_file import write_atomically
from serving import request_log
from taxi_model import contract
from taxi_model.features import FEATURES

FORMATS = ('csv', 'parquet')
# Rows per call of the model: large enough to amortise a call, small enough for `explain`'s
# integrated-gradients path (IG steps + 1 copies of the batch).
BATCH, EXPLAIN_BATCH = 4096, 256
# TFX's BulkInferrer file name: readers glob prediction_logs-*.gz.
PREDICTION_LOGS = 'prediction_logs-00000-of-00001.gz'
# The prediction columns of the warehouse table, in order, and their types (pyarrow).
TABLE_SCHEMA = (
    ('row', pa.int64()),                   # the row's position in its input, from 0
    ('probability', pa.float64()),         # the tip probability
    ('is_outlier', pa.bool_()),            # the model's outlier flag (taxi_model/contract.py)
    ('outlier_score', pa.float64()),
    ('flagged_features', pa.string()),     # comma-separated; '' when none
    ('model_version', pa.int64()),         # the pushed version that scored it (0: a pipeline candidate)
    ('scored_at', pa.timestamp('us', tz='UTC')),
)
# Who the request log says asked: the monitor tells scored batches from served traffic by it.
CALLER = 'batch-score'


def attribution_column(feature: str) -> str:
    return f'attribution_{feature}'


def table_schema(input_columns: Sequence[str], explain: bool) -> pa.Schema:
    """The warehouse table: the prediction columns, the input columns as text, attributions if asked."""
    fields = [pa.field(name, kind) for name, kind in TABLE_SCHEMA]
    fields += [pa.field(f'input_{name}', pa.string()) for name in input_columns]
    if explain:
        fields += [pa.field(attribution_column(f.name), pa.float64()) for f in FEATURES]
    return pa.schema(fields)


def score(model, rows: Sequence[Mapping[str, object]], explain: bool = False) -> Dict[str, np.ndarray]:
    """The outputs of the model's `serving_raw` signature (`explain` with attributions) for `rows`, in
    batches, concatenated: one array per output, one entry per row."""
    signature = model.signatures[contract.EXPLAIN if explain else contract.PREDICT_RAW]
    size = EXPLAIN_BATCH if explain else BATCH
    parts: List[Dict[str, np.ndarray]] = []
    for start in range(0, len(rows), size):
        inputs = contract.raw_inputs(rows[start:start + size])
        outputs = signature(**{k: tf.constant(v) for k, v in inputs.items()})
        parts.append({k: np.reshape(v.numpy(), [len(inputs[FEATURES[0].name]), -1])[:, 0] for k, v in outputs.items()})
    if not parts:
        raise ValueError('no rows to score')
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def score_examples(model, serialized: Sequence[bytes]) -> Dict[str, np.ndarray]:
    """As `score` without attributions, for serialized tf.Examples: the model's `serving_default` parses
    them in its graph, where `score` needs each example read into a row in Python first (most of the
    BulkInferrer's time at 150k rows: docs/performance.md)."""
    signature = model.signatures[contract.PREDICT_EXAMPLES]
    parts: List[Dict[str, np.ndarray]] = []
    for start in range(0, len(serialized), BATCH):
        batch = list(serialized[start:start + BATCH])
        outputs = signature(**{contract.EXAMPLES_INPUT: tf.constant(batch)})
        parts.append({k: np.reshape(v.numpy(), [len(batch), -1])[:, 0] for k, v in outputs.items()})
    if not parts:
        raise ValueError('no examples to score')
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def prediction_logs(serialized: Sequence[bytes], outputs: Mapping[str, np.ndarray], model_name: str
                    ) -> List[bytes]:
    """One PredictionLog per example, as TFX's BulkInferrer writes them for a predict signature: the
    serialized tf.Example as the request's `examples`, each output (probability, flags, attributions)
    in the response, a tensor of shape [1] each. Built in place, each output's values converted once:
    temporary tensors copied into every log took most of the time (docs/performance.md)."""
    from tensorflow.core.framework import types_pb2
    columns = []
    for key, values in outputs.items():
        if values.dtype.kind in 'SOU':
            column = [v if isinstance(v, bytes) else str(v).encode() for v in values]
            columns.append((key, types_pb2.DT_STRING, 'string_val', column))
        elif values.dtype.kind == 'b':
            columns.append((key, types_pb2.DT_BOOL, 'bool_val', [bool(v) for v in values]))
        else:
            columns.append((key, types_pb2.DT_FLOAT, 'float_val', [float(v) for v in values]))
    logs = []
    for i, example in enumerate(serialized):
        log = prediction_log_pb2.PredictionLog()
        request, response = log.predict_log.request, log.predict_log.response
        request.model_spec.name, request.model_spec.signature_name = model_name, contract.PREDICT_EXAMPLES
        _fill(request.inputs[contract.EXAMPLES_INPUT], types_pb2.DT_STRING, 'string_val', example)
        for key, dtype, field, column in columns:
            _fill(response.outputs[key], dtype, field, column[i])
        logs.append(log.SerializeToString())
    return logs


def _fill(tensor, dtype, field: str, value) -> None:
    tensor.dtype = dtype
    tensor.tensor_shape.dim.add().size = 1
    getattr(tensor, field).append(value)


def write_prediction_logs(directory: str, logs: Sequence[bytes]) -> str:
    """GZIP TFRecords as TFX's BulkInferrer writes them, through a temporary name and a rename."""
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, PREDICTION_LOGS)
    with tf.io.TFRecordWriter(path + '.partial', options='GZIP') as writer:
        for log in logs:
            writer.write(log)
    tf.io.gfile.rename(path + '.partial', path, overwrite=True)
    return path


def read_prediction_logs(directory: str) -> List[prediction_log_pb2.PredictionLog]:
    """Every PredictionLog under `directory`, in file order (read in batches: an eager step per record is slow)."""
    files = sorted(tf.io.gfile.glob(os.path.join(directory, 'prediction_logs-*.gz')))
    dataset = tf.data.TFRecordDataset(files, compression_type='GZIP').batch(BATCH)
    return [prediction_log_pb2.PredictionLog.FromString(record)
            for batch in dataset.as_numpy_iterator() for record in batch]


def table(header: Sequence[str], rows: Sequence[Mapping[str, object]], outputs: Mapping[str, np.ndarray],
          model_version: int, explain: bool, scored_at_micros: Optional[int] = None) -> pa.Table:
    """The warehouse table of `rows` and their `outputs`, in `table_schema`'s columns."""
    count = len(rows)
    flags = contract.flags(outputs)
    stamp = scored_at_micros if scored_at_micros is not None else int(time.time() * 1e6)
    columns = {
        'row': np.arange(count, dtype=np.int64),
        'probability': np.asarray(contract.probabilities(outputs), dtype=np.float64),
        'is_outlier': [f.is_outlier for f in flags],
        'outlier_score': [f.score for f in flags],
        'flagged_features': [','.join(f.features) for f in flags],
        'model_version': np.full(count, int(model_version), dtype=np.int64),
        'scored_at': np.full(count, stamp, dtype=np.int64),
    }
    for name in header:
        columns[f'input_{name}'] = [None if r.get(name) is None else str(r.get(name)) for r in rows]
    if explain:
        for f in FEATURES:
            columns[attribution_column(f.name)] = np.asarray(outputs[contract.attribution_key(f.name)], np.float64)
    schema = table_schema(header, explain)
    arrays = [pa.array(columns[field.name], type=pa.int64() if field.name == 'scored_at' else field.type)
              for field in schema]
    arrays[schema.get_field_index('scored_at')] = arrays[schema.get_field_index('scored_at')].cast(
        schema.field('scored_at').type)
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table(path: str, data: pa.Table, file_format: str) -> str:
    """`data` as one CSV (header row; timestamps ISO 8601) or Parquet file at `path`, written atomically."""
    if file_format not in FORMATS:
        raise ValueError(f'format must be one of {", ".join(FORMATS)}, not {file_format!r}')
    buffer = io.BytesIO()
    if file_format == 'parquet':
        pq.write_table(data, buffer)
        return write_atomically(path, buffer.getvalue())
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(data.column_names)
    columns = [c.to_pylist() for c in data.columns]
    for values in zip(*columns):
        writer.writerow(['' if v is None else v.isoformat() if hasattr(v, 'isoformat') else v for v in values])
    return write_atomically(path, text.getvalue())


def schema_json(data: pa.Table) -> str:
    """The stated schema beside the files: column name, type and nullability, in order."""
    return json.dumps({'columns': [{'name': f.name, 'type': str(f.type), 'nullable': f.nullable}
                                   for f in data.schema]}, indent=2)


def write_request_log(directory: str, model_name: str, model_version: int, rows: Sequence[Mapping[str, object]],
                      outputs: Mapping[str, np.ndarray], request_id: Optional[str] = None,
                      at_micros: Optional[int] = None) -> str:
    """The scored rows as one request-log file, encoded by the server's own encoder
    (serving.request_log.encode) as if `serving_raw` had answered them: the file the monitor reads. Written
    as `.partial` and renamed, as the server's logger does, so the monitor never reads half of it."""
    inputs = contract.raw_inputs(rows)
    missing = json.loads(contract.missing_values_json())[contract.PREDICT_RAW]
    request_id = request_id or f'score-{uuid.uuid4().hex[:12]}'
    meta = {'model_name': model_name, 'model_version': int(model_version), 'signature_name': contract.PREDICT_RAW,
            'request_id': request_id, 'caller': CALLER,
            'timestamp_micros': int(at_micros if at_micros is not None else time.time() * 1e6)}
    kept = {k: np.reshape(v, [len(rows), -1])[:, 0] for k, v in outputs.items()
            if not k.startswith(contract.ATTRIBUTION_PREFIX) and k not in (
                contract.BASELINE_PROBABILITY, contract.LOG_ODDS, contract.BASELINE_LOG_ODDS)}
    kept[contract.PROBABILITIES] = np.reshape(outputs[contract.PROBABILITIES], [-1, 1])
    records = request_log.encode([(meta, inputs, kept, None, missing)])
    tf.io.gfile.makedirs(directory)
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
    path = os.path.join(directory, f'requests-{stamp}-{request_id}.tfrecord')
    with tf.io.TFRecordWriter(path + request_log.PARTIAL) as writer:
        for record in records:
            writer.write(record)
    tf.io.gfile.rename(path + request_log.PARTIAL, path, overwrite=False)
    return path
