"""Clients for TF Serving's REST and gRPC APIs, with one interface.

Model-agnostic: both take a predict signature's inputs as named numpy arrays
(one row per example), send them to a model by version or label, and return
the signature's outputs as named arrays. They work against TF Serving itself
and the embedded server.

    client = GrpcClient('localhost', model_name='chicago-taxi')    # or RestClient
    client.predict({'fare': np.array([9.5], np.float32), ...}, signature='serving_raw', label='canary').outputs

Failures raise `ServingClientError` with TF Serving's canonical code and
message; `ServerUnavailable` (a subclass) when the server cannot be reached.
For a server started with --auth-tokens, pass `token=`: it goes with every
call as `Authorization: Bearer <token>` (serving/access.py).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Dict, List, Mapping, Optional

import grpc
import numpy as np
import requests
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from serving import GRPC_PORT, REST_PORT
from serving.errors import HTTP_STATUS
from serving.tensors import to_ndarray
from serving.traffic import VERSION_HEADER

Inputs = Mapping[str, np.ndarray]
# REST carries only the HTTP status; where several codes share one, name the usual one.
_CODE_BY_HTTP = {**{status: code.name for code, status in HTTP_STATUS.items()},
                 400: 'INVALID_ARGUMENT', 409: 'ABORTED', 500: 'INTERNAL'}


class ServingClientError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f'{code}: {message}')
        self.code, self.message = code, message


class ServerUnavailable(ServingClientError):
    pass


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A predict signature's outputs, one row per example; the version that answered when the server says
    (gRPC always; REST from our servers' X-Model-Version header)."""

    outputs: Dict[str, np.ndarray]
    model_version: Optional[int] = None


def _check_target(version: Optional[int], label: Optional[str]) -> None:
    if version is not None and label:
        raise ValueError('address a model by version or by label, not both')


class RestClient:
    def __init__(self, host: str = 'localhost', port: int = REST_PORT, *, model_name: str, timeout: float = 10.0,
                 token: Optional[str] = None):
        self.base = f'http://{host}:{port}'
        self.model_name, self.timeout = model_name, timeout
        self._session = requests.Session()  # keeps the connection alive between requests
        if token:  # a server started with --auth-tokens (serving/access.py)
            self._session.headers['Authorization'] = f'Bearer {token}'
        # (version, label, signature) -> the signature's output names, for single-output answers.
        self._output_names: Dict[tuple, List[str]] = {}

    def _url(self, version: Optional[int], label: Optional[str], suffix: str = '') -> str:
        _check_target(version, label)
        target = f'/versions/{version}' if version is not None else f'/labels/{label}' if label else ''
        return f'{self.base}/v1/models/{self.model_name}{target}{suffix}'

    def _call(self, method: str, url: str, body: Optional[Mapping] = None) -> Dict:
        return self._exchange(method, url, body)[0]

    def _exchange(self, method: str, url: str, body: Optional[Mapping] = None):
        """(JSON answer, response headers)."""
        try:
            # json.dumps, not requests' json=: NaN marks a missing float, as TF Serving accepts.
            response = self._session.request(method, url, data=json.dumps(body) if body is not None else None,
                                             headers={'Content-Type': 'application/json'}, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise ServerUnavailable('UNAVAILABLE', f'cannot reach the model server at {self.base}: {e}') from None
        try:
            payload = response.json()
        except ValueError:
            payload = {'error': response.text[:200] or response.reason}
        if response.status_code != 200:
            code = _CODE_BY_HTTP.get(response.status_code, 'UNKNOWN')
            raise ServingClientError(code, f'HTTP {response.status_code}: {payload.get("error", payload)}')
        return payload, response.headers

    def predict_json(self, body: Mapping, version: Optional[int] = None, label: Optional[str] = None) -> Dict:
        """Sends a TF Serving predict body as is; returns the JSON answer."""
        return self._call('POST', self._url(version, label, ':predict'), body)

    def predict(self, inputs: Inputs, signature: str = '', version: Optional[int] = None,
                label: Optional[str] = None) -> Prediction:
        """Sends `inputs` in TF Serving's row format (binary strings as b64)."""
        size = len(next(iter(inputs.values())))
        columns = {name: [_json_value(v) for v in array] for name, array in inputs.items()}
        instances = [{name: column[i] for name, column in columns.items()} for i in range(size)]
        body = {'instances': instances}
        if signature:
            body['signature_name'] = signature
        answer, headers = self._exchange('POST', self._url(version, label, ':predict'), body)
        predictions = answer['predictions']
        # Our servers name the answering version (serving/traffic.py VERSION_HEADER); TF Serving's REST API does not.
        answered_by = int(headers[VERSION_HEADER]) if headers.get(VERSION_HEADER, '').isdigit() else None
        if predictions and isinstance(predictions[0], dict):
            outputs = {name: np.array([p[name] for p in predictions]) for name in predictions[0]}
        else:  # TF Serving leaves the name out when a signature has one output
            (name,) = self._single_output_name(signature, version, label)
            outputs = {name: np.array(predictions)}
        return Prediction(outputs, answered_by)

    def _single_output_name(self, signature: str, version: Optional[int], label: Optional[str]) -> List[str]:
        key = (version, label, signature)
        if key not in self._output_names:
            signature_defs = self.metadata(version, label)['metadata']['signature_def']['signature_def']
            chosen = signature_defs[signature or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY]
            self._output_names[key] = list(chosen['outputs'])
        return self._output_names[key]

    def status(self, version: Optional[int] = None, label: Optional[str] = None) -> List[Dict]:
        return self._call('GET', self._url(version, label))['model_version_status']

    def metadata(self, version: Optional[int] = None, label: Optional[str] = None) -> Dict:
        return self._call('GET', self._url(version, label, '/metadata'))

    def close(self) -> None:
        self._session.close()


class GrpcClient:
    def __init__(self, host: str = 'localhost', port: int = GRPC_PORT, *, model_name: str, timeout: float = 10.0,
                 max_message_bytes: int = 16 * 1024 * 1024, token: Optional[str] = None):
        self.target = f'{host}:{port}'
        self.model_name, self.timeout = model_name, timeout
        # A server started with --auth-tokens (serving/access.py) reads it from every call's metadata.
        self._metadata = (('authorization', f'Bearer {token}'),) if token else None
        self._channel = grpc.insecure_channel(self.target, options=[
            ('grpc.max_receive_message_length', max_message_bytes),
            ('grpc.max_send_message_length', max_message_bytes)])
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _spec(self, spec, version: Optional[int], label: Optional[str], signature: str = '') -> None:
        _check_target(version, label)
        spec.name = self.model_name
        if signature:
            spec.signature_name = signature
        if version is not None:
            spec.version.value = version
        elif label:
            spec.version_label = label

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            code = e.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ServerUnavailable(code.name, f'model server at {self.target}: {e.details()}') from None
            raise ServingClientError(code.name, e.details()) from None

    def predict_request(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        return self._call(self._predictions.Predict, request)

    def predict(self, inputs: Inputs, signature: str = '', version: Optional[int] = None,
                label: Optional[str] = None) -> Prediction:
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, version, label, signature)
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
        response = self.predict_request(request)
        outputs = {name: to_ndarray(tensor) for name, tensor in response.outputs.items()}
        return Prediction(outputs, response.model_spec.version.value)

    def status(self, version: Optional[int] = None, label: Optional[str] = None):
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, version, label)
        return list(self._call(self._models.GetModelStatus, request).model_version_status)

    def metadata(self, version: Optional[int] = None, label: Optional[str] = None):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['signature_def'])
        self._spec(request.model_spec, version, label)
        return self._call(self._predictions.GetModelMetadata, request)

    def close(self) -> None:
        self._channel.close()


def _json_value(value):
    """A numpy element as TF Serving's JSON: bytes as {"b64": ...}, NaN as NaN."""
    if isinstance(value, bytes):
        return {'b64': base64.b64encode(value).decode()}
    return value.item() if isinstance(value, np.generic) else value


def connect(protocol: str, host: str = 'localhost', port: Optional[int] = None, **kwargs):
    """A REST or gRPC client, on TF Serving's default port for the protocol."""
    if protocol == 'rest':
        return RestClient(host, port or REST_PORT, **kwargs)
    if protocol == 'grpc':
        return GrpcClient(host, port or GRPC_PORT, **kwargs)
    raise ValueError(f'protocol must be rest or grpc, not {protocol!r}')
