"""One loaded model version: its signatures, run on numpy inputs.

Both front ends (REST and gRPC) decode requests into numpy arrays keyed by a
signature's input names and call `Servable.run`; everything they share about
inputs, dtypes and TF Serving's signature contract lives here.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Dict, Iterator, List, Mapping, Sequence, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2
from tensorflow.python.saved_model import loader_impl
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


def signature_key(signature_defs: Mapping, signature_name: str, api: str = 'predict') -> str:
    """The signature a request names (the default one if none), refused as TF Serving refuses an
    unknown one: predict_util.cc for Predict, classifier.cc and regressor.cc for the others."""
    name = signature_name or DEFAULT_SIGNATURE
    if name not in signature_defs:
        if api == 'predict':
            raise invalid(f'Serving signature name: "{name}" not found in signature def')
        if api == 'multi_inference':  # multi_inference.cc
            raise invalid(f'Requested signature not found in model graph: {name}')
        raise invalid(f'No signature was found with the name: {name}')
    return name


class Servable:
    """A SavedModel version, loaded as TF Serving loads it. Thread-safe.

    TF Serving loads a SavedModelBundle (the `serve` meta graph into a C++
    Session) and runs a signature with Session::Run, feeding its inputs by
    tensor name (servables/tensorflow/predict_util.cc RunPredict). The same
    here: TF's v1 loader and a C++ callable per signature, so what a request
    may send is what the graph accepts (a [3] tensor fed to a [-1, 1]
    placeholder runs, as in TF Serving), TF 1.x-era SavedModels load, and
    no eager tensor is created per request (those grew the process by ~4.5 KB
    a request: docs/performance.md#serving-memory).
    """

    # Classify and Regress require the signature's method_name to match (TF Serving's
    # --enable_signature_method_name_check; off by default there and here).
    method_name_check = False

    def __init__(self, name: str, version: int, path: str, method_name_check: bool = False):
        self.name, self.version, self.path = name, version, path
        self.method_name_check = method_name_check
        self.missing_values = read_missing_values(path)
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        with self._graph.as_default():
            # SavedModelLoader rather than tf.compat.v1.saved_model.load: the same loader,
            # without the deprecation notice on every load.
            meta_graph = loader_impl.SavedModelLoader(path).load(self._session, [tf.saved_model.SERVING])
        self.signature_defs = dict(meta_graph.signature_def)
        # Input name -> TensorSpec (the SignatureDef's dtype and shape), per signature: how the
        # JSON codec types a request. The shape is documentation, not a check (see above).
        self.input_specs: Dict[str, Dict[str, tf.TensorSpec]] = {
            name: {alias: tf.TensorSpec(tf.TensorShape(info.tensor_shape), tf.as_dtype(info.dtype))
                   for alias, info in signature.inputs.items()}
            for name, signature in self.signature_defs.items()}
        self._callables: Dict[str, tuple] = {}
        self._callables_lock = threading.Lock()
        self._batcher = None

    def enable_batching(self, batcher) -> None:
        self._batcher = batcher

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        # The session is closed when the last request holding this version lets it go
        # (tf.compat.v1.Session.__del__): a request resolved before an unload still runs.

    def signature(self, signature_name: str, api: str = 'predict') -> str:
        return signature_key(self.signature_defs, signature_name, api)

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

    def _callable(self, name: str):
        """(input aliases, output aliases, the C++ callable) of a signature, made on first use."""
        made = self._callables.get(name)
        if made is None:
            with self._callables_lock:
                made = self._callables.get(name)
                if made is None:
                    signature = self.signature_defs[name]
                    inputs, outputs = sorted(signature.inputs), sorted(signature.outputs)
                    options = config_pb2.CallableOptions(
                        feed=[signature.inputs[k].name for k in inputs],
                        fetch=[signature.outputs[k].name for k in outputs])
                    try:
                        # Session::MakeCallable, which TF Serving's Session::Run amounts to. The public
                        # make_callable goes through Session.run, whose Python-side shape check TF
                        # Serving does not have.
                        run = self._session._make_callable_from_options(options)
                    except (tf.errors.OpError, ValueError) as e:
                        raise invalid(f'Signature "{name}" cannot be run: {str(e).strip().splitlines()[0]}') \
                            from None
                    made = self._callables[name] = (inputs, outputs, run)
        return made

    def run_unbatched(self, name: str, tensors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        inputs, outputs, run = self._callable(name)
        try:
            results = run(*[tensors[k] for k in inputs])
        except tf.errors.OpError as e:
            raise ServingError(_grpc_code(e), _op_error_message(e)) from None
        except (TypeError, ValueError) as e:
            raise invalid(str(e).strip().splitlines()[0]) from None
        return dict(zip(outputs, results))

    def _examples_signature(self, signature_name: str, method: str) -> Tuple[str, str]:
        """The signature a Classify or Regress request runs and its input alias, checked as TF Serving
        checks it (servables/tensorflow/classifier.cc GetClassificationSignatureDef and
        PreProcessClassification; regressor.cc likewise). The method-name check is off unless asked
        for (--enable_signature_method_name_check, default false in model_servers/server.h): TF2 and
        Keras export every signature as `tensorflow/serving/predict`."""
        name = self.signature(signature_name, 'classify')
        signature = self.signature_defs[name]
        kind = 'classification' if method == tf.saved_model.CLASSIFY_METHOD_NAME else 'regression'
        if self.method_name_check and signature.method_name != method:
            raise invalid(f'Expected {kind} signature method_name to be {method}. Was: {signature.method_name}')
        if len(signature.inputs) != 1:
            raise invalid('Expected one input Tensor.')
        if kind == 'classification' and len(signature.outputs) not in (1, 2):
            raise invalid(f'Expected one or two output Tensors, found {len(signature.outputs)}')
        if kind == 'regression' and len(signature.outputs) != 1:
            raise invalid('Expected one output Tensor.')
        input_name = (tf.saved_model.CLASSIFY_INPUTS if kind == 'classification'
                      else tf.saved_model.REGRESS_INPUTS)
        if input_name not in signature.inputs:
            raise invalid(f'No {kind} inputs found in signature "{name}" (expected an input named "{input_name}")')
        return name, input_name

    def _serialized_examples_call(self, signature_name: str, method: str, examples: List[bytes]):
        name, input_name = self._examples_signature(signature_name, method)
        if not examples:
            raise invalid('Input is empty')
        return self.run(name, {input_name: np.array(examples, dtype=object)})

    def classify(self, signature_name: str, examples: List[bytes]):
        """(classes [n, k] bytes, scores [n, k]) for serialized tf.Examples, checked as
        classifier.cc PostProcessClassificationResult checks them."""
        outputs = self._serialized_examples_call(signature_name, tf.saved_model.CLASSIFY_METHOD_NAME, examples)
        classes = outputs.get(tf.saved_model.CLASSIFY_OUTPUT_CLASSES)
        scores = outputs.get(tf.saved_model.CLASSIFY_OUTPUT_SCORES)
        if classes is None and scores is None:
            raise invalid('Expected classification signature outputs to contain at least one of "classes" or '
                          f'"scores". Signature "{signature_name or DEFAULT_SIGNATURE}" has: {sorted(outputs)}')
        for what, tensor in (('classes', classes), ('scores', scores)):
            if tensor is None:
                continue
            if tensor.ndim != 2:
                raise invalid(f'Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}')
            if what == 'classes' and tensor.dtype != object:
                raise invalid(f'Expected classes Tensor of DT_STRING. Got: {tf.as_dtype(tensor.dtype).name}')
            if what == 'scores' and tensor.dtype != np.float32:
                raise invalid(f'Expected scores Tensor of DT_FLOAT. Got: {tf.as_dtype(tensor.dtype).name}')
            if len(tensor) != len(examples):
                raise invalid(f'Expected {what} output batch size of {len(examples)}. Got: {len(tensor)}')
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise invalid(f'Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. '
                          f'{scores.shape[1]}')
        return classes, scores

    def regress(self, signature_name: str, examples: List[bytes]) -> np.ndarray:
        outputs = self._serialized_examples_call(signature_name, tf.saved_model.REGRESS_METHOD_NAME, examples)
        key = tf.saved_model.REGRESS_OUTPUTS
        if key not in outputs:
            raise invalid(f'No regression outputs found in signature "{signature_name or DEFAULT_SIGNATURE}" '
                          f'(expected an output named "{key}")')
        values = outputs[key]
        if not (values.ndim == 1 or values.ndim == 2 and values.shape[1] == 1):
            raise invalid('Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got '
                          f'{list(values.shape)}')
        if len(values) != len(examples):
            raise invalid(f'Input batch size did not match output batch size: {len(examples)} vs. {len(values)}')
        if values.dtype != np.float32:
            raise invalid(f'Expected output Tensor of DT_FLOAT.  Got: {tf.as_dtype(values.dtype).name}')
        return np.reshape(values, [-1])

    def multi_inference(self, tasks: Sequence[Tuple[str, str]], examples: List[bytes]) -> list:
        """Classify and Regress tasks (signature name, method name) on the same examples: one result
        per task, in order. Every task is checked before any runs, as multi_inference.cc Infer does."""
        seen = set()
        for signature_name, method in tasks:
            name = signature_key(self.signature_defs, signature_name, 'multi_inference')
            if name in seen:
                raise invalid(f'Duplicate evaluation of signature: {name}')
            seen.add(name)
            if method not in (tf.saved_model.CLASSIFY_METHOD_NAME, tf.saved_model.REGRESS_METHOD_NAME):
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f'Unsupported signature method_name: {method}')
            self._examples_signature(name, method)
        return [self.classify(name, examples) if method == tf.saved_model.CLASSIFY_METHOD_NAME
                else self.regress(name, examples) for name, method in tasks]

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
            elif kind == 'multi_inference_log':
                request = log.multi_inference_log.request
                self.multi_inference([(t.model_spec.signature_name, t.method_name) for t in request.tasks],
                                     [e.SerializeToString() for e in request.input.example_list.examples])
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
         on_batch=None, method_name_check: bool = False) -> tuple[Servable, float, int]:
    """Loads and warms a version: (servable, seconds, warm-up requests replayed).

    With `batching` (BatchingOptions) the version gets its own Batcher first,
    so warm-up also exercises the batched path.
    """
    start = time.perf_counter()
    servable = Servable(name, version, path, method_name_check)
    if batching is not None:
        from serving.batching import Batcher
        servable.enable_batching(Batcher(batching, on_batch=on_batch))
    try:
        replayed = servable.warm_up() if warm else 0
    except Exception:
        servable.close()
        raise
    return servable, time.perf_counter() - start, replayed

