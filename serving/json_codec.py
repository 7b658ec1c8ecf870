"""TF Serving's REST JSON formats, to numpy inputs and back.

Predict takes the row format (`"instances": [...]`, answered with
`"predictions"`) or the columnar format (`"inputs": ...`, answered with
`"outputs"`). Binary strings travel as `{"b64": "..."}`. Classify and Regress
take `"examples"` (plus optional `"context"`) as JSON objects that become
tf.Examples: integers become int64_list, other numbers float_list, strings
bytes_list. Types are checked strictly, as TF Serving does: "1.5" is not a
float and 1.5 is not an int64.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
import tensorflow as tf

from serving.errors import invalid

_ALLOWED_KINDS = {tf.float32: 'iuf', tf.float64: 'iuf', tf.int64: 'iu', tf.int32: 'iu', tf.bool: 'b'}


def _to_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {'b64'} and isinstance(value['b64'], str):
        try:
            return base64.b64decode(value['b64'], validate=True)
        except binascii.Error:
            raise invalid(f'{where}: "b64" value is not valid base64') from None
    raise invalid(f'{where}: JSON value {json.dumps(value)[:80]} is not of expected type: string')


def _nested_bytes(value: Any, where: str):
    if isinstance(value, list):
        return [_nested_bytes(v, where) for v in value]
    return _to_bytes(value, where)


def _flat(value: Any):
    if isinstance(value, list):
        for item in value:
            yield from _flat(item)
    else:
        yield value


def to_array(value: Any, spec: tf.TensorSpec, where: str) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an array of the spec's dtype."""
    if spec.dtype == tf.string:
        array = np.array(_nested_bytes(value, where), dtype=object)
        if any(isinstance(item, list) for item in array.flat):  # numpy keeps ragged rows as lists
            raise invalid(f'{where}: lists are ragged')
        return array
    try:
        array = np.asarray(value)
    except ValueError:  # uneven rows, or deeper than numpy's 32 dimensions
        raise invalid(f'{where}: lists are ragged or nested too deeply') from None
    allowed = _ALLOWED_KINDS.get(spec.dtype)
    if allowed is None:
        raise invalid(f'{where}: inputs of type {spec.dtype.name} are not supported over JSON')
    if array.dtype.kind not in allowed:
        sample = next((v for v in _flat(value) if np.asarray(v).dtype.kind not in allowed), value)
        raise invalid(f'{where}: JSON value {json.dumps(sample, default=str)[:80]} is not of expected type: '
                      f'{spec.dtype.name}')
    target = np.dtype(spec.dtype.as_numpy_dtype)
    if target.kind == 'i' and array.size:
        # astype would wrap out-of-range integers around (2**63 becomes negative).
        limits = np.iinfo(target)
        if array.dtype.kind == 'u' and array.max() > limits.max or \
                array.dtype.kind == 'i' and (array.max() > limits.max or array.min() < limits.min):
            raise invalid(f'{where}: value out of range for {spec.dtype.name}')
    return array.astype(target)


def parse_body(body: bytes) -> Dict[str, Any]:
    try:
        request = json.loads(body)
    except RecursionError:
        raise invalid('JSON Parse error: nested too deeply') from None
    except ValueError as e:  # malformed, not UTF-8, or an integer of more digits than Python converts
        raise invalid(f'JSON Parse error: {e}') from None
    if not isinstance(request, dict):
        raise invalid('JSON Value: request body is not an object')
    return request


def predict_inputs(request: Mapping[str, Any],
                   specs: Mapping[str, tf.TensorSpec]) -> Tuple[Dict[str, np.ndarray], bool]:
    """Numpy inputs from a predict request; also whether it used the row format."""
    if ('instances' in request) == ('inputs' in request):
        raise invalid("Missing 'inputs' or 'instances' key" if 'instances' not in request else
                      "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
    if 'instances' in request:
        return _rows(request['instances'], specs), True
    return _columns(request['inputs'], specs), False


def _single_input(specs) -> str | None:
    return next(iter(specs)) if len(specs) == 1 else None


def _rows(instances: Any, specs: Mapping[str, tf.TensorSpec]) -> Dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise invalid("'instances' must be a non-empty list")
    single = _single_input(specs)
    named = isinstance(instances[0], dict) and not set(instances[0]) == {'b64'}
    if not named:
        if single is None:
            raise invalid(f"'instances' entries must be objects naming the signature's inputs: {sorted(specs)}")
        return {single: to_array(instances, specs[single], "'instances'")}
    keys = set(instances[0])
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) != keys:
            raise invalid(f"Failed to process element: {i} of 'instances' list. All objects in the list must "
                          f"have the same keys: {sorted(keys)}")
    missing, extra = set(specs) - keys, keys - set(specs)
    if missing or extra:
        raise invalid(f"'instances' do not match the signature's inputs. Sent extra: {sorted(extra)}. "
                      f'Missing but required: {sorted(missing)}.')
    return {key: to_array([instance[key] for instance in instances], specs[key], f"'instances' key: {key}")
            for key in specs}


