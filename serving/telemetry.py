"""What the server tells operators: Prometheus metrics, and what a request log record holds.

Metrics live in a registry per server (tests run several servers in one
process) and are exposed on the REST port at TF Serving's monitoring path.

Request logs are TFRecord files of tf.Examples, one per served example: the
raw features as received (less the values the model declares as "missing"
markers, see `serving.MISSING_VALUES_FILE`), each model output, and `model_name`,
`model_version`, `signature_name`, `request_id`, `caller` (who called: the token's
name when the server takes tokens, else the client's address; never a token),
`example_index` (the example's position in its request, which feedback names),
`timestamp_micros`. That is
the form `tfdv.generate_statistics_from_tfrecord` reads, so drift and skew
checks run on served traffic with the training schema. `log_examples` is the
reference encoding; serving/request_log.py writes the files.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
import prometheus_client as prom
import tensorflow as tf

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
        # The request log (serving/request_log.py): nothing answered goes unlogged without one of these saying so.
        self.log_records = prom.Counter('tfserving_request_log_records', 'Examples written to the request log',
                                        registry=r)
        self.log_dropped = prom.Counter(
            'tfserving_request_log_dropped', 'Requests not logged, by reason: shed (answered, and the answer says '
            'so), refused (not answered: the log was full), failed (a write failed)', ['reason'], registry=r)
        self.log_blocked_seconds = prom.Counter('tfserving_request_log_blocked_seconds',
                                                'Time requests waited for room in the request log', registry=r)
        self.log_recovered = prom.Counter('tfserving_request_log_recovered',
                                          'Records recovered from files a stopped writer left', registry=r)
        # Requests the rate limit refused (serving/rate_limit.py), by caller: a token's name, or "anonymous"
        # for callers known by address only (serving/core.py says why no address becomes a label).
        self.rate_limited = prom.Counter('tfserving_rate_limited', 'Requests refused by the per-caller rate limit, '
                                         'by token name ("anonymous": callers without a token)', ['caller'],
                                         registry=r)
        # Requests the canary split routed (serving/traffic.py), by the label that answered
        # ("latest" when the model had no stable label) and its version: the realised split.
        self.traffic_split = prom.Counter('tfserving_traffic_split', 'Unaddressed requests routed by the canary '
                                          'split, by answering label and version',
                                          ['model_name', 'label', 'version'], registry=r)

    def exposition(self) -> bytes:
        if os.environ.get('PROMETHEUS_MULTIPROC_DIR'):  # gateway workers (serving/workers.py): every process's
            from prometheus_client import multiprocess
            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return prom.generate_latest(registry)
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
