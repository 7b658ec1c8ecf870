"""What one request may decode to is bounded (serving/limits.py), on the server and on the gateway,
before anything is allocated: a few hundred bytes on the wire must not become gigabytes."""

import json
import resource

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from serving.gateway import GatewayServer, GatewaySettings
from serving.limits import RequestLimits
from serving.server import ModelServer, ServerSettings
from support.tf_serving_models import HALF_PLUS_TWO, TESTDATA, settled_copy

pytestmark = pytest.mark.component

MILLION = 1_000_000


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    base = settled_copy(HALF_PLUS_TWO, tmp_path_factory.mktemp('models') / 'half_plus_two')
    settings = ServerSettings.for_model(base, rest_port=0, grpc_port=0, poll_seconds=0, settle_seconds=0,
                                        limits=RequestLimits(max_rows=1000, max_bytes=1024 * 1024))
    with ModelServer(settings) as running:
        yield running


@pytest.fixture(scope='module')
def gateway(server):
    settings = GatewaySettings(upstream=f'127.0.0.1:{server.grpc_port}', rest_port=0, grpc_port=0,
                               limits=RequestLimits(max_rows=1000, max_bytes=1024 * 1024))
    running = GatewayServer(settings).start()
    yield running
    running.stop()


def _one_value_for(rows: int) -> predict_pb2.PredictRequest:
    """TF's repeated-last-value shorthand: a shape of `rows` rows and a single value."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = 'half_plus_two'
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0])
    tensor.tensor_shape.dim.add(size=rows)
    tensor.tensor_shape.dim.add(size=1)
    request.inputs['x'].CopyFrom(tensor)
    return request


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize('front', ['server', 'gateway'])
def test_a_tiny_grpc_request_claiming_a_million_rows_is_refused_before_it_is_expanded(front, request):
    running = request.getfixturevalue(front)
    small = _one_value_for(MILLION)
    assert small.ByteSize() < 100
    before = _max_rss_mb()
    with grpc.insecure_channel(f'127.0.0.1:{running.grpc_port}') as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(small, timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == (f'Request of {MILLION} rows exceeds the limit of 1000 rows per request; '
                                           'split it into smaller requests')
        # Within the limit, the shorthand is still TF's: every row gets the one value.
        answer = stub.Predict(_one_value_for(1000), timeout=30)
        assert tf.make_ndarray(answer.outputs['y']).ravel().tolist() == [2.5] * 1000
    # A million floats is 4 MB; the peak must not have moved by anything like the expansion of 100 M.
    assert _max_rss_mb() - before < 64


@pytest.mark.parametrize('front', ['server', 'gateway'])
def test_over_rest_too_many_rows_or_bytes_get_413(front, request):
    running = request.getfixturevalue(front)
    url = f'http://127.0.0.1:{running.rest_port}/v1/models/half_plus_two'
    rows = requests.post(f'{url}:predict', data=json.dumps({'instances': [[1.0]] * 1001}), timeout=30)
    assert rows.status_code == 413 and 'exceeds the limit of 1000 rows' in rows.json()['error']
    ok = requests.post(f'{url}:predict', data=json.dumps({'instances': [[1.0]] * 1000}), timeout=30)
    assert ok.status_code == 200 and len(ok.json()['predictions']) == 1000
    # 900 examples sharing a 2 KB context decode to ~1.8 MB: the context is copied into each.
    context = {'note': 'x' * 2048}
    body = {'signature_name': 'regress_x_to_y', 'context': context, 'examples': [{'x': 1.0}] * 900}
    assert len(json.dumps(body)) < 1024 * 1024 / 4
    merged = requests.post(f'{url}:regress', data=json.dumps(body), timeout=30)
    assert merged.status_code == 413 and 'over the limit of 1048576 bytes' in merged.json()['error']


def test_a_grpc_context_copied_into_every_example_counts_for_each(server):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = 'half_plus_two'
    request.model_spec.signature_name = 'classify_x_to_y'
    listed = request.input.example_list_with_context
    listed.context.features.feature['note'].bytes_list.value.append(b'x' * 4096)
    for _ in range(300):
        listed.examples.add().features.feature['x'].float_list.value.append(1.0)
    with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
        with pytest.raises(grpc.RpcError) as refused:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_limits_are_flags_and_must_be_positive(capsys):
    from cli.main import main
    assert main(['serve', '--model-base-path', TESTDATA, '--max-request-rows', '0']) != 0
    assert '--max-request-rows and --max-decoded-request-bytes must be positive' in capsys.readouterr().err