def _columns(inputs: Any, specs: Mapping[str, tf.TensorSpec]) -> Dict[str, np.ndarray]:
    single = _single_input(specs)
    if not isinstance(inputs, dict) or (single is not None and set(inputs) == {'b64'}):
        if single is None:
            raise invalid(f"'inputs' must be an object naming the signature's inputs: {sorted(specs)}")
        return {single: to_array(inputs, specs[single], "'inputs'")}
    missing, extra = set(specs) - set(inputs), set(inputs) - set(specs)
    if missing or extra:
        raise invalid(f"'inputs' do not match the signature's inputs. Sent extra: {sorted(extra)}. "
                      f'Missing but required: {sorted(missing)}.')
    arrays = {key: to_array(inputs[key], specs[key], f"'inputs' key: {key}") for key in specs}
    sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if len(sizes) > 1:
        raise invalid(f"'inputs' tensors have different batch sizes: {sorted(map(str, sizes))}")
    return arrays


def _jsonable(array: np.ndarray, name: str):
    if array.dtype == object or array.dtype.kind == 'S':
        # TF Serving returns binary outputs (names ending in _bytes) base64-encoded.
        if name.endswith('_bytes'):
            return np.vectorize(lambda b: {'b64': base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
        return np.vectorize(lambda b: b.decode('utf-8', 'replace'), otypes=[object])(array).tolist()
    return array.tolist()


def predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> Dict[str, Any]:
    """TF Serving's util/json_tensor.cc MakeJsonFromTensors: the row format needs every output batched
    to one size (a scalar output is refused there, not crashed on); the columnar format writes any."""
    if row_format:
        batch = None
        for name, array in sorted(outputs.items()):
            if array.ndim == 0:
                raise invalid(f'Tensor name: {name} has no shape information ')
            if batch is not None and len(array) != batch:
                raise invalid(f'Tensor name: {name} has inconsistent batch size: {len(array)} expecting: {batch}')
            batch = len(array)
        if len(outputs) == 1:
            ((name, array),) = outputs.items()
            return {'predictions': _jsonable(array, name)}
        columns = {name: _jsonable(array, name) for name, array in outputs.items()}
        return {'predictions': [{name: columns[name][i] for name in columns} for i in range(batch)]}
    if len(outputs) == 1:
        ((name, array),) = outputs.items()
        return {'outputs': _jsonable(array, name)}
    return {'outputs': {name: _jsonable(array, name) for name, array in outputs.items()}}


def _feature(value: Any, where: str) -> tf.train.Feature:
    values = value if isinstance(value, list) else [value]
    if not values:
        return tf.train.Feature()
    if all(isinstance(v, bool) for v in values) or any(v is None for v in values):
        raise invalid(f'{where}: JSON value {json.dumps(value)[:80]} is not a number, string or list of them')
    if all(isinstance(v, int) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, (int, float)) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[_to_bytes(v, where) for v in values]))


def to_example(features: Mapping[str, Any], where: str) -> tf.train.Example:
    if not isinstance(features, dict):
        raise invalid(f'{where} is not a JSON object')
    example = tf.train.Example()
    for name, value in features.items():
        example.features.feature[name].CopyFrom(_feature(value, f'{where} feature {name}'))
    return example


def serialized_examples(request: Mapping[str, Any], limits=None) -> List[bytes]:
    """Serialized tf.Examples from a classify/regress body, context merged in; `limits`
    (serving.limits.RequestLimits) are checked before the context is copied into every example."""
    examples = request.get('examples')
    if not isinstance(examples, list) or not examples:
        raise invalid("Expected 'examples' to be a non-empty list of JSON objects")
    context = request.get('context')
    base = to_example(context, "'context'") if context is not None else tf.train.Example()
    if limits is not None:
        limits.check(len(examples), base.ByteSize() * len(examples))
    serialized = []
    for i, features in enumerate(examples):
        example = tf.train.Example()
        example.CopyFrom(base)
        example.MergeFrom(to_example(features, f"'examples'[{i}]"))
        serialized.append(example.SerializeToString())
    if limits is not None:
        limits.check_examples(map(len, serialized))
    return serialized


# TF Serving's key for classify and regress answers (util/json_tensor.cc kClassifyRegressResponseKey,
# "results" in its json_tensor_test.cc; the header's comment says "result", the code does not).
RESULTS = 'results'


def classify_response(classes, scores) -> Dict[str, Any]:
    """A score-only signature's labels are "", as TF Serving writes a class whose label was never set."""
    results = []
    for i in range(len(scores if scores is not None else classes)):
        labels = [c.decode() for c in classes[i]] if classes is not None else [''] * len(scores[i])
        row_scores = scores[i].tolist() if scores is not None else [math.nan] * len(labels)
        results.append([[label, score] for label, score in zip(labels, row_scores)])
    return {RESULTS: results}


def regress_response(values) -> Dict[str, Any]:
    return {RESULTS: values.tolist()}


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(',', ':')).encode()
