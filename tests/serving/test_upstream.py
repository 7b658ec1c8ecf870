"""Gateway mode (`serve --upstream`): the server in front of a TF Serving.

The embedded server stands in for TF Serving (it speaks TF Serving's gRPC
API); the gateway in front of it must answer exactly as it does over REST and
gRPC, by version and label, errors included; return and forward each
request's id and log it with the version that answered; answer 503 naming
the upstream while it is down and recover once it is up."""

import json
import logging
import os
import signal

import grpc
import numpy as np
import pytest
import requests as http
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from cli import main as cli
from serving import FEEDBACK_PATH, METRICS_PATH, MISSING_VALUES_FILE
from serving.gateway import GatewayServer, GatewaySettings
from serving.gateway_core import MissingValueMarkers
from serving.manager import VersionPolicy
from serving.server import ModelServer, ModelSource, ServerSettings
from serving.tensors import to_tensor_proto
from serving.upstream import parse_address
from support.polling import free_port, wait_for
from support.tf_serving_models import start_serve

pytestmark = pytest.mark.component


MODEL = 'scaler'
SLOPES = {7: 2.0, 8: 3.0}  # version -> slope, so an answer tells which version gave it
LABELS = {'stable': 7, 'canary': 8}


class Scaler(tf.Module):
    """y = slope * x + 1; regression and classification on tf.Examples with a float feature `x`."""

    def __init__(self, slope):
        super().__init__()
        self.slope = tf.constant(slope)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x'),
                                  tf.TensorSpec([None], tf.string, name='unit')])
    def scale(self, x, unit):
        return {'y': self.slope * x + 1.0, 'unit_echo': unit}

    def _x(self, examples):
        return tf.io.parse_example(examples, {'x': tf.io.FixedLenFeature([], tf.float32, default_value=0.0)})['x']

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='inputs')])
    def regress(self, inputs):
        return {'outputs': self.slope * self._x(inputs) + 1.0}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='inputs')])
    def classify(self, inputs):
        p = tf.sigmoid(self.slope * self._x(inputs))
        classes = tf.tile(tf.constant([[b'small', b'big']]), [tf.shape(p)[0], 1])
        return {'classes': classes, 'scores': tf.stack([1.0 - p, p], axis=1)}


def _save(base, version, slope):
    module = Scaler(slope)
    path = base / str(version)
    tf.saved_model.save(module, str(path), signatures={'serving_default': module.scale, 'regression': module.regress,
                                                       'classification': module.classify})
    # TF 2 saves every signature as predict; TF Serving's Classify and Regress want their own method names.
    saved_model = saved_model_pb2.SavedModel.FromString((path / 'saved_model.pb').read_bytes())
    for meta_graph in saved_model.meta_graphs:
        meta_graph.signature_def['regression'].method_name = tf.saved_model.REGRESS_METHOD_NAME
        meta_graph.signature_def['classification'].method_name = tf.saved_model.CLASSIFY_METHOD_NAME
    (path / 'saved_model.pb').write_bytes(saved_model.SerializeToString())
    declared = path / MISSING_VALUES_FILE
    declared.parent.mkdir(exist_ok=True)
    declared.write_text(json.dumps({'serving_default': {'x': 'nan', 'unit': 'empty'}}))
    old = 1_600_000_000  # settled: the server loads a version once no file changed for a while
    for root, _, files in os.walk(path):
        for name in files:
            os.utime(os.path.join(root, name), (old, old))


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
    base = tmp_path_factory.mktemp('models') / MODEL
    for version, slope in SLOPES.items():
        _save(base, version, slope)
    return base


def _tf_serving(base_path, grpc_port=0, request_log_dir=None):
    """The embedded server as the upstream "TF Serving": both versions, labelled."""
    source = ModelSource(MODEL, str(base_path), VersionPolicy(all=True), LABELS)
    return ModelServer(ServerSettings(models=(source,), rest_port=0, grpc_port=grpc_port, poll_seconds=0.1,
                                      request_log_dir=request_log_dir))


@pytest.fixture(scope='module')
def upstream(base_path):
    with _tf_serving(base_path) as running:
        yield running


@pytest.fixture
def make_gateway(tmp_path):
    """Starts gateways (stopped after the test): request log and feedback on, markers from the model's directory."""
    started = []

    def make(upstream_address, **overrides):
        options = dict(rest_port=0, grpc_port=0, request_log_dir=str(tmp_path / f'log{len(started)}'),
                       feedback_dir=str(tmp_path / f'feedback{len(started)}'))
        options.update(overrides)
        gateway = GatewayServer(GatewaySettings(upstream=upstream_address, **options)).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(make_gateway, upstream, base_path):
    return make_gateway(f'127.0.0.1:{upstream.grpc_port}', marker_paths={MODEL: str(base_path)})


