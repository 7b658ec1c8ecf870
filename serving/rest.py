"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest).

    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]              model status
    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/metadata     signatures
    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/openapi.json this REST API, typed by the signatures
                                                                      (not TF Serving's; serving/openapi.py)
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:predict      instances | inputs
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:classify     examples (+ context)
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:regress      examples (+ context)
    GET  /monitoring/prometheus/metrics                               Prometheus metrics
    POST /v1/feedback                                                 ground truth for served requests
                                                                      (not TF Serving's; serving/feedback.py)

Errors answer `{"error": "..."}` with the HTTP status TF Serving maps the
error's canonical code to. A handler never lets an exception escape: anything
unexpected becomes a 500 with the same shape. With a tokens file, every
path but model status and metrics needs `Authorization: Bearer <token>` with
the right role (serving/access.py); a refusal is a 401 or 403 of that shape.
A caller over its rate limit (serving/rate_limit.py) gets 429 with `Retry-After`.
"""

from __future__ import annotations

import contextlib
import http
import http.server
import logging
import re
import socketserver
import threading
from typing import Dict, Optional, Tuple

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from serving import FEEDBACK_PATH, METRICS_PATH, feedback as feedback_lib, json_codec
from serving import access as access_lib, openapi
from serving.core import Call, ServingCore, new_request_id
from serving.errors import ServingError, already_exists, invalid, not_found
from serving import traffic as traffic_lib
from serving.traffic import CALLER_HEADER

log = logging.getLogger(__name__)

_MODEL_PATH = re.compile(
    r'^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?'
    r'(?:(?P<metadata>/metadata)|(?P<openapi>/openapi\.json)|:(?P<verb>predict|classify|regress))?$')

Response = Tuple[int, bytes, str]


def status_json(core: ServingCore, name: str, version: Optional[int]) -> Dict:
    statuses = core.registry.status(name, version)
    return {'model_version_status': [
        {'version': str(v), 'state': s.state, 'status': {'error_code': s.error_code, 'error_message': s.error_message}}
        for v, s in sorted(statuses.items())]}


def signature_def_map(servable) -> get_model_metadata_pb2.SignatureDefMap:
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in servable.signature_defs.items():
        signatures.signature_def[name].CopyFrom(signature_def)
    return signatures


def _metadata_json(servable) -> Dict:
    """As TF Serving prints it (model_servers/get_model_metadata_impl.cc and http_rest_api_handler.cc
    ProcessModelMetadataRequest: JsonPrintOptions with always_print_primitive_fields and
    preserve_proto_field_names), so `"dim": []`, `"unknown_rank": false` and `"defaults": {}` are
    there for clients that read them; testdata/half_plus_two_model_metadata.json is the reference."""
    return {'model_spec': {'name': servable.name, 'signature_name': '', 'version': str(servable.version)},
            'metadata': {'signature_def': json_format.MessageToDict(signature_def_map(servable),
                                                                    preserving_proto_field_name=True,
                                                                    including_default_value_fields=True)}}


class RestApi:
    """Routes one HTTP request to the core; independent of the HTTP server."""

    def __init__(self, core: ServingCore):
        self.core = core

    def handle(self, method: str, path: str, body: bytes, call: Call) -> Response:
        try:
            try:
                response = self._route(method, path.split('?', 1)[0], body, call)
            except RecursionError:  # JSON nested deeper than any tensor: the client's, not ours
                raise invalid('JSON Value: nested too deeply') from None
            except UnicodeError as e:  # e.g. a lone surrogate ("\ud800") where text is expected
                raise invalid(f'JSON Value: not valid Unicode text ({e.reason})') from None
        except ServingError as e:
            call.failed(e)
            response = e.http_status, json_codec.dumps({'error': e.message}), 'application/json'
        except Exception as e:  # the server must answer, whatever happened
            log.exception('unexpected error serving %s %s', method, path)
            call.failed(e)
            response = 500, json_codec.dumps({'error': f'Internal error: {type(e).__name__}: {e}'}), 'application/json'
        self.core.finish(call)
        return response

    def _check(self, call: Call, endpoint: str, signatures=('',), what: str = '') -> None:
        self.core.admit(call, endpoint, signatures, what)  # access, then the caller's rate limit

    def _route(self, method: str, path: str, body: bytes, call: Call) -> Response:
        # Access is checked before anything else is done with the request (serving/access.py).
        if path == METRICS_PATH and method == 'GET':  # open: Prometheus and the liveness probe
            return 200, self.core.metrics.exposition(), 'text/plain; version=0.0.4'
        if path == FEEDBACK_PATH:
            self._check(call, access_lib.FEEDBACK, what=f'{method} {FEEDBACK_PATH}')
            return self._feedback(method, body, call)
        match = _MODEL_PATH.match(path)
        if not match:
            self._check(call, access_lib.OTHER)
            if path.startswith('/v1/'):
                raise invalid(f'Malformed request: {method} {path}')
            raise not_found(f'Malformed request: {method} {path}')
        name, label, verb = match['name'], match['label'], match['verb']
        version = int(match['version']) if match['version'] else None
        if method == 'GET' and not verb:
            if match['openapi']:  # not TF Serving's: the REST API of this version, typed (serving/openapi.py)
                self._check(call, access_lib.METADATA)
                described = self.core.describe(call, name, version, label)
                return self._ok(openapi.document(described.name, described.version, described.signature_defs))
            if self.core.draining and not match['metadata']:
                # Readiness probes ask for model status: a server shutting down says it is not ready,
                # so Kubernetes stops routing to it while it finishes what it has.
                raise ServingError(grpc.StatusCode.UNAVAILABLE, 'The server is shutting down')
            if match['metadata']:
                self._check(call, access_lib.METADATA)
                return self._ok(_metadata_json(self.core.describe(call, name, version, label)))
            if label:
                version = self.core.registry.resolve(name, None, label).version
            return self._ok(status_json(self.core, name, version))
        if method != 'POST' or not verb:
            self._check(call, access_lib.OTHER)
            raise invalid(f'Malformed request: {method} {path}')
        # The signature, which decides the role, is in the body: only a caller who may
        # predict or explain gets the body decoded, and then the signature's role is checked.
        self._check(call, verb, None)
        request = json_codec.parse_body(body)
        signature_name = request.get('signature_name', '')
        if not isinstance(signature_name, str):
            raise invalid("'signature_name' must be a string")
        self._check(call, verb, (signature_name,))
        servable, signature = self.core.resolve(call, verb, name, version, label, signature_name)
        if verb == 'predict':
            inputs, row_format = json_codec.predict_inputs(request, servable.input_specs[signature])
            self.core.limits.check_arrays(inputs)
            outputs = self.core.predict(call, servable, signature, inputs)
            return self._ok(json_codec.predict_response(outputs, row_format))
        examples = json_codec.serialized_examples(request, self.core.limits)
        if verb == 'classify':
            classes, scores = self.core.classify(call, servable, signature, examples)
            return self._ok(json_codec.classify_response(classes, scores))
        values = self.core.regress(call, servable, signature, examples)
        return self._ok(json_codec.regress_response(values))

    def _feedback(self, method: str, body: bytes, call: Call) -> Response:
        """{"feedback": [{"request_id": ..., ["example": i,] "tips": 2.5 | "label": 1}, ...]} or one such object.

        Answers what was stored and which examples already had feedback; 409
        when every record was a duplicate. A batch with a bad record stores nothing.
        """
        store = self.core.feedback
        if store is None:
            raise not_found('This server takes no feedback: start it with --feedback-dir')
        if method != 'POST':
            raise invalid(f'Feedback is POSTed to {FEEDBACK_PATH}')
        request = json_codec.parse_body(body)
        items = request['feedback'] if 'feedback' in request else [request]
        if not isinstance(items, list) or not items:
            raise invalid('"feedback" must be a non-empty list of records')
        try:
            # Ground truth decides canaries: who sent it is kept (the token's name, with access control on).
            result = store.append(feedback_lib.parse_all(items),
                                  source=f'rest:{call.principal}' if call.principal else 'rest')
        except feedback_lib.FeedbackError as e:
            raise invalid(f'Feedback not stored: {e}') from None
        for outcome, count in (('stored', result.stored), ('duplicate', len(result.duplicates))):
            if count:
                self.core.metrics.feedback.labels(outcome).inc(count)
        duplicates = [{feedback_lib.REQUEST_ID: d.request_id, feedback_lib.EXAMPLE: d.example}
                      for d in result.duplicates]
        if not result.stored:
            raise already_exists(f'Feedback already recorded for {len(duplicates)} example(s), e.g. request '
                                 f'{duplicates[0][feedback_lib.REQUEST_ID]!r} example '
                                 f'{duplicates[0][feedback_lib.EXAMPLE]}; the first record stands')
        return self._ok({'stored': result.stored, 'duplicates': duplicates})

    @staticmethod
    def _ok(payload) -> Response:
        return 200, json_codec.dumps(payload), 'application/json'


class _Handler(http.server.BaseHTTPRequestHandler):
    """Every answer is TF Serving's JSON shape, including those http.server writes itself (a garbage
    request line, oversized headers: `send_error`) and methods TF Serving does not route
    (`Malformed request: PUT ...`, 400, as http_rest_api_handler.cc answers them)."""

    protocol_version = 'HTTP/1.1'  # keep-alive: clients reuse connections
    server_version = 'taxi-serving'
    sys_version = ''
    # Small responses go out at once instead of waiting on Nagle's algorithm.
    disable_nagle_algorithm = True
    # A client that stalls (mid-body, or idle on a kept-alive connection)
    # releases its thread after this long, as TF Serving's HTTP timeout does.
    timeout = 30

    def _serve(self, method: str) -> None:
        server: RestServer = self.server  # type: ignore[assignment]
        with server.in_flight():
            self._serve_one(method, server)

    def _serve_one(self, method: str, server: 'RestServer') -> None:
        if server.draining:  # answer, then let the client reconnect to a server that stays
            self.close_connection = True
        call = Call('rest', self.headers.get('X-Request-Id') or new_request_id())
        request_id = call.request_id
        call.caller = self.headers.get(CALLER_HEADER)
        call.credentials = self.headers.get('Authorization')
        call.peer = access_lib.client_host(self.client_address[0] if self.client_address else '')
        refusal = None
        try:
            length = int(self.headers.get('Content-Length') or 0)
        except ValueError:
            length = -1
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            refusal = 411, 'Chunked request bodies are not supported; send a Content-Length'
        elif length < 0:
            refusal = 400, 'Invalid Content-Length header'
        elif length > server.max_request_bytes:
            refusal = 413, f'Request body of {length} bytes exceeds the limit of {server.max_request_bytes} bytes'
        if refusal:
            # The body is not read, so the connection cannot be reused.
            self.close_connection = True
            self._reply(refusal[0], json_codec.dumps({'error': refusal[1]}), 'application/json', request_id)
            return
        try:
            body = self.rfile.read(length) if length else b''
        except TimeoutError:
            self.close_connection = True
            return
        status, payload, content_type = server.api.handle(method, self.path, body, call)
        headers = tuple(traffic_lib.response_headers(call)) if status == 200 else ()
        if call.retry_after is not None:  # refused by the rate limit: when to come back (RFC 9110, 10.2.3)
            headers += (('Retry-After', str(call.retry_after)),)
        self._reply(status, payload, content_type, request_id, headers)

    def _reply(self, status: int, payload: bytes, content_type: str, request_id: str, headers=()) -> None:
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(payload)))
        self.send_header('X-Request-Id', request_id)
        if status == 401:  # only a missing or unknown token answers 401 (RFC 6750)
            self.send_header('WWW-Authenticate', 'Bearer')
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(payload)

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (400 bad request line, 414, 431 oversized headers, 505), as JSON."""
        self.close_connection = True
        # An unparseable request line leaves HTTP/0.9, which has no status line or headers: answer in 1.1.
        self.request_version = self.protocol_version
        text = message or http.HTTPStatus(code).phrase
        try:
            self._reply(code, json_codec.dumps({'error': text}), 'application/json', new_request_id())
        except OSError:  # the client is gone
            pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._serve('GET')

    def do_POST(self):  # noqa: N802
        self._serve('POST')

    def do_PUT(self):  # noqa: N802
        self._serve('PUT')

    def do_DELETE(self):  # noqa: N802
        self._serve('DELETE')

    def do_PATCH(self):  # noqa: N802
        self._serve('PATCH')

    def do_HEAD(self):  # noqa: N802
        self._serve('HEAD')

    def do_OPTIONS(self):  # noqa: N802
        self._serve('OPTIONS')

    def log_message(self, format, *args):  # noqa: A002  (requests are measured and logged elsewhere)
        pass


class RestServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A thread per connection; connections are kept alive between requests."""

    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog (socketserver's default is 5: a burst of 32 clients connecting at once got
    # connection resets). The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024

    def __init__(self, address, api: RestApi, max_request_bytes: int, reuse_port: bool = False):
        # Worker processes bind one port; the kernel spreads connections across them (serving/workers.py).
        self.allow_reuse_port = reuse_port
        self.api = api
        self.max_request_bytes = max_request_bytes
        self.draining = False
        self._active = 0
        self._idle = threading.Condition()
        super().__init__(address, _Handler)

    @contextlib.contextmanager
    def in_flight(self):
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def drain(self, timeout: float) -> int:
        """Stops accepting connections and waits up to `timeout` for requests being served; returns
        how many were still running then. Kept-alive connections get their answer with
        `Connection: close`."""
        self.draining = True
        self.shutdown()
        self.server_close()
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=max(timeout, 0))
            return self._active
