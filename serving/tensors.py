"""TensorProto to numpy and back, fast for the tensors clients actually send.

`tf.make_ndarray` is slow per tensor, and the raw signature sends one tensor
per input on every gRPC request (docs/performance.md#converting-tensors). Dense numeric tensors
(`tensor_content`) and fully listed typed values are read directly here;
anything else (half-precision, repeated-last-value shorthand, ...) goes to
`tf.make_ndarray`, which stays the reference.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

# dtype enum -> (numpy dtype, name of the repeated field holding the values)
_FIELDS = {
    types_pb2.DT_FLOAT: (np.float32, 'float_val'),
    types_pb2.DT_DOUBLE: (np.float64, 'double_val'),
    types_pb2.DT_INT64: (np.int64, 'int64_val'),
    types_pb2.DT_INT32: (np.int32, 'int_val'),
    types_pb2.DT_BOOL: (np.bool_, 'bool_val'),
    types_pb2.DT_STRING: (object, 'string_val'),
}


def to_ndarray(proto) -> np.ndarray:
    known = _FIELDS.get(proto.dtype)
    if known is None:
        return tf.make_ndarray(proto)
    dtype, field = known
    shape = [d.size for d in proto.tensor_shape.dim]
    size = int(np.prod(shape)) if shape else 1
    if proto.tensor_content and dtype is not object:
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    values = getattr(proto, field)
    if len(values) != size:
        return tf.make_ndarray(proto)
    return np.array(values, dtype=dtype).reshape(shape)


# numpy dtype -> TensorProto dtype, for the dense numeric arrays JSON decodes into.
_NUMERIC = {np.dtype(numpy_dtype): enum for enum, (numpy_dtype, _) in _FIELDS.items() if numpy_dtype is not object}


def to_tensor_proto(array: np.ndarray):
    """A numpy array as a TensorProto: the inverse of `to_ndarray`, for the gateway.

    `tf.make_tensor_proto` is slow per tensor; numeric arrays become `tensor_content`
    and byte strings `string_val` here, directly (docs/performance.md#converting-tensors).
    Anything else goes to `tf.make_tensor_proto`.
    """
    if array.dtype == object or array.dtype.kind == 'S':
        values = array.ravel().tolist()
        if not all(isinstance(v, bytes) for v in values):
            return tf.make_tensor_proto(array)
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    else:
        dtype = _NUMERIC.get(array.dtype)
        if dtype is None:
            return tf.make_tensor_proto(array)
        # tensor_content is the values in host byte order, as TensorFlow writes it.
        proto = tensor_pb2.TensorProto(dtype=dtype, tensor_content=np.ascontiguousarray(array).tobytes())
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto
