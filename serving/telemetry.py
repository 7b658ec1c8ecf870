"""What the server tells operators: Prometheus metrics and request logs.

Metrics live in a registry per server (tests run several servers in one
process) and are exposed on the REST port at TF Serving's monitoring path.

Request logs are TFRecord files of tf.Examples, one per served example: the
raw features as received (less the values the model declares as "missing"
markers, see `serving.MISSING_VALUES_FILE`), each model output, and `model_name`,
`model_version`, `signature_name`, `request_id`, `example_index` (the
example's position in its request, which feedback names), `timestamp_micros`. That is
the form `tfdv.generate_statistics_from_tfrecord` reads, so drift and skew
checks run on served traffic with the training schema. A file is written as
`*.tfrecord.partial` and renamed when complete, so readers globbing
`*.tfrecord` never see half a file. Logging happens on a background thread;
when it falls behind, records are dropped and counted, never waited for.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
import uuid
from typing import Mapping, Optional

import numpy as np
import prometheus_client as prom
import tensorflow as tf

log = logging.getLogger(__name__)

# Fine below 3 ms, where single-example requests land, so quantiles estimated
# from the buckets (histogram_quantile) are meaningful.
_LATENCY_BUCKETS = (0.00025, 0.0005, 0.00075, 0.001, 0.00125, 0.0015, 0.00175, 0.002, 0.0025, 0.003, 0.004, 0.005,
                    0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
EXAMPLE_INDEX = 'example_index'
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self):
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            'tfserving_requests', 'Requests by model, version, signature, API, protocol and status code',
            ['model_name', 'version', 'signature_name', 'api', 'protocol', 'code'], registry=r)
        self.latency = prom.Histogram(
            'tfserving_request_latency_seconds', 'Arrival-to-response time of requests',
            ['model_name', 'version', 'signature_name', 'api', 'protocol'], buckets=_LATENCY_BUCKETS, registry=r)
        self.examples = prom.Counter('tfserving_examples', 'Examples answered', ['model_name', 'version', 'api'],
                                     registry=r)
        self.batch_size = prom.Histogram('tfserving_batch_size', 'Examples per model call with server-side batching',
                                         ['model_name'], buckets=_BATCH_BUCKETS, registry=r)
        self.load_seconds = prom.Histogram('tfserving_model_load_seconds', 'Load plus warm-up time of a version',
                                           ['model_name'], buckets=(0.5, 1, 2, 5, 10, 30, 60, 120), registry=r)
        self.load_failures = prom.Counter('tfserving_model_load_failures', 'Versions that failed to load',
                                          ['model_name'], registry=r)
        self.available = prom.Gauge('tfserving_model_version_available', '1 while a version serves traffic',
                                    ['model_name', 'version'], registry=r)
        self.feedback = prom.Counter('tfserving_feedback_records', 'Feedback records received, by outcome',
                                     ['outcome'], registry=r)
        self.log_dropped = prom.Counter('tfserving_request_log_dropped', 'Request log records dropped (queue full)',
                                        registry=r)
        # Requests the canary split routed (serving/traffic.py), by the label that answered
        # ("latest" when the model had no stable label) and its version: the realised split.
        self.traffic_split = prom.Counter('tfserving_traffic_split', 'Unaddressed requests routed by the canary '
                                          'split, by answering label and version',
                                          ['model_name', 'label', 'version'], registry=r)

    def exposition(self) -> bytes:
        return prom.generate_latest(self.registry)


def _is_missing(rule: Optional[str], value) -> bool:
    """Whether `value` is how the model's signature marks a missing input."""
    if rule == 'nan':
        return isinstance(value, float) and math.isnan(value)
    if rule == 'negative':
        return value < 0
    if rule == 'empty':
        return value == b''
    return False


def _feature(values: np.ndarray, missing_rule: Optional[str] = None) -> Optional[tf.train.Feature]:
    values = np.ravel(values)
    if values.dtype == object or values.dtype.kind in 'SU':  # bytes, or text a caller passed as str
        kept = [v if isinstance(v, bytes) else str(v).encode() for v in values]
        kept = [v for v in kept if not _is_missing(missing_rule, v)]
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=kept)) if kept else None
    if values.dtype.kind == 'f':
        kept = [v for v in map(float, values) if not _is_missing(missing_rule, v)]
        return tf.train.Feature(float_list=tf.train.FloatList(value=kept)) if kept else None
    if values.dtype.kind in 'iub':
        kept = [v for v in map(int, values) if not _is_missing(missing_rule, v)]
        return tf.train.Feature(int64_list=tf.train.Int64List(value=kept)) if kept else None
    return None


