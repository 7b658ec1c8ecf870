"""Stopping drains (readiness first, in-flight requests answered, then the log completed), a burst of
connections is taken, and every client error is a 4xx in TF Serving's JSON shape, on the server and
the gateway."""

import json
import os
import socket
import threading
import time

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.gateway import GatewayServer, GatewaySettings
from serving.server import ModelServer, ServerSettings
from serving.servable import Servable
from support.tf_serving_models import HALF_PLUS_TWO, settled_copy

pytestmark = pytest.mark.component



@pytest.fixture
def base(tmp_path):
    return settled_copy(HALF_PLUS_TWO, tmp_path / 'half_plus_two')


@pytest.fixture
def slow_model(monkeypatch):
    """Every model call takes a second: requests are in flight when the server is stopped."""
    real = Servable.run_unbatched

    def slow(self, name, tensors):
        time.sleep(1.0)
        return real(self, name, tensors)

    monkeypatch.setattr(Servable, 'run_unbatched', slow)


def _server(base, tmp_path, **options):
    return ModelServer(ServerSettings.for_model(str(base), rest_port=0, grpc_port=0, poll_seconds=0, settle_seconds=0,
                                                request_log_dir=str(tmp_path / 'log'), **options)).start()


def _rest_predict(port, results):
    try:
        answer = requests.post(f'http://127.0.0.1:{port}/v1/models/half_plus_two:predict',
                               data='{"instances": [1.0]}', timeout=30)
        results.append((answer.status_code, answer.text))
    except requests.RequestException as e:
        results.append((None, str(e)))


def _grpc_predict(port, results):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = 'half_plus_two'
    request.inputs['x'].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    with grpc.insecure_channel(f'127.0.0.1:{port}') as channel:
        try:
            answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
            results.append((200, str(tf.make_ndarray(answer.outputs['y']).tolist())))
        except grpc.RpcError as e:
            results.append((e.code(), e.details()))


def _logged_requests(log_dir):
    return sum(1 for path in tf.io.gfile.glob(os.path.join(str(log_dir), '*.tfrecord'))
               for _ in tf.data.TFRecordDataset(path))


def _in_flight_then_stop(front, rest_port, grpc_port):
    results = []
    clients = [threading.Thread(target=_rest_predict, args=(rest_port, results)) for _ in range(4)]
    clients += [threading.Thread(target=_grpc_predict, args=(grpc_port, results)) for _ in range(4)]
    for client in clients:
        client.start()
    time.sleep(0.4)  # all eight are being served (the model takes a second)
    stopping = threading.Thread(target=lambda: results.append(('unfinished', front.stop(grace=20))))
    stopping.start()
    time.sleep(0.2)
    # Draining: readiness (model status) fails at once, and nothing new is accepted.
    with pytest.raises(requests.ConnectionError):
        requests.get(f'http://127.0.0.1:{rest_port}/v1/models/half_plus_two', timeout=5)
    for client in clients:
        client.join()
    stopping.join()
    return results


def test_stopping_the_server_answers_every_request_in_flight_then_completes_the_log(base, tmp_path, slow_model):
    server = _server(base, tmp_path)
    results = _in_flight_then_stop(server, server.rest_port, server.grpc_port)
    assert ('unfinished', 0) in results
    answers = [r for r in results if r[0] != 'unfinished']
    assert answers == [(200, '{"predictions":[2.5]}')] * 4 + [(200, '[2.5]')] * 4 or \
        sorted(map(str, answers)) == sorted(map(str, [(200, '{"predictions":[2.5]}')] * 4 + [(200, '[2.5]')] * 4))
    assert _logged_requests(tmp_path / 'log') == 8


def test_stopping_the_gateway_answers_every_forwarded_request_before_closing_its_channel(base, tmp_path, slow_model):
    upstream = ModelServer(ServerSettings.for_model(str(base), rest_port=0, grpc_port=0, poll_seconds=0,
                                                    settle_seconds=0)).start()
    gateway = GatewayServer(GatewaySettings(upstream=f'127.0.0.1:{upstream.grpc_port}', rest_port=0, grpc_port=0,
                                            request_log_dir=str(tmp_path / 'log'))).start()
    try:
        results = _in_flight_then_stop(gateway, gateway.rest_port, gateway.grpc_port)
    finally:
        upstream.stop()
    assert ('unfinished', 0) in results
    assert sorted(str(r) for r in results if r[0] != 'unfinished') == \
        sorted(map(str, [(200, '{"predictions":[2.5]}')] * 4 + [(200, '[2.5]')] * 4))
    assert _logged_requests(tmp_path / 'log') == 8


