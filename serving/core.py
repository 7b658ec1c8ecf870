"""The serving core both front ends call: resolve, run, measure, log.

REST and gRPC differ only in how they decode requests and encode answers;
version resolution, the model call, metrics and request logging happen here,
once, so both protocols behave identically.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import grpc
import numpy as np

from serving import access as access_lib
from serving.access import AccessControl
from serving.errors import ServingError
from serving.manager import ModelRegistry
from serving.servable import Servable
from serving.feedback import FeedbackStore
from serving.limits import RequestLimits
from serving.rate_limit import RateLimit, RateLimiter, retry_after_seconds
from serving.request_log import RequestLogger
from serving.telemetry import Metrics, batch_size
from serving.traffic import TrafficSplit, route_call


# The rate-limit metric's caller label for callers known only by address (see ServingCore.admit).
ANONYMOUS = 'anonymous'


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclasses.dataclass
class Call:
    """One inference request, from arrival to response, as metrics see it.

    The front end creates it when the request arrives and finishes it once the
    response is encoded, so the latency metric is arrival-to-response; the
    core fills in what it learns on the way (model, version, examples).
    """

    protocol: str
    request_id: str = dataclasses.field(default_factory=new_request_id)
    arrival: float = dataclasses.field(default_factory=time.perf_counter)
    model_name: str = ''
    api: str = ''
    signature_name: str = ''
    version: str = ''
    examples: int = 0
    code: str = 'OK'
    # The caller's key for the canary split (serving/traffic.py), if it sent one.
    caller: Optional[str] = None
    # The label that answered (the request's or the split's) and whether the split chose it.
    label: Optional[str] = None
    split: bool = False
    # The client's Authorization header (gRPC: `authorization` metadata) as sent, for
    # serving/access.py; repr=False so that no log line printing a Call shows a token.
    credentials: Optional[str] = dataclasses.field(default=None, repr=False)
    # The name of the token the call was allowed with (serving/access.py), if any.
    principal: Optional[str] = None
    # The client's address (serving.access.client_host: the IP, no port).
    peer: str = ''
    # Whether the call has been through the rate limit (REST checks access twice: before and after
    # the body names its signature; it is counted once).
    admitted: bool = False
    # Set when the rate limit refused the call: whole seconds the client should wait (Retry-After).
    retry_after: Optional[int] = None
    # False when the request log shed this call's record (serving/request_log.py): the answer says so.
    logged: bool = True

    def failed(self, error: BaseException) -> None:
        self.code = error.code_name if isinstance(error, ServingError) else 'INTERNAL'

    @property
    def identity(self) -> str:
        """Who called, as the request log and the rate limit name them: the token's name when the
        server takes tokens, else the client's address. Never the token itself."""
        return self.principal or self.peer

    @property
    def caller_key(self) -> str:
        """Whom the split keeps on one side: the caller's key, else (not sticky) the request."""
        return self.caller or self.request_id


