"""The server knows no particular model: a SavedModel it has never seen, with
its own inputs, outputs and missing-value markers, is served, described and
logged from what the SavedModel itself says."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv

from serving import MISSING_VALUES_FILE
from serving.client import GrpcClient, RestClient
from serving.server import ModelServer, ServerSettings

pytestmark = pytest.mark.unit


class Scaler(tf.Module):
    """y = 2x + 1 per row; `unit` is echoed back. Nothing like the taxi model."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x'),
                                  tf.TensorSpec([None], tf.string, name='unit')])
    def scale(self, x, unit):
        return {'y': 2.0 * x + 1.0, 'unit_echo': unit}


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
    base = tmp_path_factory.mktemp('models') / 'scaler'
    module = Scaler()
    tf.saved_model.save(module, str(base / '7'), signatures={'serving_default': module.scale})
    declared = base / '7' / MISSING_VALUES_FILE
    declared.parent.mkdir(exist_ok=True)
    declared.write_text(json.dumps({'serving_default': {'x': 'nan', 'unit': 'empty'}}))
    # Settled: the server loads a version only once no file changed for a while.
    old = 1_600_000_000
    for root, _, files in os.walk(base / '7'):
        for name in files:
            os.utime(os.path.join(root, name), (old, old))
    return base


@pytest.fixture(scope='module')
def server(base_path, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp('log')
    settings = ServerSettings.for_model(str(base_path), rest_port=0, grpc_port=0, poll_seconds=0.1,
                                        request_log_dir=str(log_dir))
    with ModelServer(settings) as running:
        yield running, log_dir


INPUTS = {'x': np.array([1.0, float('nan'), 3.0], np.float32), 'unit': np.array(['m', '', 'km'], dtype=object)}


@pytest.mark.parametrize('protocol', ['rest', 'grpc'])
def test_an_unknown_model_answers_under_its_directorys_name(server, protocol):
    running, _ = server
    client = (RestClient('127.0.0.1', running.rest_port, model_name='scaler') if protocol == 'rest' else
              GrpcClient('127.0.0.1', running.grpc_port, model_name='scaler'))
    outputs = client.predict(INPUTS).outputs
    client.close()
    np.testing.assert_allclose(outputs['y'][[0, 2]], [3.0, 7.0])
    assert [v if isinstance(v, str) else v.decode() for v in outputs['unit_echo']] == ['m', '', 'km']


def test_its_metadata_is_its_own_signature(server):
    running, _ = server
    client = RestClient('127.0.0.1', running.rest_port, model_name='scaler')
    signature = client.metadata()['metadata']['signature_def']['signature_def']['serving_default']
    assert set(signature['inputs']) == {'x', 'unit'} and set(signature['outputs']) == {'y', 'unit_echo'}
    assert client.status()[0]['version'] == '7'


def test_its_request_log_leaves_out_the_values_it_declares_missing(server):
    running, log_dir = server
    GrpcClient('127.0.0.1', running.grpc_port, model_name='scaler').predict(INPUTS)
    running.request_logger.close()  # completes the current file
    stats = tfdv.generate_statistics_from_tfrecord(data_location=str(log_dir / '*.tfrecord')).datasets[0]
    features = {f.path.step[0]: f for f in stats.features}
    assert features['x'].num_stats.common_stats.num_missing >= 1
    assert features['unit'].string_stats.common_stats.num_missing >= 1
    assert features['y'].num_stats.common_stats.num_missing == 0
