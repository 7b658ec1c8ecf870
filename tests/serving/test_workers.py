"""Gateway worker processes (serving/workers.py): one pair of ports, several processes, one set of
metrics, every request logged, one SIGTERM drains them all; without workers, a taken port is
refused rather than silently shared."""

import os
import signal
from collections import Counter

import grpc
import pytest
import requests
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import METRICS_PATH
from serving.server import ModelServer, ServerSettings
from support.polling import free_port
from support.tf_serving_models import HALF_PLUS_TWO, settled_copy, start_serve

pytestmark = pytest.mark.component



@pytest.fixture(scope='module')
def upstream(tmp_path_factory):
    base = settled_copy(HALF_PLUS_TWO, tmp_path_factory.mktemp('models') / 'half_plus_two')
    with ModelServer(ServerSettings.for_model(base, rest_port=0, grpc_port=0, poll_seconds=0,
                                              settle_seconds=0)) as running:
        yield running


def _requests_total(port):
    text = requests.get(f'http://127.0.0.1:{port}{METRICS_PATH}', timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == 'tfserving_requests_total' and sample.labels['code'] == 'OK')


def test_workers_share_the_ports_the_metrics_and_the_drain(upstream, tmp_path):
    rest_port, grpc_port, log_dir = free_port(), free_port(), tmp_path / 'log'
    gateway, banner = start_serve('--upstream', f'127.0.0.1:{upstream.grpc_port}', '--workers', '2', '--rest-port',
                             str(rest_port), '--grpc-port', str(grpc_port), '--request-log-dir', str(log_dir))
    try:
        assert 'workers: 2 processes share ports' in banner
        url = f'http://127.0.0.1:{rest_port}/v1/models/half_plus_two:predict'
        for _ in range(60):  # a new connection each: the kernel spreads them over the workers
            answer = requests.post(url, data='{"instances": [1.0]}', headers={'Connection': 'close'}, timeout=10)
            assert answer.status_code == 200 and answer.json() == {'predictions': [2.5]}
        request = predict_pb2.PredictRequest()
        request.model_spec.name = 'half_plus_two'
        request.inputs['x'].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
        for _ in range(20):
            with grpc.insecure_channel(f'127.0.0.1:{grpc_port}') as channel:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
        # Whichever worker answers the scrape reports every worker's requests.
        assert [_requests_total(rest_port) for _ in range(4)] == [80] * 4
    finally:
        gateway.send_signal(signal.SIGTERM)
        output = gateway.communicate(timeout=60)[0]
    assert gateway.returncode == 0, output
    assert '[worker 1] Stopped.' in output
    writers = Counter(name.split('-')[2] for name in os.listdir(log_dir) if name.endswith('.tfrecord'))
    assert len(writers) == 2  # both workers served, and logged
    logged = sum(1 for name in os.listdir(log_dir) for _ in tf.data.TFRecordDataset(str(log_dir / name)))
    assert logged == 80


def test_without_workers_a_taken_grpc_port_is_refused(upstream):
    # gRPC binds with SO_REUSEPORT by default: a second server would have shared the port silently.
    settings = ServerSettings.for_model(upstream.registry.managers[0].base_path, rest_port=0,
                                        grpc_port=upstream.grpc_port, poll_seconds=0, settle_seconds=0)
    with pytest.raises(OSError, match='could not bind the gRPC port'):
        ModelServer(settings).start()