def _logged(server):
    """{request_id: [features of each logged example, in order]} once the server's log is complete."""
    server.request_logger.close()
    logged = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(server.request_logger.directory, '*.tfrecord'))):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            features = tf.train.Example.FromString(record).features.feature
            values = {name: list(getattr(f, f.WhichOneof('kind')).value) for name, f in features.items()}
            logged.setdefault(values['request_id'][0].decode(), []).append(values)
    return logged


def _stubs(port):
    channel = grpc.insecure_channel(f'127.0.0.1:{port}')
    return prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)


def _predict_request(x=(1.0, 2.0), units=(b'm', b'km'), version=None, label=None, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.get('name', MODEL)
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    request.inputs['x'].CopyFrom(tf.make_tensor_proto(np.array(x, np.float32)))
    request.inputs['unit'].CopyFrom(tf.make_tensor_proto(np.array(units, dtype=object)))
    return request


def _examples_request(kind, xs=(0.5, -1.0)):
    request = (classification_pb2.ClassificationRequest() if kind == 'classify' else
               regression_pb2.RegressionRequest())
    request.model_spec.name = MODEL
    request.model_spec.signature_name = 'classification' if kind == 'classify' else 'regression'
    for x in xs:
        request.input.example_list.examples.add().features.feature['x'].float_list.value.append(x)
    return request


def _rest(server, method, path, body=None, **headers):
    data = body if isinstance(body, str) or body is None else json.dumps(body)
    return http.request(method, f'http://127.0.0.1:{server.rest_port}{path}', data=data, headers=headers, timeout=30)


PATH = f'/v1/models/{MODEL}'
ROWS = {'instances': [{'x': 1.0, 'unit': 'm'}, {'x': 2.5, 'unit': 'km'}]}
COLUMNS = {'inputs': {'x': [1.0, 2.5], 'unit': ['m', 'km']}}
EXAMPLES = {'examples': [{'x': 0.5}, {'x': -1.0}]}


@pytest.mark.parametrize('method, path, body', [
    ('POST', f'{PATH}:predict', ROWS),
    ('POST', f'{PATH}:predict', COLUMNS),
    ('POST', f'{PATH}/labels/stable:predict', ROWS),
    ('POST', f'{PATH}/versions/8:predict', dict(ROWS, signature_name='serving_default')),
    ('POST', f'{PATH}:classify', dict(EXAMPLES, signature_name='classification')),
    ('POST', f'{PATH}/labels/canary:regress', dict(EXAMPLES, signature_name='regression', context={'unit': 'm'})),
    ('GET', PATH, None),
    ('GET', f'{PATH}/labels/canary', None),
    ('GET', f'{PATH}/versions/7/metadata', None),
    # TF Serving's errors, with its status codes and messages.
    ('POST', '/v1/models/no-such-model:predict', ROWS),
    ('POST', f'{PATH}/versions/9:predict', ROWS),
    ('POST', f'{PATH}/labels/nope:predict', ROWS),
    ('POST', f'{PATH}:predict', {'instances': [{'x': 'one', 'unit': 'm'}]}),
    ('POST', f'{PATH}:predict', {'instances': [{'x': 1.0}]}),
    ('POST', f'{PATH}:predict', dict(ROWS, signature_name='nope')),
    ('POST', f'{PATH}:classify', EXAMPLES),  # serving_default is not a classification signature
    ('POST', f'{PATH}:predict', '{"instances": ['),
    ('GET', '/v1/models/no-such-model', None),
])
def test_rest_through_the_gateway_answers_as_tf_serving_does(upstream, gateway, method, path, body):
    direct, proxied = _rest(upstream, method, path, body), _rest(gateway, method, path, body)
    assert (proxied.status_code, proxied.json()) == (direct.status_code, direct.json())


@pytest.mark.parametrize('method, request_', [
    ('Predict', _predict_request()),
    ('Predict', _predict_request(label='stable')),
    ('Predict', _predict_request(version=8)),
    ('Classify', _examples_request('classify')),
    ('Regress', _examples_request('regress')),
    ('GetModelMetadata', get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={'name': MODEL, 'version_label': 'canary'}, metadata_field=['signature_def'])),
    ('GetModelStatus', get_model_status_pb2.GetModelStatusRequest(model_spec={'name': MODEL})),
    # TF Serving's errors, with its codes and messages.
    ('Predict', _predict_request(name='no-such-model')),
    ('Predict', _predict_request(label='nope')),
    ('Predict', _predict_request(version=9)),
    ('Predict', _predict_request(x=(1, 2))),  # int32 where the signature wants float32
])
def test_grpc_through_the_gateway_answers_as_tf_serving_does(upstream, gateway, method, request_):
    def call(server):
        predictions, models = _stubs(server.grpc_port)
        stub = models if method == 'GetModelStatus' else predictions
        try:
            return getattr(stub, method)(request_, timeout=30)
        except grpc.RpcError as e:
            return e.code(), e.details()

    direct = call(upstream)
    assert call(gateway) == direct
    if isinstance(direct, tuple):
        assert direct[0] != grpc.StatusCode.OK