def batch_size(*tensor_maps) -> Optional[int]:
    """The examples in a request: the 0th dimension its inputs and outputs share, or None when they
    share none (a scalar, or tensors of different lengths: the graph decides what it accepts, as in
    TF Serving, so a request need not be a batch)."""
    sizes = {array.shape[0] if array.ndim else None for tensors in tensor_maps for array in tensors.values()}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None


def log_examples(record) -> list:
    """tf.Examples for one logged request: (meta, inputs, outputs, serialized_input, missing rules).

    One per example of a batch; a request that is not a batch (see `batch_size`) is logged whole, as
    one example holding every value, so that nothing answered goes unlogged."""
    meta, inputs, outputs, serialized_input, missing = record
    size = batch_size(inputs, outputs)
    if size is None:
        inputs = {name: np.ravel(values)[np.newaxis] for name, values in inputs.items()}
        outputs = {name: np.ravel(values)[np.newaxis] for name, values in outputs.items()}
        size, serialized_input = 1, None
    examples = []
    for i in range(size):
        if serialized_input is not None:
            example = tf.train.Example.FromString(inputs[serialized_input][i])
        else:
            example = tf.train.Example()
            for name, values in inputs.items():
                feature = _feature(values[i], missing.get(name))
                if feature is not None:
                    example.features.feature[name].CopyFrom(feature)
        for name, values in outputs.items():
            feature = _feature(values[i])
            if feature is not None:
                example.features.feature[name].CopyFrom(feature)
        for name, value in meta.items():
            if isinstance(value, int):
                example.features.feature[name].int64_list.value.append(value)
            else:
                example.features.feature[name].bytes_list.value.append(str(value).encode())
        example.features.feature[EXAMPLE_INDEX].int64_list.value.append(i)
        examples.append(example)
    return examples


class RequestLogger:
    """Writes served examples to rotating TFRecord files in `directory`."""

    def __init__(self, directory: str, metrics: Metrics, max_records_per_file: int = 10000,
                 rotate_seconds: float = 60.0, queue_size: int = 10000):
        self.directory = directory
        tf.io.gfile.makedirs(directory)
        self._metrics = metrics
        self._max_records, self._rotate_seconds = max_records_per_file, rotate_seconds
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._sequence = 0
        self._writer_id = uuid.uuid4().hex[:12]
        self._thread = threading.Thread(target=self._loop, name='request-log', daemon=True)
        self._thread.start()

    def log(self, model_name: str, version: int, signature_name: str, request_id: str,
            inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
            serialized_input: Optional[str] = None, missing: Optional[Mapping[str, str]] = None) -> None:
        """Queues one request's examples; `missing` maps an input to its missing-value rule."""
        meta = {'model_name': model_name, 'model_version': int(version), 'signature_name': signature_name,
                'request_id': request_id, 'timestamp_micros': int(time.time() * 1e6)}
        try:
            self._queue.put_nowait((meta, dict(inputs), dict(outputs), serialized_input, dict(missing or {})))
        except queue.Full:
            self._metrics.log_dropped.inc()

    def _open(self):
        self._sequence += 1
        stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
        # Replicas write one directory, and in a container every server is pid 1: the writer's
        # own random id keeps names apart.
        path = os.path.join(self.directory, f'requests-{stamp}-{self._writer_id}-{self._sequence:05d}.tfrecord')
        return path, tf.io.TFRecordWriter(path + '.partial'), time.monotonic(), 0

    def _finish(self, path, writer, count) -> None:
        writer.close()
        if count:
            tf.io.gfile.rename(path + '.partial', path, overwrite=False)
        else:
            tf.io.gfile.remove(path + '.partial')

    def _loop(self) -> None:
        current = None  # (path, writer, opened, count)
        while True:
            try:
                record = self._queue.get(timeout=1.0)
            except queue.Empty:
                record = ...
            try:
                if current and (record is None or current[3] >= self._max_records
                                or time.monotonic() - current[2] >= self._rotate_seconds):
                    self._finish(*current[:2], current[3])
                    current = None
                if record is None:
                    return
                if record is ...:
                    continue
                if current is None:
                    current = self._open()
                path, writer, opened, count = current
                for example in log_examples(record):
                    writer.write(example.SerializeToString())
                    count += 1
                current = (path, writer, opened, count)
                if self._queue.empty():
                    writer.flush()
            except Exception:  # a full disk or a bad record must not stop logging for good
                log.exception('request logging failed; continuing with a new file')
                self._metrics.log_dropped.inc()
                current = None

    def close(self) -> None:
        """Writes what is queued and completes the current file."""
        try:
            self._queue.put(None, timeout=10)
        except queue.Full:
            log.error('request log did not drain; some records are lost')
        self._thread.join(timeout=30)
