"""Infra validation: the candidate served as the deployment serves it, before anything is pushed.

Plain logic, no TFX. The candidate's SavedModel is loaded by our TF-Serving-compatible server
(serving/: the same loader, the same warm-up replay) on loopback, then:
- load: the version becomes AVAILABLE, its warm-up requests replayed, within `max_load_seconds`;
- answers: the model's own warm-up requests (`assets.extra/tf_serving_warmup_requests`, one per client
  signature: Predict, Classify, Regress) sent over gRPC as recorded and over REST as TF Serving's JSON,
  every answer well-formed and every number finite;
- latency: the predict requests repeated, p50 and p99 per protocol, p99 within `max_p99_ms`;
- memory: the process's resident memory grown by loading and serving, within `max_memory_mb`;
- behaviour: the model's declarative suite (components/infra_validator/behaviour.py), if given.

TFX's own InfraValidator does the first two with the real `tensorflow/serving` binary, but only locally
(Docker) or under the deprecated KubeflowDagRunner; this runs under every runner, in the task's own
container. It knows no model: requests come from the SavedModel, expectations from the suite.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional

from components.infra_validator.report import Check, Report  # noqa: F401 - Check is part of this API

WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
MODEL_NAME = 'candidate'


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the candidate must meet to be pushed (pipeline config; docs/validation.md#what-it-checks)."""

    max_load_seconds: float = 120.0
    max_p99_ms: float = 500.0
    max_memory_mb: float = 2048.0
    # Repeats of each predict request per protocol for the latency figures.
    latency_requests: int = 50

    def __post_init__(self):
        for name in ('max_load_seconds', 'max_p99_ms', 'max_memory_mb'):
            if not getattr(self, name) > 0:
                raise ValueError(f'infra validation: {name} must be above 0')
        if self.latency_requests < 1:
            raise ValueError('infra validation: latency_requests must be at least 1')

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> 'Limits':
        return cls(**json.loads(text)) if text else cls()


def _rss_mb() -> float:
    """Resident memory of this process (Linux /proc; the pipeline's images are Linux)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return 0.0


def warmup_requests(model_dir: str) -> List:
    """The PredictionLog records of the model's warm-up file ([] without one)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2
    path = os.path.join(model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(path)]


def _finite(value, where: str) -> Optional[str]:
    """Why a decoded answer is not well-formed and finite, or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f'{where} is {value}'
    if isinstance(value, dict):
        return next((why for k, v in value.items() if (why := _finite(v, f'{where}.{k}'))), None)
    if isinstance(value, list):
        return next((why for i, v in enumerate(value) if (why := _finite(v, f'{where}[{i}]'))), None)
    return None


def _tensor_json(tensor) -> object:
    """A TensorProto as TF Serving's JSON: numbers as numbers, strings as {"b64": ...} (json_tensor.cc decodes
    that for any string input)."""
    import tensorflow as tf
    array = tf.make_ndarray(tensor)
    if array.dtype.kind in ('S', 'O', 'U'):
        return _map_nested(array.tolist(), _b64)
    return array.tolist()


def _b64(value) -> Dict[str, str]:
    return {'b64': base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode()}


def _map_nested(value, function):
    return [_map_nested(v, function) for v in value] if isinstance(value, list) else function(value)


def _example_json(example) -> Dict:
    """A tf.Example as TF Serving's REST classify/regress JSON (a feature's one value as a scalar)."""
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof('kind')
        if kind is None:
            continue
        values = list(getattr(feature, kind).value)
        if not values:
            continue
        if kind == 'bytes_list':
            values = [{'b64': base64.b64encode(v).decode()} for v in values]
        out[name] = values[0] if len(values) == 1 else values
    return out


def _rest_call(log) -> tuple:
    """(verb, JSON body) of a warm-up PredictionLog over REST."""
    kind = log.WhichOneof('log_type')
    if kind == 'predict_log':
        request = log.predict_log.request
        return 'predict', {'signature_name': request.model_spec.signature_name,
                           'inputs': {name: _tensor_json(t) for name, t in request.inputs.items()}}
    request = getattr(log, kind).request
    verb = 'classify' if kind == 'classify_log' else 'regress'
    which = request.input.WhichOneof('kind')
    examples = (request.input.example_list.examples if which == 'example_list'
                else request.input.example_list_with_context.examples)
    body = {'signature_name': request.model_spec.signature_name, 'examples': [_example_json(e) for e in examples]}
    if which == 'example_list_with_context':
        body['context'] = _example_json(request.input.example_list_with_context.context)
    return verb, body


def _grpc_call(stub, log, model_name: str, timeout: float):
    """Sends a warm-up PredictionLog's request to the candidate; returns the response proto."""
    kind = log.WhichOneof('log_type')
    request = type(getattr(log, kind).request)()
    request.CopyFrom(getattr(log, kind).request)
    request.model_spec.name = model_name
    method = {'predict_log': stub.Predict, 'classify_log': stub.Classify, 'regress_log': stub.Regress,
              'multi_inference_log': stub.MultiInference}[kind]
    return method(request, timeout=timeout)


