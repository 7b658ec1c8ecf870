"""Upstream (gateway) mode: this server in front of a real TF Serving.

Stock TF Serving logs no requests. Like KServe's agent or Seldon's executor,
the gateway sits in front of it (`taxi-pipeline serve --upstream HOST:PORT`,
a container in the same pod): it serves TF Serving's REST and gRPC APIs to
clients, forwards every call to TF Serving's gRPC API (`serving.upstream`),
and adds what the embedded server has and TF Serving lacks: a request id per
request (the caller's `X-Request-Id` / `x-request-id` if sent, returned and
forwarded), the request log with the version that answered (same files and
format, so the monitor reads either), the same Prometheus metrics plus the
upstream's error counts and latency, and the feedback endpoint.

`gateway_core.GatewayCore` serves REST through the embedded server's
`RestApi`; `gateway_grpc` passes gRPC calls through.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Mapping, Optional

from serving import FEEDBACK_PATH, GRPC_PORT, METRICS_PATH, REST_PORT
from serving import access as access_lib
from serving.access import AccessControl
from serving.feedback import FeedbackStore
from serving.limits import RequestLimits
from serving.rate_limit import RateLimit
from serving.gateway_core import GatewayCore, MissingValueMarkers
from serving.gateway_grpc import create_server as create_grpc_server
from serving.rest import RestApi, RestServer
from serving.request_log import RequestLogger
from serving.telemetry import Metrics
from serving.traffic import TrafficSplit
from serving.upstream import Upstream


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    """What `serve --upstream` runs; fields shared with `server.ServerSettings` mean the same there."""

    upstream: str  # HOST:PORT of TF Serving's gRPC API
    host: str = '127.0.0.1'
    rest_port: int = REST_PORT
    grpc_port: int = GRPC_PORT
    request_log_dir: Optional[str] = None
    # When the request log cannot keep up: 'block' (wait, then refuse) or 'shed' (answer, marked unlogged).
    request_log_overflow: str = 'block'
    feedback_dir: Optional[str] = None
    # model name -> the base path TF Serving serves it from, where the gateway
    # reads each version's missing-value markers; models not named here are
    # logged as received.
    marker_paths: Mapping[str, str] = dataclasses.field(default_factory=dict)
    max_request_bytes: int = 16 * 1024 * 1024
    # Rows and bytes one request may decode to (serving/limits.py), checked before forwarding.
    limits: RequestLimits = RequestLimits()
    # For calls whose client set no deadline (every REST call).
    upstream_timeout_seconds: float = 30.0
    metadata_cache_seconds: float = 10.0
    # The tokens file (serving/access.py); checked here, before anything is forwarded:
    # TF Serving itself has no access control and gets no client credentials.
    auth_tokens_file: Optional[str] = None
    # Every caller's rate limit unless its token has its own (serving/rate_limit.py); None: none.
    rate_limit: Optional[RateLimit] = None
    # The canary split's file (serving/traffic.py); None: no split, TF Serving picks the version.
    traffic_config_file: Optional[str] = None
    # At most this often the gateway looks (one stat) whether the traffic file changed.
    traffic_check_seconds: float = 1.0
    # On SIGTERM, how long requests being served may take to finish (see ServerSettings).
    drain_seconds: float = 30.0
    # Bind the ports with SO_REUSEPORT, so that worker processes share them (serving/workers.py).
    reuse_port: bool = False


class GatewayServer:
    """REST and gRPC front ends on a `GatewayCore`; starts whether or not TF Serving is up yet."""

    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        # First: a malformed tokens file is a ValueError before anything starts.
        access = AccessControl(settings.auth_tokens_file) if settings.auth_tokens_file else None
        # Likewise a malformed traffic file.
        traffic = TrafficSplit(settings.traffic_config_file, settings.traffic_check_seconds) \
            if settings.traffic_config_file else None
        self.metrics = Metrics()
        self.upstream = Upstream(settings.upstream, self.metrics, settings.upstream_timeout_seconds,
                                 settings.max_request_bytes)
        self.request_logger = (RequestLogger(settings.request_log_dir, self.metrics, settings.request_log_overflow)
                               if settings.request_log_dir else None)
        self.core = GatewayCore(self.upstream, self.metrics, self.request_logger,
                                FeedbackStore(settings.feedback_dir) if settings.feedback_dir else None,
                                MissingValueMarkers(settings.marker_paths), settings.metadata_cache_seconds)
        self.core.access = access
        self.core.limits = settings.limits
        self.core.rate_limit = settings.rate_limit
        self.core.traffic = traffic
        self._rest: Optional[RestServer] = None
        self._grpc = None
        self._thread: Optional[threading.Thread] = None
        self.rest_port = self.grpc_port = None

    def start(self) -> 'GatewayServer':
        s = self.settings
        self._rest = RestServer((s.host, s.rest_port), RestApi(self.core), s.max_request_bytes,
                                reuse_port=s.reuse_port)
        self.rest_port = self._rest.server_address[1]
        self._grpc, self.grpc_port = create_grpc_server(self.core, f'{s.host}:{s.grpc_port}', s.max_request_bytes,
                                                        reuse_port=s.reuse_port)
        self._grpc.start()
        self._thread = threading.Thread(target=self._rest.serve_forever, name='rest', daemon=True)
        self._thread.start()
        return self

    def stop(self, grace: float = 1.0) -> int:
        """Drains as the embedded server does (ModelServer.stop): the upstream channel is closed only
        after the last forwarded call has its answer. Returns the requests unfinished after `grace`."""
        self.core.draining = True
        deadline = time.monotonic() + grace
        stopped_grpc = self._grpc.stop(grace=grace if self._thread else None) if self._grpc else None
        unfinished = 0
        if self._rest:
            if self._thread:  # shutdown() waits for serve_forever, which a failed start never ran
                unfinished = self._rest.drain(deadline - time.monotonic())
                self._thread.join(timeout=5)
            else:
                self._rest.server_close()
        if stopped_grpc is not None:
            stopped_grpc.wait(max(deadline - time.monotonic(), 0) + 1)
        self.upstream.close()
        if self.request_logger:
            self.request_logger.close()
        return unfinished

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def serve_until_interrupted(settings: GatewaySettings, emit_line=print, upstream_check_seconds: float = 3.0,
                            started=None, stopping=None) -> int:
    """Runs the gateway until SIGINT or SIGTERM; `taxi-pipeline serve --upstream`. `started(server)` runs
    once it serves, `stopping()` (how many others failed to stop cleanly) when it is asked to stop:
    serving/workers.py's hooks."""
    import signal
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = GatewayServer(settings)
    try:
        server.start()
    except OSError as e:
        emit_line(f'error: cannot start the gateway: {e} (is another server on these ports? see --rest-port, '
                  '--grpc-port)')
        server.stop()
        return 1
    host, rest = settings.host, f'http://{settings.host}:{server.rest_port}'
    emit_line(f'Gateway: REST on {rest} and gRPC on {host}:{server.grpc_port}, forwarding to TF Serving\'s gRPC '
              f'API at {settings.upstream}')
    if server.upstream.wait_until_ready(upstream_check_seconds):
        emit_line(f'  upstream {settings.upstream}: connected')
    else:
        emit_line(f'  upstream {settings.upstream}: not answering yet (after {upstream_check_seconds:.0f} s); '
                  'requests get 503 UNAVAILABLE until it does, then are served without a restart')
    for name, base in sorted(settings.marker_paths.items()):
        emit_line(f'  missing-value markers of model {name!r}: read per answering version from '
                  f'{base}/<version>/assets.extra/missing_values.json')
        emit_line(f'  status:  curl {rest}/v1/models/{name}')
    if not settings.marker_paths:
        emit_line('  missing-value markers: none (no --model-base-path): the request log keeps values as '
                  'received, markers included')
    if server.core.traffic:
        emit_line(f'  canary split: {server.core.traffic.describe()}')
    emit_line(f'  metrics: curl {rest}{METRICS_PATH}')
    emit_line(f'  access: {access_lib.describe(server.core.access)}')
    emit_line(f'  rate limit: {access_lib.describe_limits(server.core.access, settings.rate_limit)}')
    if settings.request_log_dir:
        emit_line(f'  request log: {settings.request_log_dir}/*.tfrecord')
    if settings.feedback_dir:
        emit_line(f'  feedback: POST {rest}{FEEDBACK_PATH} -> {settings.feedback_dir}')
    if started:
        try:
            started(server)
        except Exception as e:
            emit_line(f'error: {e}')
            server.stop()
            if stopping:
                stopping()
            return 1
    emit_line('Press Ctrl-C to stop.')
    stop.wait()
    emit_line(f'Stopping: no new connections; finishing requests in flight (up to {settings.drain_seconds:g} s), '
              'then completing the request log...')
    failed: list = []
    others = threading.Thread(target=lambda: failed.append(stopping())) if stopping else None
    if others:
        others.start()
    unfinished = server.stop(grace=settings.drain_seconds)
    if others:
        others.join()
    if unfinished or any(failed):
        emit_line(f'Stopped with {unfinished} request(s) unfinished after {settings.drain_seconds:g} s'
                  + (f'; {failed[0]} worker(s) did not stop cleanly' if any(failed) else '') + '.')
        return 1
    emit_line('Stopped.')
    return 0
