"""Where TF Serving's own behaviour is the specification (tensorflow/serving source and tests):
version directories named with leading zeros, the `results` key of classify and regress, the
label of a score-only class, and a poll interval of 0 meaning once."""

import json
import os
import time

import numpy as np
import pytest
import requests
import tensorflow as tf

from serving import json_codec
from serving.client import RestClient
from serving.server import ModelServer, ServerSettings

pytestmark = pytest.mark.component

OLD = 1_600_000_000  # settled: no file changed for a while


class HalfPlusTwo(tf.Module):
    """saved_model_half_plus_two's arithmetic: y = x / 2 + 2."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
    def predict(self, x):
        return {'y': x / 2.0 + 2.0}


def _export(directory):
    module = HalfPlusTwo()
    tf.saved_model.save(module, str(directory), signatures={'serving_default': module.predict})
    for root, _, files in os.walk(directory):
        for name in files:
            os.utime(os.path.join(root, name), (OLD, OLD))


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
    # The layout of TF Serving's testdata (saved_model_half_plus_two_cpu/00000123).
    base = tmp_path_factory.mktemp('models') / 'half_plus_two'
    _export(base / '00000123')
    return base


def test_a_version_directory_with_leading_zeros_is_served_as_its_number(base_path):
    # TF Serving's path source reads the version from the name's digits and loads the directory as named.
    settings = ServerSettings.for_model(str(base_path), rest_port=0, grpc_port=0, poll_seconds=0.1)
    with ModelServer(settings) as running:
        client = RestClient('127.0.0.1', running.rest_port, model_name='half_plus_two')
        assert client.status() == [{'version': '123', 'state': 'AVAILABLE',
                                    'status': {'error_code': 'OK', 'error_message': ''}}]
        outputs = client.predict({'x': np.array([1.0, 2.0, 5.0], np.float32)}).outputs
        np.testing.assert_allclose(outputs['y'], [2.5, 3.0, 4.5])
        answer = requests.post(f'http://127.0.0.1:{running.rest_port}/v1/models/half_plus_two/versions/123:predict',
                               data=json.dumps({'instances': [1.0]}), timeout=10)
        assert answer.status_code == 200 and answer.json() == {'predictions': [2.5]}


def test_classify_and_regress_answer_under_results_and_score_only_labels_are_empty():
    # tensorflow_serving/util/json_tensor_test.cc: {"results": [[["car", 0.2], ...]]}, {"results": [0.2, ...]};
    # a class whose label was never set is written as "".
    scores = np.array([[0.25, 0.75]], np.float32)
    assert json_codec.classify_response(None, scores) == {'results': [[['', 0.25], ['', 0.75]]]}
    classes = np.array([[b'car', b'bike']], dtype=object)
    assert json_codec.classify_response(classes, scores) == {'results': [[['car', 0.25], ['bike', 0.75]]]}
    assert json_codec.regress_response(np.array([0.2, 0.9], np.float32)) == {'results': pytest.approx([0.2, 0.9])}


def test_a_poll_interval_of_zero_polls_once_at_start(tmp_path):
    # TF Serving's --file_system_poll_wait_seconds 0: "poll will be exactly done once and not periodically".
    base = tmp_path / 'half_plus_two'
    _export(base / '1')
    settings = ServerSettings.for_model(str(base), rest_port=0, grpc_port=0, poll_seconds=0)
    with ModelServer(settings) as running:
        client = RestClient('127.0.0.1', running.rest_port, model_name='half_plus_two')
        assert [s['version'] for s in client.status()] == ['1']
        _export(base / '2')
        time.sleep(1.5)  # a periodic poller (every 0.2 s at most) would have loaded it by now
        assert [s['version'] for s in client.status()] == ['1']