def _response_problem(response) -> Optional[str]:
    from google.protobuf import json_format
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    if isinstance(response, predict_pb2.PredictResponse):
        if not response.outputs:
            return 'no outputs'
        for name, tensor in response.outputs.items():
            array = tf.make_ndarray(tensor)
            if array.dtype.kind == 'f' and not all(math.isfinite(float(v)) for v in array.ravel()):
                return f'output {name} has a value that is not finite'
        return None
    return _finite(json_format.MessageToDict(response), 'answer')


def _percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclasses.dataclass(frozen=True)
class Target:
    """A server already serving the candidate (e.g. the real tensorflow/serving image on a cluster, started on
    the candidate's URI): its REST address (http://host:8501), its gRPC address (host:8500), the model name."""

    rest: str
    grpc: str
    model_name: str


def validate(model_dir: str, limits: Limits = Limits(), behaviour_suite: Optional[Dict] = None,
             log: Callable[[str], None] = print, target: Optional[Target] = None) -> Report:
    """Serves the SavedModel at `model_dir` as the deployment would (or, with `target`, checks a server already
    serving it) and runs every check; never raises for a model's fault (a model that does not load is a failed
    check)."""
    report = Report()
    logs = warmup_requests(model_dir)
    if report.add('warm-up requests', bool(logs),
                  f'{len(logs)} in {WARMUP_FILE}' if logs else
                  f'the model has no {WARMUP_FILE}: nothing says how to call it (TF Serving would load it cold)'):
        if target is not None:
            _check_target(report, logs, target, limits, behaviour_suite)
        else:
            _serve_and_check(report, model_dir, logs, limits, behaviour_suite)
    for check in report.checks:
        log(f'infra validation: {"pass" if check.passed else "FAIL"} {check.name}: {check.detail}')
    return report


def _serve_and_check(report: Report, model_dir: str, logs: List, limits: Limits, suite: Optional[Dict]) -> None:
    """Our server on loopback, the candidate as its only version; load time and memory measured here."""
    from serving.server import ModelServer, ServerSettings
    root = tempfile.mkdtemp(prefix='infra-validation-')
    try:
        base = os.path.join(root, MODEL_NAME)
        os.makedirs(base)
        os.symlink(os.path.abspath(model_dir), os.path.join(base, '1'))
        before = _rss_mb()
        started = time.monotonic()
        settings = ServerSettings.for_model(base, MODEL_NAME, rest_port=0, grpc_port=0, settle_seconds=0.0,
                                            poll_seconds=0.2, warm_up=True)
        server = ModelServer(settings)
        try:
            server.start()
            deadline = started + limits.max_load_seconds
            state = None
            while time.monotonic() < deadline:
                status = server.registry.status(MODEL_NAME).get(1)
                state = status.state if status is not None else None
                if state in ('AVAILABLE', 'END'):
                    break
                time.sleep(0.05)
            if _loaded(report, state, started, limits, _load_error(server)):
                _exercise(report, logs, f'http://127.0.0.1:{server.rest_port}', f'127.0.0.1:{server.grpc_port}',
                          MODEL_NAME, limits, suite)
                report.memory_mb = round(_rss_mb() - before, 1)
                report.add('memory', report.memory_mb <= limits.max_memory_mb,
                           f'{report.memory_mb:.0f} MB resident for loading and serving (limit '
                           f'{limits.max_memory_mb:g} MB)')
        finally:
            server.stop(grace=0)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check_target(report: Report, logs: List, target: Target, limits: Limits, suite: Optional[Dict]) -> None:
    """A server started elsewhere: load time is until it reports the model AVAILABLE; its memory is the
    container's to bound (the Deployment's limit), so it is not measured here."""
    import requests
    started = time.monotonic()
    state, why = None, 'no answer'
    while time.monotonic() < started + limits.max_load_seconds:
        try:
            statuses = requests.get(f'{target.rest.rstrip("/")}/v1/models/{target.model_name}',
                                    timeout=5).json().get('model_version_status', [])
            state = next((s.get('state') for s in statuses if s.get('state') == 'AVAILABLE'),
                         statuses[0].get('state') if statuses else None)
            why = json.dumps(statuses)[:200]
        except (requests.RequestException, ValueError) as e:
            why = str(e)[:200]
        if state == 'AVAILABLE':
            break
        time.sleep(0.5)
    if _loaded(report, state, started, limits, why):
        _exercise(report, logs, target.rest.rstrip('/'), target.grpc, target.model_name, limits, suite)


