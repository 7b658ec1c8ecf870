"""TF Serving's gRPC API: PredictionService and ModelService, on the same core.

Servicers are generated from tensorflow-serving-api's protos, so TF Serving's
own clients (and `serving.client.GrpcClient`) work unchanged. Errors abort
the call with the canonical code; nothing escapes as an unhandled exception.
"""

from __future__ import annotations

import functools
import logging
from concurrent import futures
from typing import Optional, Tuple

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc, regression_pb2)

from serving import access as access_lib
from serving.core import Call, ServingCore, new_request_id
from serving.errors import ServingError, invalid
from serving.rest import signature_def_map
from serving.tensors import to_ndarray
from serving import LOGGED_METADATA
from serving.traffic import CALLER_METADATA, LABEL_METADATA

log = logging.getLogger(__name__)

# Trailing metadata of a call the rate limit refused: whole seconds to wait, as REST's Retry-After.
RETRY_AFTER_METADATA = 'retry-after'


def _guarded(method):
    """Times the call from arrival to response; returns its request id in the
    initial metadata (`x-request-id`, as REST's X-Request-Id header); checks
    the caller's `authorization` metadata and rate limit before the method runs
    (so before the gateway forwards anything; serving/access.py,
    serving/rate_limit.py); turns ServingError into the call's status (a
    refusal by the rate limit with `retry-after` seconds in the trailing
    metadata) and anything else into INTERNAL."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        call = Call('grpc', _request_id(context))
        try:
            context.send_initial_metadata((('x-request-id', call.request_id),))
            call.caller = _metadata(context, CALLER_METADATA)
            call.credentials = _metadata(context, 'authorization')
            call.peer = access_lib.client_host(context.peer())
            self.core.admit(call, access_lib.GRPC_ENDPOINTS[method.__name__], access_lib.grpc_signatures(request),
                            what=method.__name__)
            response = method(self, request, context, call)
            trailing = ((LABEL_METADATA, call.label),) if call.label else ()
            # which label answered (TF Serving's response model_spec names the version only); a shed log record
            trailing += ((LOGGED_METADATA, 'false'),) if not call.logged else ()
            if trailing:
                context.set_trailing_metadata(trailing)
            return response
        except ServingError as e:
            call.failed(e)
            if call.retry_after is not None:  # refused by the rate limit: REST's Retry-After, as metadata
                context.set_trailing_metadata(((RETRY_AFTER_METADATA, str(call.retry_after)),))
            context.abort(e.code, e.message)
        except Exception as e:
            log.exception('unexpected error in %s', method.__name__)
            call.failed(e)
            context.abort(grpc.StatusCode.INTERNAL, f'Internal error: {type(e).__name__}: {e}')
        finally:
            self.core.finish(call)

    return wrapper


def _version_and_label(model_spec):
    version = model_spec.version.value if model_spec.HasField('version') else None
    return version, (model_spec.version_label or None)


def _answered_by(response, servable, signature: str = ''):
    """Fills the response's model_spec with the version that answered."""
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    if signature:
        response.model_spec.signature_name = signature
    return response


def _metadata(context, key: str) -> Optional[str]:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value
    return None


def _request_id(context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == 'x-request-id':
            return value
    return new_request_id()


def check_input(input_proto, limits) -> None:
    """A Classify/Regress/MultiInference input against `limits` (serving.limits.RequestLimits), the
    context counted once per example, as merging copies it."""
    kind = input_proto.WhichOneof('kind')
    if kind:
        listed = getattr(input_proto, kind)
        context = listed.context.ByteSize() if kind == 'example_list_with_context' else 0
        limits.check_examples((e.ByteSize() for e in listed.examples), context)


def examples_of(input_proto, limits=None) -> list:
    """Serialized tf.Examples of a Classify/Regress/MultiInference input, context merged in, checked
    against `limits` first."""
    if limits is not None:
        check_input(input_proto, limits)
    kind = input_proto.WhichOneof('kind')
    if kind == 'example_list':
        return [e.SerializeToString() for e in input_proto.example_list.examples]
    if kind == 'example_list_with_context':
        context = input_proto.example_list_with_context.context
        serialized = []
        for example in input_proto.example_list_with_context.examples:
            merged = tf.train.Example()
            merged.CopyFrom(context)
            merged.MergeFrom(example)
            serialized.append(merged.SerializeToString())
        return serialized
    raise invalid('Input is empty: set example_list or example_list_with_context')


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServingCore):
        self.core = core

    def _resolve(self, call, api: str, model_spec):
        version, label = _version_and_label(model_spec)
        return self.core.resolve(call, api, model_spec.name, version, label, model_spec.signature_name)

    @_guarded
    def Predict(self, request: predict_pb2.PredictRequest, context, call):  # noqa: N802 (gRPC naming)
        self.core.limits.check_protos(request.inputs)
        try:
            inputs = {k: to_ndarray(v) for k, v in request.inputs.items()}
        except (TypeError, ValueError) as e:
            raise invalid(f'Invalid input tensor: {e}') from None
        servable, signature = self._resolve(call, 'predict', request.model_spec)
        outputs = self.core.predict(call, servable, signature, inputs, output_filter=list(request.output_filter))
        response = _answered_by(predict_pb2.PredictResponse(), servable, signature)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    @_guarded
    def Classify(self, request: classification_pb2.ClassificationRequest, context, call):  # noqa: N802
        servable, signature = self._resolve(call, 'classify', request.model_spec)
        classes, scores = self.core.classify(call, servable, signature, examples_of(request.input, self.core.limits))
        response = _answered_by(classification_pb2.ClassificationResponse(), servable, signature)
        _fill_classifications(response.result, classes, scores)
        return response

    @_guarded
    def Regress(self, request: regression_pb2.RegressionRequest, context, call):  # noqa: N802
        servable, signature = self._resolve(call, 'regress', request.model_spec)
        values = self.core.regress(call, servable, signature, examples_of(request.input, self.core.limits))
        response = _answered_by(regression_pb2.RegressionResponse(), servable, signature)
        for value in values:
            response.result.regressions.add().value = float(value)
        return response

    @_guarded
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context, call):  # noqa: N802
        unsupported = set(request.metadata_field) - {'signature_def'}
        if unsupported or not request.metadata_field:
            raise invalid(f'Metadata field(s) not supported: {sorted(unsupported) or "none requested"}; '
                          'use "signature_def"')
        version, label = _version_and_label(request.model_spec)
        servable = self.core.describe(call, request.model_spec.name, version, label)
        response = _answered_by(get_model_metadata_pb2.GetModelMetadataResponse(), servable)
        response.metadata['signature_def'].Pack(signature_def_map(servable))
        return response

    @_guarded
    def MultiInference(self, request: inference_pb2.MultiInferenceRequest, context, call):  # noqa: N802
        """Classify and Regress tasks on one input, as servables/tensorflow/multi_inference.cc and
        multi_inference_helper.cc (the first task's model spec picks the version) run them."""
        names = {task.model_spec.name for task in request.tasks}
        if not request.tasks:  # server_core.cc ServableRequestFromModelSpec, on the default ModelSpec
            raise invalid('ModelSpec has no name specified.')
        if '' in names:
            raise invalid('Found ModelSpec with an empty model name.')
        if len(names) > 1:
            raise invalid('All ModelSpecs in a MultiInferenceRequest must access the same model name.')
        spec = request.tasks[0].model_spec
        version, label = _version_and_label(spec)
        servable, _ = self.core.resolve(call, 'multi_inference', spec.name, version, label, spec.signature_name)
        tasks = [(task.model_spec.signature_name, task.method_name) for task in request.tasks]
        results = self.core.multi_inference(call, servable, tasks, examples_of(request.input, self.core.limits))
        response = inference_pb2.MultiInferenceResponse()
        for task, result in zip(request.tasks, results):
            item = response.results.add()
            item.model_spec.name = servable.name
            item.model_spec.signature_name = task.model_spec.signature_name
            item.model_spec.version.value = servable.version
            if task.method_name == tf.saved_model.CLASSIFY_METHOD_NAME:
                _fill_classifications(item.classification_result, *result)
            else:
                for value in result:
                    item.regression_result.regressions.add().value = float(value)
        return response


def _fill_classifications(result, classes, scores) -> None:
    for i in range(len(scores if scores is not None else classes)):
        classification = result.classifications.add()
        for j in range(len(scores[i]) if scores is not None else len(classes[i])):
            item = classification.classes.add()
            if classes is not None:
                item.label = classes[i][j].decode()
            if scores is not None:
                item.score = float(scores[i][j])


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServingCore, reload_config=None):
        self.core = core
        self._reload_config = reload_config

    @_guarded
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context, call):  # noqa: N802
        version, label = _version_and_label(request.model_spec)
        if label:
            version = self.core.registry.resolve(request.model_spec.name, None, label).version
        response = get_model_status_pb2.GetModelStatusResponse()
        State = get_model_status_pb2.ModelVersionStatus.State
        for v, status in sorted(self.core.registry.status(request.model_spec.name, version).items()):
            item = response.model_version_status.add(version=v, state=State.Value(status.state))
            item.status.error_code = error_codes_pb2.Code.Value(status.error_code)
            item.status.error_message = status.error_message
        return response

    @_guarded
    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest, context, call):  # noqa: N802
        if self._reload_config is None:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, 'This server was not started from a model config')
        self._reload_config(request.config)
        return model_management_pb2.ReloadConfigResponse()


def create_server(core: ServingCore, address: str, max_message_bytes: int, workers: int = 16,
                  reload_config=None, servicers=None, reuse_port: bool = False) -> Tuple[grpc.Server, int]:
    """A gRPC server (not started) and the port it bound; `servicers` (PredictionService, ModelService)
    replace the embedded server's (the gateway passes its own). gRPC binds with SO_REUSEPORT by default,
    so a second server on a taken port would start and silently share it: off unless asked for
    (serving/workers.py)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix='grpc'),
                         options=[('grpc.max_receive_message_length', max_message_bytes),
                                  ('grpc.max_send_message_length', max_message_bytes),
                                  ('grpc.so_reuseport', 1 if reuse_port else 0)])
    prediction, models = servicers or (PredictionService(core), ModelService(core, reload_config))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if not port:
        raise OSError(f'could not bind the gRPC port at {address}')
    return server, port
