"""The canary traffic split (serving/traffic.py), in the embedded server and the gateway.

Two versions that answer differently (y = 1 * x and y = 2 * x), labelled
stable=1 and canary=2: unaddressed requests split by the traffic file's share,
each caller sticky on one side (the same in every process), the answer naming
its version and label; a changed file takes effect without a restart; pinned
requests are not split; a missing canary or stable label costs no request;
the split is counted; a malformed file stops the server from starting and,
later, leaves the last good split in place."""

import http.client
import json
import logging
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from cli import main as cli
from serving import METRICS_PATH, traffic
from serving.gateway import GatewayServer, GatewaySettings
from serving.manager import VersionPolicy
from serving.server import ModelServer, ModelSource, ServerSettings
from serving.traffic import CALLER_HEADER, LABEL_HEADER, VERSION_HEADER, read_split, route, write_split
from support.polling import wait_for
from support.repo_files import REPO

pytestmark = pytest.mark.component


MODEL = 'scaler'
SLOPES = {1: 1.0, 2: 2.0}  # version -> y / x, so an answer tells which version gave it
PATH = f'/v1/models/{MODEL}'
SHARE = 20.0


class Scaler(tf.Module):
    def __init__(self, slope):
        super().__init__()
        self.slope = tf.constant(slope)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
    def scale(self, x):
        return {'y': self.slope * x}


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
    base = tmp_path_factory.mktemp('models') / MODEL
    for version, slope in SLOPES.items():
        module = Scaler(slope)
        tf.saved_model.save(module, str(base / str(version)), signatures={'serving_default': module.scale})
        for root, _, files in os.walk(base / str(version)):  # settled, so the server loads it at once
            for name in files:
                os.utime(os.path.join(root, name), (1_600_000_000, 1_600_000_000))
    return str(base)


def _write_config(path, base_path, labels):
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=MODEL, base_path=base_path, model_platform='tensorflow')
    model.model_version_policy.specific.versions.extend(sorted(SLOPES))
    model.version_labels.update(labels)
    path.write_text(text_format.MessageToString(config))
    return str(path)


@pytest.fixture
def make_server(base_path, tmp_path):
    """Embedded servers from a config file with `labels` and a traffic file at `percent` (stopped after the test)."""
    started = []

    def make(labels=None, percent=SHARE):
        labels = {'stable': 1, 'canary': 2} if labels is None else labels
        config = _write_config(tmp_path / f'models{len(started)}.config', base_path, labels)
        split = str(tmp_path / f'traffic{len(started)}.json')
        if percent is not None:
            write_split(split, MODEL, percent)
        settings = ServerSettings.from_config_file(config, rest_port=0, grpc_port=0, poll_seconds=0.1,
                                                   config_poll_seconds=0.1, traffic_config_file=split)
        server = ModelServer(settings).start()
        started.append(server)
        return server, split

    yield make
    for server in started:
        server.stop()


class Rest:
    """One kept-alive connection: thousands of requests in seconds."""

    def __init__(self, server):
        self.connection = http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=30)

    def predict(self, path=f'{PATH}:predict', caller=None, request_id=None):
        """(status, the answering version as its output tells, response headers)."""
        headers = {'Content-Type': 'application/json'}
        if caller is not None:
            headers[CALLER_HEADER] = caller
        if request_id is not None:
            headers['X-Request-Id'] = request_id
        self.connection.request('POST', path, b'{"instances": [1.0]}', headers)
        response = self.connection.getresponse()
        body = json.loads(response.read())
        if response.status != 200:
            return response.status, body, response.headers
        (y,) = body['predictions']
        version = {slope: v for v, slope in SLOPES.items()}[y]
        return response.status, version, response.headers

    def get(self, path):
        self.connection.request('GET', path)
        response = self.connection.getresponse()
        return response.read().decode()

    def close(self):
        self.connection.close()


def _metric(server, name, **labels):
    rest = Rest(server)
    try:
        text = rest.get(METRICS_PATH)
    finally:
        rest.close()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def _expected_side(key, percent=SHARE):
    return route(MODEL, {MODEL: percent}, key)


