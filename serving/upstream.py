"""The gateway's side of a real TF Serving: one gRPC connection to it, and
what the gateway learns of its models through that connection.

The gateway talks to TF Serving's gRPC API, never its REST API: gRPC's
Predict, Classify and Regress responses name the version that answered
(`model_spec.version`), which the request log needs and REST responses leave
out. Every call carries the request's id as `x-request-id` metadata, so TF
Serving's own logs (and a request logger behind it) can be joined to ours.

`UpstreamModels` has the surface the REST front end expects of a registry
(`resolve`, `status`): `resolve` returns a `ModelVersion` built from TF
Serving's GetModelMetadata, whose signatures give the input specs the JSON
codec needs; `status` is GetModelStatus.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import urllib.parse
from typing import Dict, Mapping, Optional, Tuple

import grpc
import prometheus_client as prom
import tensorflow as tf
from tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc)

from serving.errors import ServingError
from serving.manager import VersionStatus
from serving.servable import signature_key
from serving.telemetry import _LATENCY_BUCKETS, Metrics

_ADDRESS = re.compile(r'(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>\d{1,5})')
_MODEL_SERVICE = frozenset({'GetModelStatus', 'HandleReloadConfigRequest'})
# gRPC metadata values are printable ASCII; anything else is percent-encoded on the way up.
_METADATA_VALUE = re.compile(r'[\x20-\x7e]*')


def parse_address(text: str) -> str:
    """`text` if it is HOST:PORT (IPv6 hosts in brackets); ValueError saying what is expected otherwise."""
    match = _ADDRESS.fullmatch(text or '')
    if not match or not 0 < int(match['port']) < 65536:
        raise ValueError(f"--upstream {text!r}: expected HOST:PORT of TF Serving's gRPC API (its --port), "
                         'e.g. localhost:8500 or [::1]:8500')
    return text


class Upstream:
    """One channel to TF Serving for every request: HTTP/2 multiplexes concurrent calls on it."""

    def __init__(self, address: str, metrics: Metrics, timeout_seconds: float = 30.0,
                 max_message_bytes: int = 16 * 1024 * 1024):
        self.address = parse_address(address)
        self.timeout_seconds = timeout_seconds
        self._channel = grpc.insecure_channel(address, options=[
            ('grpc.max_receive_message_length', max_message_bytes),
            ('grpc.max_send_message_length', max_message_bytes),
            # gRPC backs off up to 2 minutes between reconnection attempts by
            # default; a sidecar whose TF Serving is still loading must notice
            # within a second that it is up.
            ('grpc.initial_reconnect_backoff_ms', 250),
            ('grpc.max_reconnect_backoff_ms', 1000)])
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        r = metrics.registry
        self._calls = prom.Counter('tfserving_upstream_requests', 'Calls to the upstream TF Serving, by method and '
                                   'status code', ['method', 'code'], registry=r)
        # The request latency's buckets, so the two histograms compare.
        self._latency = prom.Histogram('tfserving_upstream_latency_seconds', 'Round trip of calls to the upstream '
                                       'TF Serving', ['method'], buckets=_LATENCY_BUCKETS, registry=r)
        self._connected = prom.Gauge('tfserving_upstream_connected', '1 while the connection to the upstream TF '
                                     'Serving is up', registry=r)
        self._channel.subscribe(self._on_connectivity, try_to_connect=True)

    def _on_connectivity(self, state: grpc.ChannelConnectivity) -> None:
        self._connected.set(1 if state == grpc.ChannelConnectivity.READY else 0)

    def call(self, method: str, request, request_id: Optional[str] = None, timeout: Optional[float] = None):
        """TF Serving's answer to `request`; its errors as ServingError with TF Serving's code and message."""
        stub = self._models if method in _MODEL_SERVICE else self._predictions
        # Only the request id goes up: never the client's metadata, whose `authorization`
        # holds its token (serving/access.py), which TF Serving has no use for.
        metadata = (('x-request-id', _metadata_value(request_id)),) if request_id else None
        start = time.perf_counter()
        try:
            response = getattr(stub, method)(request, timeout=timeout or self.timeout_seconds, metadata=metadata)
        except grpc.RpcError as e:
            self._calls.labels(method, e.code().name).inc()
            raise self._error(e.code(), e.details() or '') from None
        finally:
            self._latency.labels(method).observe(time.perf_counter() - start)
        self._calls.labels(method, 'OK').inc()
        return response

    def _error(self, code: grpc.StatusCode, details: str) -> ServingError:
        # TF Serving's own errors pass through unchanged; the two that mean the
        # gateway could not get an answer say where it was asking.
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServingError(code, f'upstream TF Serving at {self.address} (--upstream) is unavailable: {details}')
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServingError(code, f'upstream TF Serving at {self.address} (--upstream) did not answer in time: '
                                      f'{details}')
        return ServingError(code, details)

    def wait_until_ready(self, timeout: float) -> bool:
        """Whether TF Serving accepts a connection within `timeout` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
            return True
        except grpc.FutureTimeoutError:
            return False

    def close(self) -> None:
        self._channel.unsubscribe(self._on_connectivity)
        self._channel.close()