def test_a_kept_alive_connection_gets_its_answer_while_draining_then_is_closed(base, tmp_path, slow_model):
    server = _server(base, tmp_path)
    session = requests.Session()
    url = f'http://127.0.0.1:{server.rest_port}/v1/models/half_plus_two'
    assert session.get(url, timeout=10).status_code == 200  # the connection is open, idle
    stopping = threading.Thread(target=server.stop, kwargs={'grace': 20})
    server.core.draining = True
    server._rest.draining = True
    answer = session.post(f'{url}:predict', data='{"instances": [1.0]}', timeout=30)
    assert answer.status_code == 200 and answer.headers['Connection'] == 'close'
    assert session.get(url, timeout=10).status_code == 503  # readiness, on a new connection
    stopping.start()
    stopping.join()


# -- a burst of connections -----------------------------------------------------------------------

def test_a_burst_of_connections_waits_in_the_listen_queue_instead_of_being_dropped():
    # While every thread is busy, connections wait in the kernel's accept queue, as long as the
    # listen backlog allows: socketserver's default of 5 dropped the 7th (32 clients at once got resets).
    from serving.rest import RestApi, RestServer
    listener = RestServer(('127.0.0.1', 0), RestApi(core=None), max_request_bytes=1024)  # not accepting
    try:
        waiting = [socket.create_connection(listener.server_address, timeout=2) for _ in range(64)]
        for sock in waiting:
            sock.close()
    finally:
        listener.server_close()


# -- client errors: 4xx, JSON ---------------------------------------------------------------------

@pytest.fixture(scope='module')
def fronts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('fronts')
    base = settled_copy(HALF_PLUS_TWO, tmp / 'half_plus_two')
    server = ModelServer(ServerSettings.for_model(base, rest_port=0, grpc_port=0, poll_seconds=0,
                                                  settle_seconds=0)).start()
    gateway = GatewayServer(GatewaySettings(upstream=f'127.0.0.1:{server.grpc_port}', rest_port=0,
                                            grpc_port=0)).start()
    yield {'server': server, 'gateway': gateway}
    gateway.stop()
    server.stop()


def _raw(port, data: bytes) -> bytes:
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        sock.sendall(data)
        received = b''
        while chunk := sock.recv(65536):
            received += chunk
        return received


PREDICT = '/v1/models/half_plus_two:predict'


@pytest.mark.parametrize('front', ['server', 'gateway'])
@pytest.mark.parametrize('method,body,status,message', [
    ('POST', '{"instances": [' + '9' * 5000 + ']}', 400, 'JSON Parse error'),
    ('POST', '{"instances": ' + '[' * 900 + '1.0' + ']' * 900 + '}', 400, 'nested too deeply'),
    ('POST', '{"instances": ' + '[' * 990 + '1.0' + ']' * 990 + '}', 400, 'nested too deeply'),
    ('POST', '{"examples": [{"x": ' + '[' * 900 + '1.0' + ']' * 900 + '}]}', 400, ''),
    ('POST', '{"signature_name": "\\ud800", "instances": [1.0]}', 400, ''),
    ('POST', b'{"instances": ["\xff"]}', 400, 'JSON Parse error'),
    ('PUT', '{"instances": [1.0]}', 400, f'Malformed request: PUT {PREDICT}'),
    ('DELETE', None, 400, f'Malformed request: DELETE {PREDICT}'),
    ('PATCH', '{}', 400, f'Malformed request: PATCH {PREDICT}'),
    ('OPTIONS', None, 400, f'Malformed request: OPTIONS {PREDICT}'),
])
def test_bad_requests_get_a_4xx_json_error(fronts, front, method, body, status, message):
    answer = requests.request(method, f'http://127.0.0.1:{fronts[front].rest_port}{PREDICT}', data=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.headers['Content-Type'] == 'application/json'
    assert message in answer.json()['error']


@pytest.mark.parametrize('front', ['server', 'gateway'])
@pytest.mark.parametrize('raw,status', [
    (b'GARBAGE\r\n\r\n', 400),
    (b'GET / HTTP/1.1\r\nX-Big: ' + b'a' * 70000 + b'\r\n\r\n', 431),
    (b'GET /' + b'a' * 70000 + b' HTTP/1.1\r\n\r\n', 414),
    (b'GET / HTTP/9.0\r\n\r\n', 505),
])
def test_what_http_itself_refuses_is_json_too(fronts, front, raw, status):
    answer = _raw(fronts[front].rest_port, raw)
    head, _, body = answer.partition(b'\r\n\r\n')
    assert head.startswith(f'HTTP/1.1 {status}'.encode()) or head.startswith(f'HTTP/1.0 {status}'.encode()), head
    assert b'Content-Type: application/json' in head
    assert json.loads(body)['error']


def test_head_gets_the_status_line_and_headers_only(fronts):
    answer = requests.head(f'http://127.0.0.1:{fronts["server"].rest_port}{PREDICT}', timeout=10)
    assert answer.status_code == 400 and answer.content == b''