def test_request_ids_come_back_and_are_the_ones_logged_here_and_upstream(base_path, make_gateway, tmp_path):
    with _tf_serving(base_path, request_log_dir=str(tmp_path / 'upstream_log')) as tf_serving:
        gateway = make_gateway(f'127.0.0.1:{tf_serving.grpc_port}')
        ids = [_rest(gateway, 'POST', f'{PATH}:predict', ROWS, **{'X-Request-Id': 'rest-1'}).headers['X-Request-Id'],
               _rest(gateway, 'POST', f'{PATH}:predict', ROWS).headers['X-Request-Id']]
        predictions, _ = _stubs(gateway.grpc_port)
        for metadata in ([('x-request-id', 'grpc-1')], None):
            _, call = predictions.Predict.with_call(_predict_request(), metadata=metadata, timeout=30)
            ids.append(dict(call.initial_metadata())['x-request-id'])
        _, call = predictions.Classify.with_call(_examples_request('classify'), timeout=30)
        ids.append(dict(call.initial_metadata())['x-request-id'])
        # The embedded server returns the id the same way.
        _, direct = _stubs(tf_serving.grpc_port)[0].Predict.with_call(
            _predict_request(), metadata=[('x-request-id', 'direct-1')], timeout=30)
        assert dict(direct.initial_metadata())['x-request-id'] == 'direct-1'
    logged_here, logged_upstream = _logged(gateway), _logged(tf_serving)

    assert ids[0] == 'rest-1' and ids[2] == 'grpc-1'
    assert len(set(ids)) == 5 and all(len(i) == 32 for i in (ids[1], ids[3], ids[4]))  # new ids where none was sent
    assert set(logged_here) == set(ids)
    assert set(ids) <= set(logged_upstream)  # forwarded: TF Serving saw the same ids
    for request_id in ids:
        assert [e['example_index'] for e in logged_here[request_id]] == [[0], [1]]
        assert all(e['model_name'] == [MODEL.encode()] and e['model_version'] == [8] for e in logged_here[request_id])


def test_labels_and_versions_route_through_the_gateway_and_the_log_has_the_answering_version(gateway):
    answers = {}
    for target, path in (('stable', f'{PATH}/labels/stable'), ('canary', f'{PATH}/labels/canary'),
                         ('7', f'{PATH}/versions/7'), ('latest', PATH)):
        response = _rest(gateway, 'POST', f'{path}:predict', {'instances': [{'x': 2.0, 'unit': 'm'}]})
        answers[target] = (response.headers['X-Request-Id'], response.json()['predictions'][0]['y'])
    predictions, _ = _stubs(gateway.grpc_port)
    by_label = predictions.Predict(_predict_request(label='stable'), timeout=30)
    by_version = predictions.Predict(_predict_request(version=8), timeout=30)
    classified, call = predictions.Classify.with_call(_examples_request('classify', xs=(1.0,)), timeout=30)
    regressed = _rest(gateway, 'POST', f'{PATH}/versions/7:regress',
                      {'signature_name': 'regression', 'examples': [{'x': 4.0}]})
    logged = _logged(gateway)

    assert {target: y for target, (_, y) in answers.items()} == {'stable': 5.0, 'canary': 7.0, '7': 5.0,
                                                                  'latest': 7.0}
    assert (by_label.model_spec.version.value, by_version.model_spec.version.value) == (7, 8)
    expected_versions = {'stable': 7, 'canary': 8, '7': 7, 'latest': 8}
    for target, (request_id, y) in answers.items():
        (example,) = logged[request_id]
        assert example['model_version'] == [expected_versions[target]]
        assert example['y'] == [y] and example['x'] == [2.0] and example['unit'] == [b'm']
        assert example['signature_name'] == [b'serving_default']
    # Classify and Regress log the examples as sent, with every output.
    (example,) = logged[dict(call.initial_metadata())['x-request-id']]
    assert example['x'] == [1.0] and example['classes'] == [b'small', b'big']
    assert example['scores'] == pytest.approx([c.score for c in classified.result.classifications[0].classes])
    assert example['model_version'] == [8] and example['signature_name'] == [b'classification']
    (example,) = logged[regressed.headers['X-Request-Id']]
    assert example['outputs'] == [9.0] and example['model_version'] == [7] and regressed.json() == {'results': [9.0]}


