"""ML Metadata's gRPC API served over a real store, as a cluster's
`metadata-grpc-service` serves it.

Kubeflow Pipelines runs ml-metadata's own `metadata_store_server` (C++) in
front of MySQL; clients, our `--metadata-grpc` included, speak
`ml_metadata.MetadataStoreService` (ml_metadata/proto/metadata_store_service.proto)
to it. There is no server binary in the ml-metadata wheel, so this serves the
same service from Python: every RPC hands its serialized request to the same
C++ MetadataStore the server wraps (the wheel's `metadata_store_serialized`
functions, one per RPC, as `MetadataStore._pywrap_cc_call` uses them) and
returns its serialized response, or its status code and message as the gRPC
status, which is how `metadata_store_service_impl.cc` answers. RPCs the
wheel's store does not expose answer UNIMPLEMENTED.

One store call at a time: the server's SQLite-backed store serializes writes
too, and SQLite allows one writer.
"""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Optional

import grpc
from ml_metadata.metadata_store.pywrap.metadata_store_extension import metadata_store as serialized
from ml_metadata.proto import metadata_store_pb2, metadata_store_service_pb2

SERVICE = metadata_store_service_pb2.DESCRIPTOR.services_by_name['MetadataStoreService']


def _identity(data: bytes) -> bytes:
    return data


class MetadataService:
    """A loopback `metadata-grpc-service` over the SQLite store at `path`; `address` is HOST:PORT."""

    def __init__(self, path: str, port: int = 0):
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self._store = serialized.CreateMetadataStore(config.SerializeToString(),
                                                     metadata_store_pb2.MigrationOptions().SerializeToString())
        self._lock = threading.Lock()
        self.calls = 0
        handlers = {method.name: grpc.unary_unary_rpc_method_handler(
            self._handler(method.name), request_deserializer=_identity, response_serializer=_identity)
            for method in SERVICE.methods}
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
        self.port = self._server.add_insecure_port(f'127.0.0.1:{port}')
        self.address = f'127.0.0.1:{self.port}'

    def _handler(self, name: str):
        function = getattr(serialized, name, None)

        def handle(request: bytes, context: grpc.ServicerContext) -> Optional[bytes]:
            if function is None:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, f'{name} is not served by this store')
            with self._lock:
                self.calls += 1
                response, message, code = function(self._store, request)
            if code != 0:
                # absl status codes are gRPC's: ALREADY_EXISTS, NOT_FOUND, ...
                context.abort(grpc.StatusCode[_code_name(code)], message.decode('utf-8', 'replace'))
            return response
        return handle

    def start(self) -> 'MetadataService':
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> 'MetadataService':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _code_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return 'UNKNOWN'
