"""The gateway's gRPC front end: TF Serving's PredictionService and
ModelService, passed through to the upstream TF Serving.

Requests go up as the client sent them (plus `x-request-id`; an unaddressed
Predict, Classify or Regress for a split model gets the canary split's
`version_label`, see serving/traffic.py), and TF
Serving's responses and error codes come back unchanged; on the way the call
is counted, timed and, for Predict, Classify and Regress, logged from the
protos with the version TF Serving's response names. Calls go up with the
client's remaining deadline (`time_remaining`), or the gateway's default
when it set none. The servicers share the
embedded server's `_guarded` wrapper, so request ids, access control
(serving/access.py, checked before anything goes up), metrics and error
handling are the same in both modes. The client's `authorization` metadata
stays here: TF Serving gets only `x-request-id` (`Upstream.call`).
"""

from __future__ import annotations

import logging
from typing import Callable, Tuple

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.errors import ServingError
from serving.gateway_core import GatewayCore, batch_size, classifications, regressions
from serving.grpc_api import _guarded, check_input, examples_of
from serving.grpc_api import create_server as _create_server
from serving.tensors import to_ndarray

log = logging.getLogger(__name__)


class PredictionForwarder(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: GatewayCore):
        self.core = core

    def _log(self, write: Callable[[], None]) -> None:
        # The answer is TF Serving's and already complete: a record that cannot
        # be decoded for the log is dropped and counted, never a failed call.
        try:
            write()
        except ServingError:  # the log refused it (full): the call fails, its answer unsent
            raise
        except Exception:
            log.exception('request log record dropped')
            self.core.metrics.log_dropped.labels('failed').inc()

    @_guarded
    def Predict(self, request, context, call):  # noqa: N802 (gRPC naming)
        call.api = 'predict'
        # Before forwarding: TF Serving would materialise whatever the shapes say (serving/limits.py).
        self.core.limits.check_protos(request.inputs)
        response = self.core.route(call, 'Predict', request, context.time_remaining())
        call.examples = batch_size(response.outputs)
        if self.core.request_logger:
            self._log(lambda: self.core.log_predict(
                call, {k: to_ndarray(v) for k, v in request.inputs.items()},
                {k: to_ndarray(response.outputs[k]) for k in sorted(response.outputs)}))
        return response

    @_guarded
    def Classify(self, request, context, call):  # noqa: N802
        call.api = 'classify'
        check_input(request.input, self.core.limits)  # checked only: the request goes as sent
        response = self.core.route(call, 'Classify', request, context.time_remaining())
        call.examples = len(response.result.classifications)
        if self.core.request_logger:
            self._log(lambda: self.core.log_examples(call, examples_of(request.input),
                                                     dict(zip(('classes', 'scores'), classifications(response)))))
        return response

    @_guarded
    def Regress(self, request, context, call):  # noqa: N802
        call.api = 'regress'
        check_input(request.input, self.core.limits)
        response = self.core.route(call, 'Regress', request, context.time_remaining())
        call.examples = len(response.result.regressions)
        if self.core.request_logger:
            self._log(lambda: self.core.log_examples(call, examples_of(request.input),
                                                     {'outputs': regressions(response)}))
        return response

    @_guarded
    def GetModelMetadata(self, request, context, call):  # noqa: N802
        # Unaddressed: the signatures of the version this caller's unaddressed requests go to, as embedded.
        return self.core.route(call, 'GetModelMetadata', request, context.time_remaining())

    @_guarded
    def MultiInference(self, request, context, call):  # noqa: N802  (forwarded, not logged)
        check_input(request.input, self.core.limits)
        return self.core.upstream.call('MultiInference', request, call.request_id, context.time_remaining())


class ModelForwarder(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: GatewayCore):
        self.core = core

    @_guarded
    def GetModelStatus(self, request, context, call):  # noqa: N802
        return self.core.upstream.call('GetModelStatus', request, call.request_id, context.time_remaining())

    @_guarded
    def HandleReloadConfigRequest(self, request, context, call):  # noqa: N802
        return self.core.upstream.call('HandleReloadConfigRequest', request, call.request_id, context.time_remaining())


def create_server(core: GatewayCore, address: str, max_message_bytes: int,
                  workers: int = 16, reuse_port: bool = False) -> Tuple[grpc.Server, int]:
    """The embedded server's gRPC server with the forwarding servicers; not started."""
    return _create_server(core, address, max_message_bytes, workers,
                          servicers=(PredictionForwarder(core), ModelForwarder(core)), reuse_port=reuse_port)