def _loaded(report: Report, state: Optional[str], started: float, limits: Limits, why: str) -> bool:
    report.load_seconds = round(time.monotonic() - started, 3)
    return report.add('load', state == 'AVAILABLE',
                      f'AVAILABLE after {report.load_seconds:.2f} s (limit {limits.max_load_seconds:g} s)'
                      if state == 'AVAILABLE' else
                      f'not AVAILABLE within {limits.max_load_seconds:g} s (state: {state or "none"}; {why})')


def _exercise(report: Report, logs: List, rest_base: str, grpc_address: str, model_name: str, limits: Limits,
              suite: Optional[Dict]) -> None:
    """Every warm-up request over both protocols, the latency, the behaviour suite."""
    import grpc
    import requests
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    channel = grpc.insecure_channel(grpc_address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    session = requests.Session()
    rest = f'{rest_base}/v1/models/{model_name}'
    try:
        _answers(report, logs, stub, session, rest, model_name)
        _latency(report, [r for r in logs if r.WhichOneof('log_type') == 'predict_log'], stub, session, rest,
                 model_name, limits)
        if suite is not None:
            from components.infra_validator import behaviour
            report.checks.extend(behaviour.run(suite, behaviour.RestPredictor(session, rest)))
    finally:
        channel.close()
        session.close()


def _load_error(server) -> str:
    try:
        status = server.registry.status(MODEL_NAME).get(1)
        message = status.error_message if status is not None else 'no status'
    except Exception as e:  # the status itself failed: say so
        message = str(e)
    return (str(message).splitlines() or ['no error reported'])[0][:300]


def _answers(report: Report, logs: Iterable, stub, session, rest: str, model_name: str) -> None:
    for log in logs:
        kind = log.WhichOneof('log_type')
        signature = getattr(log, kind).request.model_spec.signature_name or 'serving_default'
        try:
            problem = _response_problem(_grpc_call(stub, log, model_name, timeout=60))
        except Exception as e:  # a gRPC error is the answer being checked
            problem = _grpc_error(e)
        report.add(f'gRPC {kind.split("_")[0]} {signature}', problem is None, problem or 'well-formed, finite')
        verb, body = _rest_call(log)
        try:
            response = session.post(f'{rest}:{verb}', data=json.dumps(body), timeout=60)
            answer = json.loads(response.text)
            problem = (f'HTTP {response.status_code}: {answer.get("error", "")}'[:300] if response.status_code != 200
                       else _finite(answer, 'answer'))
        except Exception as e:  # a connection or JSON error is the answer being checked
            problem = str(e)[:300]
        report.add(f'REST {verb} {signature}', problem is None, problem or 'well-formed, finite')
        report.requests += 2


def _grpc_error(error: Exception) -> str:
    if hasattr(error, 'code') and hasattr(error, 'details'):
        return f'{error.code().name}: {error.details()}'[:300]
    return str(error)[:300]


def _latency(report: Report, logs: List, stub, session, rest: str, model_name: str, limits: Limits) -> None:
    if not logs:
        report.add('latency', False, 'no predict request among the warm-up requests to time')
        return
    timings: Dict[str, List[float]] = {'grpc': [], 'rest': []}
    bodies = [_rest_call(log) for log in logs]
    for i in range(limits.latency_requests):
        for log, (verb, body) in zip(logs, bodies):
            start = time.perf_counter()
            try:
                _grpc_call(stub, log, model_name, timeout=60)
            except Exception:  # a failed call is counted by the answers check
                pass
            timings['grpc'].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            session.post(f'{rest}:{verb}', data=json.dumps(body), timeout=60)
            timings['rest'].append((time.perf_counter() - start) * 1000)
            report.requests += 2
    report.latency_ms = {protocol: {'p50': round(statistics.median(values), 2),
                                    'p99': round(_percentile(values, 0.99), 2), 'requests': len(values)}
                         for protocol, values in timings.items()}
    worst = max(v['p99'] for v in report.latency_ms.values())
    report.add('latency', worst <= limits.max_p99_ms,
               ', '.join(f'{p} p50 {v["p50"]:.1f} ms p99 {v["p99"]:.1f} ms' for p, v in report.latency_ms.items())
               + f' (limit p99 {limits.max_p99_ms:g} ms)')
