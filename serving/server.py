"""The embedded model server: TF Serving's REST and gRPC APIs in one process.

For local runs and tests, where no TF Serving binary exists. It reads the
same inputs TF Serving does (a model base path and name, or a
ModelServerConfig file with version policies and labels, and a
BatchingParameters file) so what is tried here is what the cluster runs.

    taxi-pipeline serve --model-base-path workspace/serving_model/chicago-taxi

It knows no particular model: each version's signatures, warm-up records and
declared missing-value markers come from its SavedModel directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Dict, Optional

from tensorflow_serving.config import model_server_config_pb2

from serving import FEEDBACK_PATH, GRPC_PORT, METRICS_PATH, REST_PORT, protos
from serving import access as access_lib
from serving.access import AccessControl
from serving.batching import BatchingOptions
from serving.core import ServingCore
from serving.errors import invalid
from serving.feedback import FeedbackStore
from serving.limits import RequestLimits
from serving.rate_limit import RateLimit
from serving.grpc_api import create_server as create_grpc_server
from serving.manager import ModelManager, ModelRegistry, VersionPolicy
from serving.rest import RestApi, RestServer
from serving.request_log import RequestLogger
from serving.telemetry import Metrics
from serving.traffic import TrafficSplit

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """One served model: where its versions live, which to load, their labels."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: Dict[str, int] = dataclasses.field(default_factory=dict)


def read_model_config(path: str) -> list[ModelSource]:
    """Models from a TF Serving ModelServerConfig text proto."""
    return sources_from_config(protos.read_text(path, model_server_config_pb2.ModelServerConfig()))


def sources_from_config(config: model_server_config_pb2.ModelServerConfig) -> list[ModelSource]:
    if not config.HasField('model_config_list') or not config.model_config_list.config:
        raise ValueError('the model config lists no models (model_config_list { config { ... } })')
    sources = []
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ValueError('every model config needs a name and a base_path')
        policy_kind = model.model_version_policy.WhichOneof('policy_choice')
        if policy_kind == 'all':
            policy = VersionPolicy(all=True)
        elif policy_kind == 'specific':
            policy = VersionPolicy(specific=tuple(model.model_version_policy.specific.versions))
        else:
            policy = VersionPolicy(latest=model.model_version_policy.latest.num_versions or 1)
        sources.append(ModelSource(model.name, model.base_path, policy, dict(model.version_labels)))
    return sources


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    models: tuple  # of ModelSource
    host: str = '127.0.0.1'
    rest_port: int = REST_PORT
    grpc_port: int = GRPC_PORT
    model_config_file: Optional[str] = None
    # How often the base paths (and the config file) are checked for changes.
    poll_seconds: float = 1.0
    # A version is loaded once none of its files changed for this long.
    settle_seconds: float = 2.0
    config_poll_seconds: float = 60.0
    batching: Optional[BatchingOptions] = None
    request_log_dir: Optional[str] = None
    # When the request log cannot keep up: 'block' (wait, then refuse) or 'shed' (answer, marked unlogged).
    request_log_overflow: str = 'block'
    # Where POST /v1/feedback stores ground truth; None turns the endpoint off.
    feedback_dir: Optional[str] = None
    warm_up: bool = True
    # Larger requests get 413 (REST) or RESOURCE_EXHAUSTED (gRPC).
    max_request_bytes: int = 16 * 1024 * 1024
    # Rows and bytes one request may decode to (serving/limits.py): 413 or RESOURCE_EXHAUSTED too.
    limits: RequestLimits = RequestLimits()
    # On SIGTERM, how long requests being served may take to finish (the Deployment's
    # terminationGracePeriodSeconds less its preStop delay).
    drain_seconds: float = 30.0
    # The canary split's file (serving/traffic.py), checked every config_poll_seconds; None: no split.
    traffic_config_file: Optional[str] = None
    # The tokens file (serving/access.py), re-read when it changes; None: every endpoint is open.
    auth_tokens_file: Optional[str] = None
    # Every caller's rate limit unless its token has its own (serving/rate_limit.py); None: none.
    rate_limit: Optional[RateLimit] = None
    # Classify/Regress only on signatures whose method_name says so (TF Serving's
    # --enable_signature_method_name_check, default false).
    signature_method_name_check: bool = False

    @classmethod
    def for_model(cls, base_path: str, name: Optional[str] = None, policy: VersionPolicy = VersionPolicy(),
                  **overrides) -> 'ServerSettings':
        """One model; its name defaults to the base path's last directory, as the Pusher lays it out."""
        name = name or os.path.basename(os.path.normpath(base_path))
        return cls(models=(ModelSource(name, base_path, policy),), **overrides)

    @classmethod
    def from_config_file(cls, path: str, **overrides) -> 'ServerSettings':
        return cls(models=tuple(read_model_config(path)), model_config_file=path, **overrides)


