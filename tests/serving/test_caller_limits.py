"""Who called, and how often they may (serving/core.py `admit`, serving/rate_limit.py), over
loopback, on the embedded server and the gateway, REST and gRPC: every request log record names
its caller (the token's name, never the token; without tokens the client's address), and the
monitor reads that column from old logs too; a caller over its rate limit gets 429 with
Retry-After or RESOURCE_EXHAUSTED with `retry-after`, is counted, and its request never reaches
the model, while other callers are served."""

import http.client
import json
import os

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from monitoring import request_logs
from serving import METRICS_PATH, access
from serving.gateway import GatewayServer, GatewaySettings
from serving.rate_limit import RateLimit
from serving.server import ModelServer, ServerSettings
from serving.telemetry import log_examples
from support.tf_serving_models import HALF_PLUS_TWO, settled_copy

pytestmark = pytest.mark.component

MODEL = 'half_plus_two'
PREDICT = f'/v1/models/{MODEL}:predict'
# A refill so slow that nothing comes back within a test: only the burst counts.
SLOW = 0.01


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
    return settled_copy(HALF_PLUS_TWO, tmp_path_factory.mktemp('models') / MODEL)


@pytest.fixture(scope='module')
def tokens(tmp_path_factory):
    """(tokens file, {name: token}): two plain callers, one with its own tight limit, one unlimited."""
    path = str(tmp_path_factory.mktemp('auth') / 'tokens.json')
    return path, {'alice': access.add_token(path, 'alice', {'predict'}),
                  'bob': access.add_token(path, 'bob', {'predict'}),
                  'slow': access.add_token(path, 'slow', {'predict'}, RateLimit(SLOW, 2)),
                  'batch': access.add_token(path, 'batch', {'predict'}, access.UNLIMITED)}


@pytest.fixture(scope='module')
def upstream(base_path):
    """The embedded server standing in for TF Serving: no tokens, no limit, as TF Serving has neither."""
    with ModelServer(ServerSettings.for_model(base_path, rest_port=0, grpc_port=0, poll_seconds=0)) as running:
        yield running


@pytest.fixture
def start(request, base_path, tmp_path):
    """Starts a server of the test's kind ('embedded' or 'gateway'), request log on; stopped after the test."""
    started = []

    def make(kind, **options):
        options = dict(rest_port=0, grpc_port=0, request_log_dir=str(tmp_path / f'log{len(started)}'), **options)
        if kind == 'embedded':
            server = ModelServer(ServerSettings.for_model(base_path, poll_seconds=0, **options)).start()
        else:
            server = GatewayServer(GatewaySettings(
                upstream=f'127.0.0.1:{request.getfixturevalue("upstream").grpc_port}', **options)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def _headers(token=None):
    return {'Authorization': f'Bearer {token}'} if token else {}


def _rest(server, path=PREDICT, body=None, token=None, request_id=None, method='POST'):
    headers = {**_headers(token), **({'X-Request-Id': request_id} if request_id else {})}
    return requests.request(method, f'http://127.0.0.1:{server.rest_port}{path}', headers=headers, timeout=30,
                            data=json.dumps(body if body is not None else {'instances': [1.0, 2.0]})
                            if method == 'POST' else None)


def _rest_from(source, server, request_id):
    """A predict sent from another loopback address (Linux routes all of 127/8 to lo)."""
    connection = http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=30, source_address=(source, 0))
    try:
        connection.request('POST', PREDICT, json.dumps({'instances': [1.0]}), {'X-Request-Id': request_id})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _stub(server):
    channel = grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}')
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _predict_request(x=(1.0, 2.0)):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs['x'].CopyFrom(tf.make_tensor_proto(np.array(x, np.float32).reshape(-1, 1)))
    return request


def _grpc_predict(server, token=None, request_id=None):
    """(status code, trailing metadata as a dict)."""
    metadata = [('authorization', f'Bearer {token}')] if token else []
    metadata += [('x-request-id', request_id)] if request_id else []
    channel, stub = _stub(server)
    try:
        _, call = stub.Predict.with_call(_predict_request(), metadata=metadata, timeout=30)
        return grpc.StatusCode.OK, dict(call.trailing_metadata() or ())
    except grpc.RpcError as e:
        return e.code(), dict(e.trailing_metadata() or ())
    finally:
        channel.close()