def test_missing_value_markers_come_from_the_model_directory_when_given(upstream, make_gateway, base_path):
    address = f'127.0.0.1:{upstream.grpc_port}'
    with_markers = make_gateway(address, marker_paths={MODEL: str(base_path)})
    without = make_gateway(address)
    body = '{"instances": [{"x": NaN, "unit": ""}, {"x": 1.0, "unit": "m"}]}'
    ids = {}
    for name, gateway in (('markers', with_markers), ('none', without)):
        response = _rest(gateway, 'POST', f'{PATH}:predict', body)
        assert response.status_code == 200, response.text
        ids[name] = response.headers['X-Request-Id']
    predictions, _ = _stubs(with_markers.grpc_port)
    _, call = predictions.Predict.with_call(_predict_request(x=(float('nan'),), units=(b'',)), timeout=30)
    by_grpc = dict(call.initial_metadata())['x-request-id']

    logged = _logged(with_markers)
    marked, marked_grpc = logged[ids['markers']], logged[by_grpc]
    as_received = _logged(without)[ids['none']]
    # Declared markers are left out, as the embedded server does; the rest is kept.
    assert 'x' not in marked[0] and 'unit' not in marked[0] and marked[1]['x'] == [1.0]
    assert 'x' not in marked_grpc[0] and 'unit' not in marked_grpc[0]
    # Without the model's directory the markers are logged as sent.
    assert np.isnan(as_received[0]['x'][0]) and as_received[0]['unit'] == [b'']


def _metric(server, name, **labels):
    text = _rest(server, 'GET', METRICS_PATH).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def test_an_upstream_that_is_down_gets_503_naming_it_until_it_is_up(base_path, make_gateway):
    port = free_port()
    address = f'127.0.0.1:{port}'
    gateway = make_gateway(address)
    response = _rest(gateway, 'POST', f'{PATH}:predict', ROWS)
    assert response.status_code == 503 and address in response.json()['error']
    assert 'unavailable' in response.json()['error']
    status = _rest(gateway, 'GET', PATH)
    assert status.status_code == 503 and address in status.json()['error']
    with pytest.raises(grpc.RpcError) as error:
        _stubs(gateway.grpc_port)[0].Predict(_predict_request(), timeout=30)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE and address in error.value.details()
    assert _rest(gateway, 'GET', METRICS_PATH).status_code == 200  # the gateway itself is up
    assert _metric(gateway, 'tfserving_upstream_requests_total', code='UNAVAILABLE') >= 3
    assert _metric(gateway, 'tfserving_upstream_connected') == 0

    with _tf_serving(base_path, grpc_port=port):
        recovered = wait_for(lambda: (r := _rest(gateway, 'POST', f'{PATH}:predict', ROWS)).status_code == 200 and r)
        assert recovered.json() == {'predictions': [{'y': 4.0, 'unit_echo': 'm'}, {'y': 8.5, 'unit_echo': 'km'}]}
        assert _stubs(gateway.grpc_port)[0].Predict(_predict_request(), timeout=30).model_spec.version.value == 8
        wait_for(lambda: _metric(gateway, 'tfserving_upstream_connected') == 1)  # set by a connectivity callback


def test_metrics_count_by_answering_version_and_never_take_made_up_names(gateway):
    _rest(gateway, 'POST', f'{PATH}/labels/stable:predict', ROWS)
    _stubs(gateway.grpc_port)[0].Predict(_predict_request(), timeout=30)
    _rest(gateway, 'POST', '/v1/models/made-up:predict', ROWS)
    assert _metric(gateway, 'tfserving_requests_total', model_name=MODEL, version='7', protocol='rest',
                   api='predict', code='OK') == 1
    assert _metric(gateway, 'tfserving_requests_total', model_name=MODEL, version='8', protocol='grpc',
                   api='predict', code='OK') == 1
    assert _metric(gateway, 'tfserving_examples_total', version='8') == 2
    assert _metric(gateway, 'tfserving_requests_total', api='predict', code='NOT_FOUND') == 1
    assert _metric(gateway, 'tfserving_upstream_latency_seconds_count', method='Predict') == 2
    text = _rest(gateway, 'GET', METRICS_PATH).text
    assert 'made-up' not in text