class ServingCore:
    # The canary split of unaddressed requests (serving/traffic.py); the server sets it
    # when started with a traffic file.
    traffic: Optional[TrafficSplit] = None
    # Who may call what (serving/access.py); the server sets it when started with a tokens
    # file. None: every endpoint is open, as before tokens existed.
    access: Optional[AccessControl] = None
    # How much one request may decode to (serving/limits.py); the server sets its configured ones.
    limits: RequestLimits = RequestLimits()
    # Set when the server starts shutting down: model status answers 503, so readiness fails first.
    draining: bool = False
    # Every caller's rate limit unless its token has its own (serving/rate_limit.py); None: no limit.
    rate_limit: Optional[RateLimit] = None

    def __init__(self, registry: ModelRegistry, metrics: Metrics, request_logger: Optional[RequestLogger] = None,
                 feedback: Optional[FeedbackStore] = None):
        self.registry = registry
        self.metrics = metrics
        self.request_logger = request_logger
        self.feedback = feedback
        self.rate_limiter = RateLimiter()

    def admit(self, call: Call, endpoint: str, signatures: Optional[Sequence[str]] = ('',), what: str = '') -> None:
        """Access control (serving/access.py), then the caller's rate limit: both front ends ask this
        before anything else is done with a request. Open endpoints (model status, metrics) are
        never limited."""
        token = access_lib.check(self.access, call, endpoint, signatures, what)
        if call.admitted or access_lib.required_roles(endpoint, signatures or ('',)) is None:
            return
        call.admitted = True
        limit = token.limit(self.rate_limit) if token is not None else self.rate_limit
        if limit is None:
            return
        key = ('token', token.name) if token is not None else ('address', call.peer)
        wait = self.rate_limiter.admit(key, limit)
        if not wait:
            return
        if endpoint in access_lib.INFERENCE and not call.api:  # counted with the other refusals, as access's are
            call.api = endpoint
        # The label is the token's name (the tokens file bounds them); never an address: every client
        # address would be a new time series, so that a client hopping addresses could grow
        # Prometheus without bound. Who was refused by address is in the request log's callers
        # (monitoring/callers.py), not here.
        self.metrics.rate_limited.labels(token.name if token is not None else ANONYMOUS).inc()
        call.retry_after = retry_after_seconds(wait)
        who = f'token {token.name!r}' if token is not None else f'client {call.peer or "(unknown address)"}'
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f'Rate limit exceeded for {who} ({limit.describe()}): retry after {call.retry_after} s')

    def finish(self, call: Call) -> None:
        """Counts and times a finished inference call (status and metadata calls are not counted)."""
        if not call.api:
            return
        labels = (call.model_name, call.version, call.signature_name, call.api, call.protocol)
        self.metrics.requests.labels(*labels, call.code).inc()
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - call.arrival)
        if call.code == 'OK':
            self.metrics.examples.labels(call.model_name, call.version, call.api).inc(call.examples)
        if call.split and call.version:
            self.metrics.traffic_split.labels(call.model_name, call.label or 'latest', call.version).inc()

    def resolve(self, call: Call, api: str, model_name: str, version: Optional[int], label: Optional[str],
                signature_name: str) -> Tuple[Servable, str]:
        """The servable and signature a request goes to, resolved once: a request
        keeps its servable even if a newer version replaces it meanwhile."""
        # Metric labels take client-supplied names only once they are known to
        # exist: a stream of made-up names must not grow the metrics without bound.
        call.api = api
        servable = route_call(self.traffic, call, model_name, version, label,
                              lambda chosen: self.registry.resolve(model_name, version, chosen))
        call.model_name, call.version = model_name, str(servable.version)
        call.signature_name = servable.signature(signature_name, api)
        return servable, call.signature_name

    def describe(self, call: Call, model_name: str, version: Optional[int], label: Optional[str]) -> Servable:
        """The servable whose signatures a metadata request gets: for an unaddressed one, the version this
        caller's unaddressed inference requests go to (the split's), not the latest."""
        return route_call(self.traffic, call, model_name, version, label,
                          lambda chosen: self.registry.resolve(model_name, version, chosen))

    def predict(self, call: Call, servable: Servable, signature: str, inputs: Mapping[str, np.ndarray],
                output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        outputs = servable.run(signature, inputs, output_filter)
        call.examples = batch_size(inputs, outputs) or 1
        if self.request_logger:
            serialized = _serialized_examples_input(servable.input_specs[signature])
            call.logged = self.request_logger.log(
                servable.name, servable.version, signature, call.request_id, inputs, outputs,
                serialized_input=serialized, missing=servable.missing_values.get(signature), caller=call.identity)
        return outputs

    def classify(self, call: Call, servable: Servable, signature: str, examples: List[bytes]):
        """(classes, scores) for serialized tf.Examples."""
        return self._examples_call(call, servable, signature, 'classify', examples)

    def regress(self, call: Call, servable: Servable, signature: str, examples: List[bytes]) -> np.ndarray:
        return self._examples_call(call, servable, signature, 'regress', examples)

    def multi_inference(self, call: Call, servable: Servable, tasks, examples: List[bytes]) -> list:
        """One result per (signature name, method name) task; each task is logged as a classify or
        regress request on its signature, under the one request id."""
        results = servable.multi_inference(tasks, examples)
        call.examples = len(examples)
        for (signature, method), result in zip(tasks, results):
            self._log_examples_call(call, servable, servable.signature(signature),
                                    'classify' if method.endswith('classify') else 'regress', examples, result)
        return results

    def _examples_call(self, call, servable, signature, api, examples):
        result = getattr(servable, api)(signature, examples)
        call.examples = len(examples)
        self._log_examples_call(call, servable, signature, api, examples, result)
        return result

    def _log_examples_call(self, call, servable, signature, api, examples, result) -> None:
        if self.request_logger:
            outputs = ({'classes': result[0], 'scores': result[1]} if api == 'classify' else {'outputs': result})
            outputs = {k: v for k, v in outputs.items() if v is not None}
            logged = self.request_logger.log(servable.name, servable.version, signature, call.request_id,
                                             {'examples': np.array(examples, dtype=object)}, outputs,
                                             serialized_input='examples', caller=call.identity)
            call.logged = call.logged and logged


def _serialized_examples_input(specs) -> Optional[str]:
    """The input name if the signature takes serialized tf.Examples (one string input)."""
    if len(specs) == 1:
        ((name, spec),) = specs.items()
        if spec.dtype.name == 'string' and name in ('examples', 'inputs'):
            return name
    return None
