"""How much one request may ask of the server, counted after decoding.

The wire size is capped elsewhere (`max_request_bytes`: REST body, gRPC message).
What a request decodes to can be far larger: a TensorProto may give one value and
a shape of a million rows (TF's repeated-last-value shorthand), and a Classify
request's context is copied into every example. TF Serving has no such limit
(tensor.FromProto materialises whatever the shape says), so one 577-byte request
could take a replica to gigabytes; here it is refused before anything is
allocated, with RESOURCE_EXHAUSTED (gRPC) or 413 (REST).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import numpy as np
from tensorflow.core.framework import types_pb2

from serving import MAX_DECODED_REQUEST_BYTES, MAX_REQUEST_ROWS
from serving.errors import too_large

_ITEM_BYTES = {types_pb2.DT_FLOAT: 4, types_pb2.DT_DOUBLE: 8, types_pb2.DT_INT64: 8, types_pb2.DT_INT32: 4,
               types_pb2.DT_BOOL: 1, types_pb2.DT_HALF: 2, types_pb2.DT_INT8: 1, types_pb2.DT_UINT8: 1,
               types_pb2.DT_INT16: 2, types_pb2.DT_UINT16: 2, types_pb2.DT_UINT32: 4, types_pb2.DT_UINT64: 8,
               types_pb2.DT_COMPLEX64: 8, types_pb2.DT_COMPLEX128: 16, types_pb2.DT_BFLOAT16: 2}
# A string element costs its bytes plus a pointer in the object array that holds it.
_POINTER = 8


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    # Examples (0th-dimension rows) in one request.
    max_rows: int = MAX_REQUEST_ROWS
    # Bytes of the decoded inputs (numeric arrays; strings with their pointers).
    max_bytes: int = MAX_DECODED_REQUEST_BYTES

    def check(self, rows: int, size: int) -> None:
        if rows > self.max_rows:
            raise too_large(f'Request of {rows} rows exceeds the limit of {self.max_rows} rows per request; '
                            'split it into smaller requests')
        if size > self.max_bytes:
            raise too_large(f'Request decodes to {size} bytes, over the limit of {self.max_bytes} bytes per '
                            'request; split it into smaller requests')

    def check_protos(self, tensors: Mapping[str, object]) -> None:
        """TensorProtos, by what their shapes say they hold: before any is decoded."""
        rows, size = 0, 0
        for proto in tensors.values():
            dims = [d.size for d in proto.tensor_shape.dim]
            if any(d < 0 for d in dims):
                continue  # an invalid shape, refused when decoded
            elements = int(np.prod(dims, dtype=object)) if dims else 1
            rows = max(rows, dims[0] if dims else 1)
            if proto.dtype == types_pb2.DT_STRING:
                values = proto.string_val
                payload = sum(len(v) for v in values)
                if values and len(values) < elements:  # the last value repeats
                    payload += (elements - len(values)) * len(values[-1])
                size += payload + elements * _POINTER
            else:
                size += elements * _ITEM_BYTES.get(proto.dtype, 8)
        self.check(rows, size)

    def check_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        rows = max((a.shape[0] if a.ndim else 1 for a in arrays.values()), default=0)
        size = 0
        for array in arrays.values():
            size += array.nbytes
            if array.dtype == object:
                size += sum(len(v) for v in array.flat if isinstance(v, (bytes, str)))
        self.check(rows, size)

    def check_examples(self, examples: Iterable[int], context: int = 0) -> None:
        """Serialized tf.Examples by their sizes, each with a `context` of that many bytes merged in."""
        sizes = list(examples)
        self.check(len(sizes), sum(sizes) + context * len(sizes))
