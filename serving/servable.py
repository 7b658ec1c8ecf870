"""One loaded model version: its signatures, run on numpy inputs.

Both front ends (REST and gRPC) decode requests into numpy arrays keyed by a
signature's input names and call `Servable.run`; everything they share about
inputs, dtypes and TF Serving's signature contract lives here.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Dict, Iterator, List, Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving import MISSING_VALUES_FILE, WARMUP_FILE
from serving.errors import ServingError, invalid

DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
MISSING_RULES = ('nan', 'negative', 'empty')


def read_signature_defs(model_dir: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of the SavedModel's serving meta graph (with method names)."""
    with tf.io.gfile.GFile(os.path.join(model_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB), 'rb') as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if 'serve' in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f'{model_dir} has no meta graph tagged "serve"')


def read_warmup_requests(model_dir: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """The version's warm-up records (TF Serving's file); none if it has no file."""
    path = os.path.join(model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        yield prediction_log_pb2.PredictionLog.FromString(record)


def read_missing_values(model_dir: str) -> Dict[str, Dict[str, str]]:
    """signature -> input -> how a request marks that input missing, if the model says.

    A malformed file fails the load: a model that declares markers wrongly
    would otherwise log "missing" values as real ones.
    """
    path = os.path.join(model_dir, MISSING_VALUES_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        declared = json.load(f)
    if not isinstance(declared, dict) or not all(
            isinstance(inputs, dict) and all(rule in MISSING_RULES for rule in inputs.values())
            for inputs in declared.values()):
        raise ValueError(f'{path}: expected {{signature: {{input: one of {", ".join(MISSING_RULES)}}}}}')
    return declared


class Servable:
    """A SavedModel version, loaded. Thread-safe: TF functions may run concurrently."""

    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        self.signature_defs = read_signature_defs(path)
        self.missing_values = read_missing_values(path)
        self._model = tf.saved_model.load(path)
        self._functions = dict(self._model.signatures)
        # Input name -> TensorSpec, per signature.
        self.input_specs: Dict[str, Dict[str, tf.TensorSpec]] = {
            name: dict(fn.structured_input_signature[1]) for name, fn in self._functions.items()}
        self._batcher = None

    def enable_batching(self, batcher) -> None:
        self._batcher = batcher

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()

    def signature(self, signature_name: str) -> str:
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self._functions:
            raise invalid(f'Serving signature name: "{name}" not found in signature def')
        return name

    def method_name(self, signature_name: str) -> str:
        return self.signature_defs[self.signature(signature_name)].method_name

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
            output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        """Runs a signature on a batch; raises ServingError for bad inputs."""
        name = self.signature(signature_name)
        specs = self.input_specs[name]
        missing, extra = set(specs) - set(inputs), set(inputs) - set(specs)
        if missing or extra:
            raise invalid(f'input size does not match signature: {len(inputs)}!={len(specs)} for signature '
                          f'"{name}". Sent extra: {sorted(extra)}. Missing but required: {sorted(missing)}.')
        tensors = {}
        for key, spec in specs.items():
            value = inputs[key]
            expected = np.dtype(object) if spec.dtype == tf.string else np.dtype(spec.dtype.as_numpy_dtype)
            if value.dtype != expected and not (spec.dtype == tf.string and value.dtype.kind == 'S'):
                raise invalid(f'Expects arg[{key}] to be {spec.dtype.name} but '
                              f'{"string" if value.dtype == object else value.dtype.name} is provided')
            if not spec.shape.is_compatible_with(value.shape):
                raise invalid(f'input "{key}" has shape {list(value.shape)}; signature "{name}" expects '
                              f'{spec.shape.as_list()}')
            tensors[key] = value
        if self._batcher is not None:
            outputs = self._batcher.run(self, name, tensors)
        else:
            outputs = self.run_unbatched(name, tensors)
        if output_filter:
            unknown = set(output_filter) - set(outputs)
            if unknown:
                raise invalid(f'output tensor alias not found in signature: {sorted(unknown)}')
            outputs = {k: outputs[k] for k in output_filter}
        return outputs

    def run_unbatched(self, name: str, tensors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        specs = self.input_specs[name]
        try:
            results = self._functions[name](**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in tensors.items()})
        except (TypeError, ValueError) as e:
            raise invalid(str(e).strip().splitlines()[0]) from None
        except tf.errors.OpError as e:
            raise ServingError(_grpc_code(e), _op_error_message(e)) from None
        return {k: v.numpy() for k, v in results.items()}

    def _serialized_examples_call(self, signature_name: str, method: str, examples: List[bytes]):
        name = self.signature(signature_name)
        if self.signature_defs[name].method_name != method:
            raise invalid(f'Expected {method.rsplit("/", 1)[-1]} signature method_name to be {method}. '
                          f'Was: {self.signature_defs[name].method_name}')
        if len(self.input_specs[name]) != 1:
            raise invalid(f'Expected one input tensor for signature "{name}", found {len(self.input_specs[name])}')
        if not examples:
            raise invalid('Input is empty')
        (input_name,) = self.input_specs[name]
        return self.run(name, {input_name: np.array(examples, dtype=object)})

    def classify(self, signature_name: str, examples: List[bytes]):
        """(classes [n, k] bytes, scores [n, k]) for serialized tf.Examples."""
        outputs = self._serialized_examples_call(signature_name, tf.saved_model.CLASSIFY_METHOD_NAME, examples)
        classes, scores = tf.saved_model.CLASSIFY_OUTPUT_CLASSES, tf.saved_model.CLASSIFY_OUTPUT_SCORES
        if classes not in outputs and scores not in outputs:
            raise invalid(f'Expected "{classes}" or "{scores}" in classification signature "{signature_name}"')
        return outputs.get(classes), outputs.get(scores)

    def regress(self, signature_name: str, examples: List[bytes]) -> np.ndarray:
        outputs = self._serialized_examples_call(signature_name, tf.saved_model.REGRESS_METHOD_NAME, examples)
        key = tf.saved_model.REGRESS_OUTPUTS
        if key not in outputs:
            raise invalid(f'Expected tensor "{key}" in regression signature "{signature_name}"')
        return np.reshape(outputs[key], [-1])

    def warm_up(self) -> int:
        """Replays the version's warm-up records; returns how many ran."""
        from tensorflow_serving.apis import input_pb2  # noqa: F401  (registers the Input type)
        count = 0
        for log in read_warmup_requests(self.path):
            kind = log.WhichOneof('log_type')
            if kind == 'predict_log':
                request = log.predict_log.request
                self.run(request.model_spec.signature_name,
                         {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
            elif kind in ('classify_log', 'regress_log'):
                request = getattr(log, kind).request
                examples = [e.SerializeToString() for e in request.input.example_list.examples]
                call = self.classify if kind == 'classify_log' else self.regress
                call(request.model_spec.signature_name, examples)
            else:
                raise ValueError(f'warm-up record of unsupported type {kind}')
            count += 1
        return count


def _op_error_message(error: tf.errors.OpError) -> str:
    """The line of a TF runtime error that says what is wrong, without graph noise."""
    noise = ('Graph execution error', 'Detected at node', '<stack traces', '[[', 'File "')
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    return re.sub(r'\s*\[Op:[^\]]*\]$', '', (useful or lines or ['unknown error'])[0])


def _grpc_code(error: tf.errors.OpError) -> grpc.StatusCode:
    """TensorFlow's error codes are the canonical (gRPC) codes."""
    return {code.value[0]: code for code in grpc.StatusCode}.get(error.error_code, grpc.StatusCode.INTERNAL)


def load(name: str, version: int, path: str, warm: bool = True, batching=None,
         on_batch=None) -> tuple[Servable, float, int]:
    """Loads and warms a version: (servable, seconds, warm-up requests replayed).

    With `batching` (BatchingOptions) the version gets its own Batcher first,
    so warm-up also exercises the batched path.
    """
    start = time.perf_counter()
    servable = Servable(name, version, path)
    if batching is not None:
        from serving.batching import Batcher
        servable.enable_batching(Batcher(batching, on_batch=on_batch))
    try:
        replayed = servable.warm_up() if warm else 0
    except Exception:
        servable.close()
        raise
    return servable, time.perf_counter() - start, replayed