def test_feedback_is_taken_in_gateway_mode_for_the_ids_it_returned(gateway):
    request_id = _rest(gateway, 'POST', f'{PATH}:predict', ROWS).headers['X-Request-Id']
    feedback = {'request_id': request_id, 'example': 1, 'tips': 2.5}
    stored = _rest(gateway, 'POST', FEEDBACK_PATH, feedback)
    assert stored.status_code == 200 and stored.json()['stored'] == 1
    assert _rest(gateway, 'POST', FEEDBACK_PATH, feedback).status_code == 409  # the first record stands


@pytest.mark.parametrize('argv, message', [
    (['--upstream', 'localhost'], 'expected HOST:PORT'),
    (['--upstream', 'localhost:99999'], 'expected HOST:PORT'),
    (['--upstream', 'http://localhost:8500'], 'expected HOST:PORT'),
    (['--upstream', 'localhost:8500', '--model-config-file', 'serving/config/models.config'], '--model-config-file'),
    (['--upstream', 'localhost:8500', '--enable-batching'], 'TF Serving at localhost:8500 loads the models'),
])
def test_serve_refuses_a_bad_upstream_or_disk_flags_with_it(argv, message, capsys):
    assert cli.main(['serve'] + argv) == 2
    assert message in capsys.readouterr().err


def test_unreadable_markers_log_values_as_received_instead_of_failing(tmp_path, caplog):
    (tmp_path / 'm' / '3' / 'assets.extra').mkdir(parents=True)
    (tmp_path / 'm' / '3' / MISSING_VALUES_FILE).write_text('{"serving_default": {"x": "zero"}}')  # not a rule
    markers = MissingValueMarkers({'m': str(tmp_path / 'm')})
    caplog.set_level(logging.WARNING, logger='serving.gateway_core')  # whatever the CLI set the root logger to
    assert markers.get('m', 3) == {} and 'missing_values.json' in caplog.text
    assert markers.get('m', 4) == {} and 'is --model-base-path the base path TF Serving serves?' in caplog.text
    assert markers.get('other', 3) == {}  # a model the gateway has no directory for


@pytest.mark.parametrize('array', [np.array([1.5, float('nan')], np.float32), np.array([[1, -2]], np.int64),
                                   np.array(3.0), np.array([True, False]), np.array([7], np.int32),
                                   np.array([b'm', b''], dtype=object), np.zeros((0, 2), np.float32),
                                   np.array([1.5], np.float16)])  # the last one through tf.make_tensor_proto
def test_the_gateway_sends_the_arrays_json_decodes_into_unchanged(array):
    sent = tf.make_ndarray(to_tensor_proto(array))
    assert sent.shape == array.shape and sent.dtype == array.dtype
    np.testing.assert_array_equal(sent, array)


@pytest.mark.parametrize('address', ['localhost:8500', 'tf-serving.default.svc:8500', '10.0.0.7:9000', '[::1]:8500'])
def test_upstream_addresses_in_host_port_form_are_taken(address):
    assert parse_address(address) == address


def test_serve_upstream_says_what_it_fronts_and_serves_through_it(upstream, base_path, tmp_path):
    rest_port = free_port()
    process, started = start_serve('--upstream', f'127.0.0.1:{upstream.grpc_port}', '--rest-port', str(rest_port),
                                  '--grpc-port', str(free_port()), '--model-base-path', str(base_path),
                                  '--request-log-dir', str(tmp_path / 'log'))
    try:
        assert f'upstream 127.0.0.1:{upstream.grpc_port}: connected' in started
        assert f'{base_path}/<version>/{MISSING_VALUES_FILE}' in started
        answer = http.post(f'http://127.0.0.1:{rest_port}{PATH}:predict', data=json.dumps(ROWS), timeout=30)
        assert answer.json()['predictions'][0]['y'] == 4.0
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert tf.io.gfile.glob(str(tmp_path / 'log' / '*.tfrecord'))  # completed on shutdown

    down = free_port()
    process, started = start_serve('--upstream', f'127.0.0.1:{down}', '--rest-port', str(free_port()),
                                  '--grpc-port', str(free_port()))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert f'upstream 127.0.0.1:{down}: not answering yet' in started and '503 UNAVAILABLE' in started
    assert 'markers: none (no --model-base-path)' in started
