"""The gateway's core: `ServingCore`'s surface over TF Serving's gRPC API.

REST requests are decoded with the embedded server's JSON codec, using the
input specs of TF Serving's GetModelMetadata, forwarded as gRPC
Predict/Classify/Regress with the client's model spec, and encoded as the
embedded server does: `GatewayCore` has `ServingCore`'s surface, so `RestApi`
runs on it unchanged. Both front ends log through it, with the version that
TF Serving's response names.

Missing-value markers (`serving.MISSING_VALUES_FILE`) live in the model's
directory, which only TF Serving reads; given the model's base path as well,
the gateway reads each answering version's markers from it, otherwise it
logs values as received.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, regression_pb2

from serving.core import Call, ServingCore
from serving.feedback import FeedbackStore
from serving.servable import DEFAULT_SIGNATURE, read_missing_values
from serving.request_log import RequestLogger
from serving.telemetry import Metrics
from serving.traffic import route_call
from serving.tensors import to_ndarray, to_tensor_proto
from serving.upstream import ModelVersion, Upstream, UpstreamModels

log = logging.getLogger(__name__)


class MissingValueMarkers:
    """Each model version's declared missing-value markers, read once from its base path if the gateway has one.

    Read on the first request a version answers (a GCS read, once per
    version); a version whose file cannot be read is logged as received
    and tried again after `retry_seconds`.
    """

    def __init__(self, base_paths: Mapping[str, str], retry_seconds: float = 60.0):
        self.base_paths = dict(base_paths)
        self._retry_seconds = retry_seconds
        self._known: Dict[Tuple[str, int], Tuple[Optional[float], Dict]] = {}  # -> (retry at, markers)
        self._lock = threading.Lock()

    def get(self, model_name: str, version: int) -> Mapping[str, Mapping[str, str]]:
        """signature -> input -> rule, as `servable.read_missing_values` reads it; {} if unknown."""
        known = self._known.get((model_name, version))
        if known and (known[0] is None or known[0] > time.monotonic()):
            return known[1]
        base = self.base_paths.get(model_name)
        if base is None:
            return {}
        with self._lock:  # one read per version, however many requests arrive meanwhile
            known = self._known.get((model_name, version))
            if known and (known[0] is None or known[0] > time.monotonic()):
                return known[1]
            directory = os.path.join(base, str(version))
            retry_at = time.monotonic() + self._retry_seconds
            try:
                if tf.io.gfile.isdir(directory):
                    markers, retry_at = read_missing_values(directory), None
                else:
                    markers = {}
                    log.warning('no directory %s for version %d of model %s, which TF Serving answered with: is '
                                '--model-base-path the base path TF Serving serves? Logging its values as received',
                                directory, version, model_name)
            except Exception as e:  # unreadable or malformed: log the values rather than fail the request
                markers = {}
                log.warning('cannot read the missing-value markers of model %s version %d in %s (%s); logging its '
                            'values as received, retrying in %.0f s', model_name, version, directory, e,
                            self._retry_seconds)
            self._known[(model_name, version)] = (retry_at, markers)
            return markers


class GatewayCore(ServingCore):
    """`ServingCore`'s surface over TF Serving's gRPC API: resolve, run, measure, log.

    `registry` answers status and metadata from TF Serving; `resolve` returns
    the `ModelVersion` a REST request's JSON is decoded for; `predict`,
    `classify` and `regress` forward, learn the answering version from the
    response, and log as the embedded core does.
    """

    def __init__(self, upstream: Upstream, metrics: Metrics, request_logger: Optional[RequestLogger] = None,
                 feedback: Optional[FeedbackStore] = None, markers: Optional[MissingValueMarkers] = None,
                 metadata_cache_seconds: float = 10.0):
        super().__init__(UpstreamModels(upstream, metadata_cache_seconds), metrics, request_logger, feedback)
        self.upstream = upstream
        self.markers = markers or MissingValueMarkers({})

    def resolve(self, call: Call, api: str, model_name: str, version: Optional[int], label: Optional[str],
                signature_name: str) -> Tuple[ModelVersion, str]:
        call.api = api
        target = route_call(self.traffic, call, model_name, version, label,
                            lambda chosen: self.registry.resolve(model_name, version, chosen))
        call.model_name, call.version = target.name, str(target.version)
        call.signature_name = target.signature(signature_name, api)
        return target, call.signature_name

    def route(self, call: Call, method: str, request, timeout: Optional[float] = None):
        """`forward` for a gRPC client's request: an unaddressed one goes to the split's label, as
        `resolve` sends a REST request; one naming a version or a label goes as it is."""
        spec = request.model_spec
        version = spec.version.value if spec.HasField('version') else None
        # Readdressing with the request's own label (when the split does not apply) changes nothing.
        return route_call(self.traffic, call, spec.name, version, spec.version_label or None,
                          lambda label: self._forward(call, method, request, timeout, label))

    def forward(self, call: Call, method: str, request, timeout: Optional[float] = None):
        """TF Serving's response to `request`; `call` learns the model, version and signature that answered.

        A request the split routed is readdressed if its label cannot answer
        (the canary went since `resolve`): the split fails no request.
        """
        if call.split:
            response, call.label = self.traffic.fallback(request.model_spec.name, call.label,
                                                         lambda label: self._forward(call, method, request, timeout,
                                                                                     label))
            return response
        return self._forward(call, method, request, timeout)

    def _forward(self, call: Call, method: str, request, timeout: Optional[float], label=...):
        if label is not ...:  # the split's label, or None for the latest version
            request.model_spec.ClearField('version_label')
            if label:
                request.model_spec.version_label = label
        response = self.upstream.call(method, request, call.request_id, timeout)
        spec = response.model_spec
        # Metric labels only from TF Serving's answer: names known to exist.
        call.model_name = spec.name or request.model_spec.name
        call.version = str(spec.version.value)
        call.signature_name = spec.signature_name or request.model_spec.signature_name or DEFAULT_SIGNATURE
        return response

    def predict(self, call: Call, target: ModelVersion, signature: str, inputs: Mapping[str, np.ndarray],
                output_filter=()) -> Dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        target.address(request.model_spec, signature)
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(to_tensor_proto(array))
        response = self.forward(call, 'Predict', request)
        # Sorted as the SavedModel's own outputs are, so the JSON answer reads the same.
        outputs = {name: to_ndarray(response.outputs[name]) for name in sorted(response.outputs)}
        call.examples = batch_size(response.outputs)
        self.log_predict(call, inputs, outputs)
        return outputs

    def classify(self, call: Call, target: ModelVersion, signature: str, examples):
        request = classification_pb2.ClassificationRequest()
        target.address(request.model_spec, signature)
        for serialized in examples:
            request.input.example_list.examples.add().ParseFromString(serialized)
        classes, scores = classifications(self.forward(call, 'Classify', request))
        call.examples = len(examples)
        self.log_examples(call, examples, {'classes': classes, 'scores': scores})
        return classes, scores

    def regress(self, call: Call, target: ModelVersion, signature: str, examples) -> np.ndarray:
        request = regression_pb2.RegressionRequest()
        target.address(request.model_spec, signature)
        for serialized in examples:
            request.input.example_list.examples.add().ParseFromString(serialized)
        values = regressions(self.forward(call, 'Regress', request))
        call.examples = len(examples)
        self.log_examples(call, examples, {'outputs': values})
        return values

    # -- the request log: what the embedded core logs, with the version TF Serving answered with ----------

    def log_predict(self, call: Call, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        if self.request_logger and outputs:
            version = int(call.version)
            call.logged = self.request_logger.log(
                call.model_name, version, call.signature_name, call.request_id, inputs, outputs,
                serialized_input=_serialized_input(inputs),
                missing=self.markers.get(call.model_name, version).get(call.signature_name), caller=call.identity)

    def log_examples(self, call: Call, examples, outputs: Mapping[str, Optional[np.ndarray]]) -> None:
        if self.request_logger and examples:
            outputs = {k: v for k, v in outputs.items() if v is not None}
            call.logged = self.request_logger.log(
                call.model_name, int(call.version), call.signature_name, call.request_id,
                {'examples': np.array(examples, dtype=object)}, outputs, serialized_input='examples',
                caller=call.identity)


def batch_size(tensors) -> int:
    """Rows in a response's outputs (their first dimension), without decoding them."""
    for tensor in tensors.values():
        return tensor.tensor_shape.dim[0].size if tensor.tensor_shape.dim else 1
    return 0


def classifications(response: classification_pb2.ClassificationResponse):
    """(classes [n, k] bytes or None, scores [n, k]) as the embedded core returns them.

    The proto cannot say that a signature has no classes output; no label
    set anywhere is taken to mean that (TF Serving's REST answer then has "" labels).
    """
    rows = response.result.classifications
    labels = [[c.label.encode() for c in row.classes] for row in rows]
    classes = np.array(labels, dtype=object) if any(any(row) for row in labels) else None
    scores = np.array([[c.score for c in row.classes] for row in rows], np.float32)
    return classes, scores


def regressions(response: regression_pb2.RegressionResponse) -> np.ndarray:
    return np.array([r.value for r in response.result.regressions], np.float32)


def _serialized_input(inputs: Mapping[str, np.ndarray]) -> Optional[str]:
    """The input's name if the request sends serialized tf.Examples (one string input), as the embedded core decides."""
    if len(inputs) == 1:
        ((name, array),) = inputs.items()
        if name in ('examples', 'inputs') and (array.dtype == object or array.dtype.kind == 'S'):
            return name
    return None