def _grpc_predict(server, caller=None, version=None):
    """(answering version per model_spec, its output's version, trailing metadata)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    if version is not None:
        request.model_spec.version.value = version
    request.inputs['x'].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    metadata = [(traffic.CALLER_METADATA, caller)] if caller else None
    with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response, call = stub.Predict.with_call(request, metadata=metadata, timeout=30)
    (y,) = tf.make_ndarray(response.outputs['y'])
    assert not response.model_spec.version_label  # as TF Serving answers: the version, never a label
    answered_by = {slope: v for v, slope in SLOPES.items()}[float(y)]
    return response.model_spec.version.value, answered_by, dict(call.trailing_metadata())


# --- the routing function ----------------------------------------------------------------------

def test_the_side_is_a_sticky_hash_every_process_agrees_on():
    keys = [f'caller-{i}' for i in range(100)]
    here = [traffic.canary_position(MODEL, k) for k in keys]
    # Another interpreter with another hash seed: Python's hash() would differ there.
    script = (f'from serving import traffic; print([traffic.canary_position({MODEL!r}, f"caller-{{i}}") '
              'for i in range(100)])')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=REPO, timeout=60,
                         env={**os.environ, 'PYTHONHASHSEED': '12345', 'PYTHONPATH': REPO})
    assert json.loads(out.stdout) == here, out.stderr
    assert all(0 <= p < 1 for p in here)
    # The model is part of the hash: one model's canary callers are not every model's.
    assert [traffic.canary_position('other', k) for k in keys] != here
    assert {route(MODEL, {MODEL: 0.0}, k) for k in keys} == {'stable'}
    assert {route(MODEL, {MODEL: 100.0}, k) for k in keys} == {'canary'}
    assert route(MODEL, {}, 'anyone') is None


def test_the_routing_function_gives_the_share_over_many_callers():
    sides = [_expected_side(f'user-{i}') for i in range(10_000)]
    assert abs(sides.count('canary') / len(sides) - SHARE / 100) < 0.015
    # Raising the share only moves callers from stable to canary, never back.
    wider = [_expected_side(f'user-{i}', 30.0) for i in range(10_000)]
    assert all(w == 'canary' for s, w in zip(sides, wider) if s == 'canary')


# --- the file ---------------------------------------------------------------------------------

def test_write_split_keeps_other_models_and_read_split_reads_it_back(tmp_path):
    path = str(tmp_path / 'traffic.json')
    assert read_split(path) == {}  # no file: no split
    write_split(path, 'a', 10)
    write_split(path, 'b', 0.5)
    write_split(path, 'a', 25.0)
    assert read_split(path) == {'a': 25.0, 'b': 0.5}
    assert os.listdir(tmp_path) == ['traffic.json']  # written through a rename, no temporary file left


@pytest.mark.parametrize('percent', [-1, 100.5, float('nan'), '10', True, None])
def test_write_split_refuses_a_percent_outside_0_to_100(tmp_path, percent):
    path = tmp_path / 'traffic.json'
    write_split(str(path), MODEL, 10)
    before = path.read_text()
    with pytest.raises(ValueError, match='canary_percent must be a number from 0 to 100'):
        write_split(str(path), MODEL, percent)
    assert path.read_text() == before


@pytest.mark.parametrize('text, problem', [
    ('', 'not valid JSON'),
    ('{"models": {"scaler": {"canary_percent": 10}}', 'not valid JSON'),
    ('{"models": {"scaler": {"canary_percent": NaN}}}', 'NaN'),
    ('[]', 'only a "models" object'),
    ('{"model": {}}', 'only a "models" object'),
    ('{"models": {"scaler": 10}}', 'expected {"canary_percent"'),
    ('{"models": {"scaler": {"canary_pct": 10}}}', 'expected {"canary_percent"'),
    ('{"models": {"scaler": {"canary_percent": 110}}}', 'from 0 to 100, got 110'),
    ('{"models": {"scaler": {"canary_percent": "10"}}}', "from 0 to 100, got '10'"),
])
def test_a_malformed_file_is_refused_naming_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / 'traffic.json'
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        read_split(str(path))
    assert str(path) in str(error.value) and problem in str(error.value)


# --- the embedded server ------------------------------------------------------------------------

def test_ten_thousand_callers_split_by_the_share_each_told_its_version_and_label(make_server):
    server, _ = make_server()
    rest = Rest(server)
    answered = {}
    for i in range(10_000):
        key = f'user-{i}'
        status, version, headers = rest.predict(caller=key)
        assert status == 200
        label = 'canary' if version == 2 else 'stable'
        assert label == _expected_side(key)  # the side every replica would choose
        assert (headers[VERSION_HEADER], headers[LABEL_HEADER]) == (str(version), label)
        answered[key] = version
    rest.close()
    canary = sum(v == 2 for v in answered.values())
    assert abs(canary / len(answered) - SHARE / 100) < 0.015
    assert _metric(server, 'tfserving_traffic_split_total', model_name=MODEL, label='canary', version='2') == canary
    assert _metric(server, 'tfserving_traffic_split_total', model_name=MODEL, label='stable',
                   version='1') == 10_000 - canary


def test_a_caller_keeps_its_side_and_without_a_key_each_request_is_split(make_server):
    server, _ = make_server(percent=50.0)
    rest = Rest(server)
    for key in ('alice', 'bob', 'carol', 'dave'):
        side = _expected_side(key, 50.0)
        answers = {rest.predict(caller=key)[2][LABEL_HEADER] for _ in range(20)}
        assert answers == {side}
    # No caller key: the request id decides, so the split holds but is not sticky.
    sides = [rest.predict(request_id=f'request-{i}')[2][LABEL_HEADER] for i in range(200)]
    assert sides == [_expected_side(f'request-{i}', 50.0) for i in range(200)]
    assert 60 < sides.count('canary') < 140
    rest.close()


def test_grpc_is_split_the_same_way_and_says_the_label_in_trailing_metadata(make_server):
    server, _ = make_server(percent=50.0)
    for key in ('alice', 'bob', 'carol', 'dave', 'erin', 'frank'):
        version, answered_by, trailing = _grpc_predict(server, caller=key)
        assert version == answered_by
        assert trailing[traffic.LABEL_METADATA] == _expected_side(key, 50.0) == {1: 'stable', 2: 'canary'}[version]
    version, _, trailing = _grpc_predict(server, caller='alice', version=2)  # pinned: served as asked
    assert version == 2 and traffic.LABEL_METADATA not in trailing


@pytest.fixture
def traffic_log():
    """What serving.traffic logs (its own handler: the CLI's console logging stops propagation)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger(traffic.__name__)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_changed_file_takes_effect_without_a_restart(make_server, traffic_log):
    server, split = make_server()
    rest = Rest(server)
    canary_callers = [k for k in (f'user-{i}' for i in range(100)) if _expected_side(k) == 'canary']
    assert {rest.predict(caller=k)[1] for k in canary_callers} == {2}
    write_split(split, MODEL, 0)
    wait_for(lambda: rest.predict(caller=canary_callers[0])[1] == 1)
    assert {rest.predict(caller=f'user-{i}')[1] for i in range(300)} == {1}
    # A malformed file later: the last good split stays (and the error is logged).
    with open(split, 'w') as f:
        f.write('{"models": {"scaler": {"canary_percent": 200}}}')
    wait_for(lambda: rest.predict(caller='x') and any('keeping the last good traffic split' in r.getMessage()
                                                      and 'got 200' in r.getMessage() for r in traffic_log))
    assert {rest.predict(caller=k)[1] for k in canary_callers} == {1}
    rest.close()


def test_pinned_requests_are_not_split(make_server):
    server, _ = make_server(percent=100.0)
    rest = Rest(server)
    for path, version, label in ((f'{PATH}/versions/1:predict', 1, None), (f'{PATH}/versions/2:predict', 2, None),
                                 (f'{PATH}/labels/stable:predict', 1, 'stable'),
                                 (f'{PATH}/labels/canary:predict', 2, 'canary')):
        for i in range(20):
            status, answered, headers = rest.predict(path, caller=f'user-{i}')
            assert (status, answered, headers[VERSION_HEADER], headers.get(LABEL_HEADER)) == (200, version,
                                                                                             str(version), label)
    rest.close()
    assert _metric(server, 'tfserving_traffic_split_total') == 0


def test_a_model_without_an_entry_is_served_as_before(make_server, tmp_path):
    server, split = make_server(percent=None)  # the file does not exist
    rest = Rest(server)
    status, version, headers = rest.predict(caller='alice')
    assert (status, version, headers.get(LABEL_HEADER)) == (200, 2, None)  # the latest, as TF Serving answers
    with open(split, 'w') as f:
        json.dump({'models': {'another-model': {'canary_percent': 50}}}, f)
    wait_for(lambda: server.core.traffic.split)
    assert {rest.predict(caller=f'user-{i}')[1] for i in range(50)} == {2}
    rest.close()


@pytest.mark.parametrize('labels, served', [
    ({'stable': 1, 'canary': 7}, {1}),  # the canary's version is not loaded: stable answers
    ({'stable': 1}, {1}),  # no canary label
    ({'canary': 2}, {2}),  # no stable label: the latest, as without a split
])
def test_a_missing_side_fails_no_request(make_server, labels, served):
    server, _ = make_server(labels, percent=50.0)
    rest = Rest(server)
    answers = [rest.predict(caller=f'user-{i}') for i in range(200)]
    rest.close()
    assert {status for status, _, _ in answers} == {200}
    assert {version for _, version, _ in answers} == served
    assert _metric(server, 'tfserving_requests_total', code='OK') == 200


def test_a_malformed_file_stops_the_server_from_starting(base_path, tmp_path, capsys):
    split = tmp_path / 'traffic.json'
    split.write_text('{"models": {"scaler": {"canary_percent": -5}}}')
    config = _write_config(tmp_path / 'models.config', base_path, {'stable': 1})
    with pytest.raises(ValueError, match='canary_percent must be a number from 0 to 100'):
        ModelServer(ServerSettings.from_config_file(config, rest_port=0, grpc_port=0, traffic_config_file=str(split)))
    with pytest.raises(ValueError, match=str(split)):
        GatewayServer(GatewaySettings(upstream='127.0.0.1:1', traffic_config_file=str(split)))
    for upstream in ([], ['--upstream', '127.0.0.1:1']):
        argv = ['serve', '--model-config-file', config] if not upstream else ['serve'] + upstream
        assert cli.main(argv + ['--rest-port', '0', '--grpc-port', '0', '--traffic-config', str(split)]) == 2
        assert str(split) in capsys.readouterr().err


# --- the gateway ---------------------------------------------------------------------------------

@pytest.fixture
def make_gateway(base_path, tmp_path):
    """A gateway with a traffic file, in front of an embedded server standing in for TF Serving (which has
    no split: unaddressed, it answers with the latest version)."""
    started = []

    def make(labels=None, percent=SHARE, request_log_dir=None):
        labels = {'stable': 1, 'canary': 2} if labels is None else labels
        source = ModelSource(MODEL, base_path, VersionPolicy(all=True), labels)
        tf_serving = ModelServer(ServerSettings(models=(source,), rest_port=0, grpc_port=0, poll_seconds=0.1))
        started.append(tf_serving.start())
        split = str(tmp_path / f'traffic{len(started)}.json')
        write_split(split, MODEL, percent)
        gateway = GatewayServer(GatewaySettings(upstream=f'127.0.0.1:{tf_serving.grpc_port}', rest_port=0,
                                                grpc_port=0, traffic_config_file=split, traffic_check_seconds=0.1,
                                                request_log_dir=request_log_dir))
        started.append(gateway.start())
        return gateway, split

    yield make
    for server in reversed(started):
        server.stop()


def test_the_gateway_splits_rest_and_grpc_as_the_embedded_server_does(make_gateway):
    gateway, split = make_gateway()
    rest = Rest(gateway)
    canary = 0
    for i in range(2000):
        key = f'user-{i}'
        status, version, headers = rest.predict(caller=key)
        assert status == 200 and {1: 'stable', 2: 'canary'}[version] == _expected_side(key)
        assert (headers[VERSION_HEADER], headers[LABEL_HEADER]) == (str(version), _expected_side(key))
        canary += version == 2
    assert abs(canary / 2000 - SHARE / 100) < 0.03
    for key in ('alice', 'bob', 'carol', 'dave', 'erin', 'frank'):
        version, answered_by, trailing = _grpc_predict(gateway, caller=key)
        assert version == answered_by and trailing[traffic.LABEL_METADATA] == _expected_side(key)
    assert _metric(gateway, 'tfserving_traffic_split_total', label='canary', version='2') == canary + sum(
        _expected_side(k) == 'canary' for k in ('alice', 'bob', 'carol', 'dave', 'erin', 'frank'))

    # Pinned requests go up as asked.
    assert rest.predict(f'{PATH}/labels/canary:predict', caller='alice')[1] == 2
    assert rest.predict(f'{PATH}/versions/1:predict', caller='bob')[1] == 1
    assert _grpc_predict(gateway, caller='carol', version=2)[0] == 2

    # A changed file: within the gateway's check interval, no restart.
    write_split(split, MODEL, 0)
    wait_for(lambda: all(rest.predict(caller=f'user-{i}')[1] == 1 for i in range(20)))
    assert {rest.predict(caller=f'user-{i}')[1] for i in range(300)} == {1}
    assert {_grpc_predict(gateway, caller=f'user-{i}')[0] for i in range(20)} == {1}
    rest.close()


@pytest.mark.parametrize('labels, served', [
    ({'stable': 1, 'canary': 7}, {1}),  # TF Serving: "Servable not found" for the canary's version
    ({'stable': 1}, {1}),  # TF Serving: "Unrecognized servable version label: canary"
    ({'canary': 2}, {2}),  # no stable label: the latest
])
def test_the_gateway_fails_no_request_when_a_side_is_missing(make_gateway, labels, served, traffic_log):
    gateway, _ = make_gateway(labels, percent=50.0)
    rest = Rest(gateway)
    answers = [rest.predict(caller=f'user-{i}') for i in range(100)]
    grpc_answers = {_grpc_predict(gateway, caller=f'user-{i}')[0] for i in range(10)}
    rest.close()
    assert {status for status, _, _ in answers} == {200}
    assert {version for _, version, _ in answers} == served == grpc_answers
    assert _metric(gateway, 'tfserving_requests_total', code='OK') == 110
    # Said once, not per request.
    assert len([r for r in traffic_log if 'cannot answer' in r.getMessage()]) == 1


def test_the_request_log_records_the_version_the_split_chose(make_gateway, tmp_path):
    gateway, _ = make_gateway(percent=50.0, request_log_dir=str(tmp_path / 'log'))
    rest = Rest(gateway)
    answered = {}
    for i in range(40):
        status, version, headers = rest.predict(caller=f'user-{i}')
        answered[headers['X-Request-Id']] = version
    rest.close()
    gateway.request_logger.close()
    logged = {}
    for path in tf.io.gfile.glob(str(tmp_path / 'log' / '*.tfrecord')):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            features = tf.train.Example.FromString(record).features.feature
            logged[features['request_id'].bytes_list.value[0].decode()] = features['model_version'].int64_list.value[0]
    assert logged == answered and set(answered.values()) == {1, 2}


@pytest.mark.parametrize('front', ['embedded', 'gateway'])
def test_unaddressed_metadata_describes_the_version_the_caller_is_served_by(make_server, make_gateway, front):
    server = make_server()[0] if front == 'embedded' else make_gateway()[0]
    keys = {side: next(f'user-{i}' for i in range(1000) if _expected_side(f'user-{i}') == side)
            for side in ('stable', 'canary')}
    for side, version in (('stable', 1), ('canary', 2)):
        connection = http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=30)
        connection.request('GET', f'{PATH}/metadata', headers={CALLER_HEADER: keys[side]})
        answer = json.loads(connection.getresponse().read())
        connection.close()
        assert answer['model_spec']['version'] == str(version)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['signature_def'])
        request.model_spec.name = MODEL
        with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
                request, metadata=[(traffic.CALLER_METADATA, keys[side])], timeout=30)
        assert response.model_spec.version.value == version