def _metric(server, name, **labels):
    text = requests.get(f'http://127.0.0.1:{server.rest_port}{METRICS_PATH}', timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def _logged_callers(server):
    """{request_id: {callers of its logged examples}}, once the server has stopped (its log complete)."""
    server.stop()
    found = {}
    for path in tf.io.gfile.glob(os.path.join(server.request_logger.directory, '*.tfrecord')):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            features = tf.train.Example.FromString(record).features.feature
            request_id = features['request_id'].bytes_list.value[0].decode()
            found.setdefault(request_id, set()).add(features['caller'].bytes_list.value[0].decode())
    return found


def _log_bytes(directory):
    return b''.join(open(path, 'rb').read() for path in tf.io.gfile.glob(os.path.join(directory, '*.tfrecord')))


# -- the caller in the request log -------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['embedded', 'gateway'])
def test_the_request_log_names_each_caller_by_its_tokens_name_never_the_token(start, tokens, kind):
    path, secrets = tokens
    server = start(kind, auth_tokens_file=path)
    assert _rest(server, token=secrets['alice'], request_id='alice-rest').status_code == 200
    assert _grpc_predict(server, secrets['bob'], 'bob-grpc')[0] == grpc.StatusCode.OK
    classify = _rest(server, f'/v1/models/{MODEL}:classify', {'signature_name': 'classify_x_to_y',
                                                              'examples': [{'x': 1.0}, {'x': 3.0}]},
                     secrets['alice'], 'alice-classify')
    assert classify.status_code == 200, classify.text
    channel, stub = _stub(server)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL, 'classify_x_to_y'
    request.input.example_list.examples.add().features.feature['x'].float_list.value.append(2.0)
    stub.Classify(request, metadata=[('authorization', f'Bearer {secrets["bob"]}'), ('x-request-id', 'bob-classify')],
                  timeout=30)
    channel.close()
    assert _logged_callers(server) == {'alice-rest': {'alice'}, 'bob-grpc': {'bob'}, 'alice-classify': {'alice'},
                                       'bob-classify': {'bob'}}
    logged = _log_bytes(server.request_logger.directory)
    assert all(secret.encode() not in logged and access.hash_token(secret).encode() not in logged
               for secret in secrets.values())


@pytest.mark.parametrize('kind', ['embedded', 'gateway'])
def test_without_tokens_the_request_log_names_the_client_address(start, kind):
    server = start(kind)
    assert _rest_from('127.0.0.2', server, 'from-2')[0] == 200
    assert _rest(server, request_id='from-1').status_code == 200
    assert _grpc_predict(server, request_id='grpc-from-1')[0] == grpc.StatusCode.OK
    assert _logged_callers(server) == {'from-2': {'127.0.0.2'}, 'from-1': {'127.0.0.1'},
                                       'grpc-from-1': {'127.0.0.1'}}


def test_the_monitor_reads_callers_from_new_logs_and_old_ones_without_them(start, tmp_path):
    server = start('embedded')
    for i in range(3):
        assert _rest(server, request_id=f'new-{i}').status_code == 200
    server.stop()
    directory = server.request_logger.directory
    # A log written before records named their caller.
    meta = {'model_name': MODEL, 'model_version': 123, 'signature_name': 'serving_default', 'request_id': 'old',
            'timestamp_micros': 1}
    with tf.io.TFRecordWriter(os.path.join(directory, 'requests-old.tfrecord')) as writer:
        for example in log_examples((meta, {'x': np.array([[5.0], [6.0]], np.float32)},
                                     {'y': np.array([[4.5], [5.0]], np.float32)}, None, {})):
            writer.write(example.SerializeToString())
    tables, _, _ = request_logs.read_by_version(
        directory, lambda version: request_logs.reading_schema(schema_pb2.Schema(), {'y': schema_pb2.FLOAT}),
        0, 2 ** 62)
    table = tables[123]
    ids = [v.decode() for v in request_logs.scalars(table.column(request_logs.REQUEST_ID), b'')]
    callers = dict(zip(ids, request_logs.callers(table)))
    assert callers == {'old': request_logs.UNKNOWN_CALLER, **{f'new-{i}': '127.0.0.1' for i in range(3)}}


# -- the rate limit ------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['embedded', 'gateway'])
def test_a_caller_over_its_limit_is_refused_on_both_protocols_while_others_are_served(start, tokens, upstream,
                                                                                     kind):
    path, secrets = tokens
    server = start(kind, auth_tokens_file=path, rate_limit=RateLimit(SLOW, 3))
    upstream_before = _metric(upstream, 'tfserving_requests_total', api='predict')
    answers = [_rest(server, token=secrets['alice'], request_id=f'alice-{i}') for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    refused = _rest(server, token=secrets['alice'], request_id='alice-refused')
    assert refused.status_code == 429
    # TF Serving's error shape; Retry-After in whole seconds (RFC 9110): the one request owed, at 0.01/s.
    assert list(refused.json()) == ['error']
    assert "Rate limit exceeded for token 'alice' (0.01/s, burst 3): retry after" in refused.json()['error']
    assert refused.headers['Retry-After'].isdigit() and 90 <= int(refused.headers['Retry-After']) <= 100
    assert refused.headers['X-Request-Id'] == 'alice-refused'
    code, trailing = _grpc_predict(server, secrets['alice'], 'alice-grpc-refused')
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailing['retry-after'].isdigit() and 90 <= int(trailing['retry-after']) <= 100
    # Everyone else is served, on both protocols; the unlimited token past any burst.
    assert _rest(server, token=secrets['bob'], request_id='bob-rest').status_code == 200
    assert _grpc_predict(server, secrets['bob'], 'bob-grpc')[0] == grpc.StatusCode.OK
    assert all(_rest(server, token=secrets['batch'], request_id=f'batch-{i}').status_code == 200 for i in range(8))
    # A token's own limit, tighter than the server's.
    assert [_rest(server, token=secrets['slow']).status_code for _ in range(3)] == [200, 200, 429]
    # Status and metrics are never limited (probes, Prometheus), with or without the token.
    assert _rest(server, f'/v1/models/{MODEL}', token=secrets['alice'], method='GET').status_code == 200
    assert _rest(server, f'/v1/models/{MODEL}', method='GET').status_code == 200
    assert _metric(server, 'tfserving_rate_limited_total', caller='alice') == 2
    assert _metric(server, 'tfserving_rate_limited_total', caller='slow') == 1
    assert _metric(server, 'tfserving_rate_limited_total') == 3
    assert _metric(server, 'tfserving_requests_total', code='RESOURCE_EXHAUSTED', api='predict') == 3
    # The refused never reached the model: neither logged nor (gateway) forwarded.
    served = 3 + 2 + 8 + 2
    if kind == 'gateway':
        assert _metric(upstream, 'tfserving_requests_total', api='predict') - upstream_before == served
    logged = _logged_callers(server)
    assert 'alice-refused' not in logged and 'alice-grpc-refused' not in logged
    assert len(logged) == served


@pytest.mark.parametrize('kind', ['embedded', 'gateway'])
def test_without_tokens_the_limit_is_per_client_address(start, kind):
    server = start(kind, rate_limit=RateLimit(SLOW, 2))
    assert [_rest_from('127.0.0.2', server, f'flood-{i}')[0] for i in range(3)] == [200, 200, 429]
    status, headers, body = _rest_from('127.0.0.2', server, 'flood-more')
    assert status == 429 and headers['Retry-After'].isdigit()
    assert 'Rate limit exceeded for client 127.0.0.2' in json.loads(body)['error']
    # Another address is another caller.
    assert _rest(server).status_code == 200
    assert _grpc_predict(server)[0] == grpc.StatusCode.OK
    assert _grpc_predict(server)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    # No address becomes a metric label.
    assert _metric(server, 'tfserving_rate_limited_total', caller='anonymous') == 3
    assert '127.0.0.2' not in requests.get(f'http://127.0.0.1:{server.rest_port}{METRICS_PATH}', timeout=30).text


def test_no_limit_configured_refuses_nothing(start):
    server = start('embedded')
    assert all(_rest(server).status_code == 200 for _ in range(30))
    assert _metric(server, 'tfserving_rate_limited_total') == 0