class ModelServer:
    """Loads models, serves REST and gRPC, and keeps both in line with the disk."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        # First: a malformed file is a ValueError before anything starts.
        traffic = TrafficSplit(settings.traffic_config_file, settings.config_poll_seconds) \
            if settings.traffic_config_file else None
        access = AccessControl(settings.auth_tokens_file) if settings.auth_tokens_file else None
        self.metrics = Metrics()
        self.request_logger = (RequestLogger(settings.request_log_dir, self.metrics, settings.request_log_overflow)
                               if settings.request_log_dir else None)
        self.registry = ModelRegistry({m.name: self._manager(m) for m in settings.models})
        self.core = ServingCore(self.registry, self.metrics, self.request_logger,
                                FeedbackStore(settings.feedback_dir) if settings.feedback_dir else None)
        self.core.traffic = traffic
        self.core.access = access
        self.core.limits = settings.limits
        self.core.rate_limit = settings.rate_limit
        self._stop = threading.Event()
        self._threads = []
        self._rest: Optional[RestServer] = None
        self._serving = False
        # One config change at a time (file watcher and gRPC reloads).
        self._config_lock = threading.Lock()
        self._grpc = None
        self.rest_port = self.grpc_port = None
        self._config_mtime = self._mtime(settings.model_config_file)

    def _manager(self, source: ModelSource) -> ModelManager:
        m = self.metrics
        return ModelManager(
            source.name, source.base_path, source.policy, source.labels, warm_up=self.settings.warm_up,
            batching=self.settings.batching, settle_seconds=self.settings.settle_seconds,
            method_name_check=self.settings.signature_method_name_check,
            on_batch=lambda size: m.batch_size.labels(source.name).observe(size),
            on_loaded=lambda s, seconds, _: (m.load_seconds.labels(s.name).observe(seconds),
                                             m.available.labels(s.name, str(s.version)).set(1)),
            on_unloaded=lambda s: m.available.labels(s.name, str(s.version)).set(0),
            on_failed=lambda version, _: m.load_failures.labels(source.name).inc())

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> 'ModelServer':
        """Loads the versions on disk, then opens both ports.

        A version pushed moments ago is waited for (up to its settle time) so
        a server started right after a pipeline run serves its model at once.
        """
        deadline = time.monotonic() + self.settings.settle_seconds + 1
        self.registry.poll()
        while any(m.settling for m in self.registry.managers) and time.monotonic() < deadline:
            time.sleep(min(self.settings.poll_seconds, 0.2) or 0.2)
            self.registry.poll()
        s = self.settings
        self._rest = RestServer((s.host, s.rest_port), RestApi(self.core), s.max_request_bytes)
        self.rest_port = self._rest.server_address[1]
        self._grpc, self.grpc_port = create_grpc_server(
            self.core, f'{s.host}:{s.grpc_port}', s.max_request_bytes,
            reload_config=self.apply_config if s.model_config_file else None)
        self._grpc.start()
        self._serving = True
        for target, name in ((self._rest.serve_forever, 'rest'), (self._watch, 'watch')):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, grace: float = 1.0) -> int:
        """Drains, then stops: model status answers 503 at once (readiness goes false), both
        listeners stop accepting, requests being served finish (up to `grace` seconds), and only
        then are versions unloaded and the request log completed. Returns how many requests
        were still running when the grace ran out (their answers are lost)."""
        self._stop.set()
        self.core.draining = True
        deadline = time.monotonic() + grace
        stopped_grpc = self._grpc.stop(grace=grace if self._serving else None) if self._grpc else None
        unfinished = 0
        if self._rest:
            if self._serving:  # shutdown() waits for serve_forever, which a failed start never ran
                unfinished = self._rest.drain(deadline - time.monotonic())
            else:
                self._rest.server_close()
        if stopped_grpc is not None:
            stopped_grpc.wait(max(deadline - time.monotonic(), 0) + 1)
        for thread in self._threads:
            thread.join(timeout=5)
        self.registry.close()
        if self.request_logger:
            self.request_logger.close()
        return unfinished

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- watching the disk -----------------------------------------------------

    @staticmethod
    def _mtime(path: Optional[str]) -> Optional[float]:
        try:
            return os.stat(path).st_mtime_ns if path else None
        except OSError:
            return None

    def _watch(self) -> None:
        """Polls the base paths every poll_seconds and the config file every config_poll_seconds. As in
        TF Serving (main.cc, --file_system_poll_wait_seconds, --model_config_file_poll_wait_seconds),
        0 means once, at start (done before this thread), and never again."""
        disk = self.settings.poll_seconds
        config = self.settings.config_poll_seconds if self.settings.model_config_file else 0
        intervals = [s for s in (disk, config) if s > 0]
        if not intervals:
            return
        now = time.monotonic()
        next_disk, next_config = now + disk, now + config
        while not self._stop.wait(min(intervals)):
            try:
                now = time.monotonic()
                if config > 0 and now >= next_config:
                    next_config = now + config
                    self._reload_config_file()
                if disk > 0 and now >= next_disk:
                    next_disk = now + disk
                    self.registry.poll()
            except Exception:  # a bad poll must not stop the watcher, or the server
                log.exception('polling the model directories failed')

    def _reload_config_file(self) -> None:
        mtime = self._mtime(self.settings.model_config_file)
        if mtime == self._config_mtime:
            return
        try:
            sources = read_model_config(self.settings.model_config_file)
        except Exception as e:  # keep serving the last good config
            log.error('ignoring the changed model config %s: %s', self.settings.model_config_file, e)
            return
        self._config_mtime = mtime
        self._apply_sources(sources)

    def apply_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """HandleReloadConfigRequest: serve exactly the models in `config`."""
        try:
            sources = sources_from_config(config)
        except ValueError as e:
            raise invalid(str(e)) from None
        self._apply_sources(sources)

    def _apply_sources(self, sources) -> None:
        with self._config_lock:
            self._apply_sources_locked(sources)

    def _apply_sources_locked(self, sources) -> None:
        managers = {}
        for source in sources:
            try:
                current = self.registry.manager(source.name)
            except Exception:
                current = None
            if current is not None and current.base_path == source.base_path:
                current.update(source.policy, source.labels)
                managers[source.name] = current
            else:
                managers[source.name] = self._manager(source)
        for old in self.registry.managers:
            if managers.get(old.name) is not old:
                old.close()
        self.registry.replace(managers)
        log.info('model config applied: %s', {s.name: s.labels for s in sources})


def serve_until_interrupted(settings: ServerSettings, emit_line=print) -> int:
    """Runs the server until SIGINT or SIGTERM; the `taxi-pipeline serve` command."""
    import signal
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = ModelServer(settings)
    try:
        server.start()
    except OSError as e:
        emit_line(f'error: cannot start the server: {e} (is another server on these ports? see --rest-port, '
                  '--grpc-port)')
        server.stop()
        return 1
    host = settings.host
    emit_line(f'Serving REST on http://{host}:{server.rest_port} and gRPC on {host}:{server.grpc_port}')
    for manager in server.registry.managers:
        versions = ', '.join(map(str, manager.available_versions)) or 'none yet (watching)'
        labels = ', '.join(f'{k}={v}' for k, v in sorted(manager.labels.items()))
        emit_line(f'  model {manager.name!r} from {manager.base_path}: versions {versions}'
                  + (f'; labels {labels}' if labels else ''))
        emit_line(f'  status:  curl http://{host}:{server.rest_port}/v1/models/{manager.name}')
    if server.core.traffic:
        emit_line(f'  canary split: {server.core.traffic.describe()}')
    emit_line(f'  metrics: curl http://{host}:{server.rest_port}{METRICS_PATH}')
    emit_line(f'  access: {access_lib.describe(server.core.access)}')
    emit_line(f'  rate limit: {access_lib.describe_limits(server.core.access, settings.rate_limit)}')
    if settings.request_log_dir:
        emit_line(f'  request log: {settings.request_log_dir}/*.tfrecord')
    if settings.feedback_dir:
        emit_line(f'  feedback: POST http://{host}:{server.rest_port}{FEEDBACK_PATH} -> {settings.feedback_dir}')
    emit_line('Press Ctrl-C to stop.')
    stop.wait()
    emit_line(f'Stopping: no new connections; finishing requests in flight (up to {settings.drain_seconds:g} s), '
              'then completing the request log...')
    unfinished = server.stop(grace=settings.drain_seconds)
    if unfinished:
        emit_line(f'Stopped with {unfinished} request(s) unfinished after {settings.drain_seconds:g} s.')
        return 1
    emit_line('Stopped.')
    return 0