def _metadata_value(request_id: str) -> str:
    return request_id if _METADATA_VALUE.fullmatch(request_id) else urllib.parse.quote(request_id, safe='')


def address(spec, name: str, version: Optional[int], label: Optional[str], signature_name: str = '') -> None:
    """Fills a ModelSpec the way the client addressed the model: by version, by label, or the latest."""
    spec.name = name
    if version is not None:
        spec.version.value = version
    elif label:
        spec.version_label = label
    if signature_name:
        spec.signature_name = signature_name


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """A model version as TF Serving describes it, and how the client addressed it.

    Requests are forwarded with the client's own version or label, not the
    version the (briefly cached) metadata named: TF Serving decides which
    version answers, and its response says which one did.
    """

    name: str
    version: int
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
    # signature -> input -> TensorSpec: what the JSON codec decodes a request with.
    input_specs: Mapping[str, Mapping[str, tf.TensorSpec]]
    requested_version: Optional[int] = None
    label: Optional[str] = None

    @classmethod
    def from_metadata(cls, response: get_model_metadata_pb2.GetModelMetadataResponse, name: str,
                      version: Optional[int], label: Optional[str]) -> 'ModelVersion':
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata['signature_def'].Unpack(signatures)
        specs = {signature_name: {alias: tf.TensorSpec(tf.TensorShape(info.tensor_shape), tf.as_dtype(info.dtype))
                                  for alias, info in signature.inputs.items()}
                 for signature_name, signature in signatures.signature_def.items()}
        return cls(response.model_spec.name or name, response.model_spec.version.value,
                   dict(signatures.signature_def), specs, version, label)

    def signature(self, signature_name: str, api: str = 'predict') -> str:
        return signature_key(self.signature_defs, signature_name, api)

    def address(self, spec, signature_name: str = '') -> None:
        address(spec, self.name, self.requested_version, self.label, signature_name)


class UpstreamModels:
    """TF Serving's models, as the REST front end asks about them (the registry's surface)."""

    def __init__(self, upstream: Upstream, cache_seconds: float = 10.0):
        self.upstream = upstream
        # Metadata is asked for on every REST inference (to decode its JSON),
        # so it is kept briefly per (model, version, label): a signature change
        # reaches the codec within this time, and TF Serving is not asked twice
        # per request.
        self.cache_seconds = cache_seconds
        self._cache: Dict[Tuple, Tuple[float, ModelVersion]] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> ModelVersion:
        key = (name, version, label)
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['signature_def'])
        address(request.model_spec, name, version, label)
        described = ModelVersion.from_metadata(self.upstream.call('GetModelMetadata', request), name, version, label)
        with self._lock:
            self._cache[key] = (time.monotonic() + self.cache_seconds, described)
        return described

    def status(self, name: str, version: Optional[int] = None) -> Dict[int, VersionStatus]:
        request = get_model_status_pb2.GetModelStatusRequest()
        address(request.model_spec, name, version, None)
        response = self.upstream.call('GetModelStatus', request)
        State = get_model_status_pb2.ModelVersionStatus.State
        return {s.version: VersionStatus(State.Name(s.state), error_codes_pb2.Code.Name(s.status.error_code),
                                         s.status.error_message)
                for s in response.model_version_status}
