"""POST /v1/feedback: ground truth for a served request is stored durably, once;
duplicates and bad records are refused with TF Serving's error shape and
nothing of a bad batch is stored."""

import json
import os
import urllib.error
import urllib.request

import pytest
import tensorflow as tf

from serving import FEEDBACK_PATH, feedback
from serving.server import ModelServer, ServerSettings

pytestmark = pytest.mark.unit


class Doubler(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
    def double(self, x):
        return {'y': 2.0 * x}


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
    base = tmp_path_factory.mktemp('models') / 'doubler'
    module = Doubler()
    tf.saved_model.save(module, str(base / '1'), signatures={'serving_default': module.double})
    for root, _, files in os.walk(base / '1'):  # settled, so the server loads it at once
        for name in files:
            os.utime(os.path.join(root, name), (1_600_000_000, 1_600_000_000))
    return str(base)


def _start(base_path, feedback_dir):
    settings = ServerSettings.for_model(base_path, rest_port=0, grpc_port=0, feedback_dir=feedback_dir)
    return ModelServer(settings).start()


def _post(server, path, payload):
    """(status, body as JSON, headers)."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(f'http://127.0.0.1:{server.rest_port}{path}', data=data, method='POST')
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


@pytest.fixture
def served(base_path, tmp_path):
    """A server with a feedback store, and the request ids of two answered requests."""
    server = _start(base_path, str(tmp_path / 'feedback'))
    ids = []
    for _ in range(2):
        status, body, headers = _post(server, '/v1/models/doubler:predict', {'instances': [1.0, 2.0]})
        assert status == 200 and body['predictions'] == [2.0, 4.0]
        ids.append(headers['X-Request-Id'])
    yield server, ids, str(tmp_path / 'feedback')
    server.stop()


def test_feedback_for_a_served_request_is_stored_once(served):
    server, (first, _), store = served
    status, body, _ = _post(server, FEEDBACK_PATH, {'request_id': first, 'example': 1, 'tips': 2.5})
    assert status == 200 and body == {'stored': 1, 'duplicates': []}
    records, duplicates = feedback.read(store)
    assert duplicates == [] and records[(first, 1)].observed == {'tips': 2.5}
    assert records[(first, 1)].source == 'rest' and records[(first, 1)].received_micros > 0

    status, body, _ = _post(server, FEEDBACK_PATH, {'request_id': first, 'example': 1, 'tips': 9.0})
    assert status == 409 and first in body['error'] and 'first record stands' in body['error']
    assert feedback.read(store)[0][(first, 1)].observed == {'tips': 2.5}


def test_a_batch_stores_what_is_new_and_names_the_duplicates(served):
    server, (first, second), store = served
    _post(server, FEEDBACK_PATH, {'request_id': first, 'label': 1})
    status, body, _ = _post(server, FEEDBACK_PATH, {'feedback': [
        {'request_id': first, 'label': 0}, {'request_id': second, 'label': 0}, {'request_id': second, 'label': 1}]})
    assert status == 200 and body['stored'] == 1
    assert body['duplicates'] == [{'request_id': first, 'example': 0}, {'request_id': second, 'example': 0}]
    records, _ = feedback.read(store)
    assert {key: r.observed['label'] for key, r in records.items()} == {(first, 0): 1.0, (second, 0): 0.0}


@pytest.mark.parametrize('payload, message', [
    ({'feedback': [{'request_id': 'a', 'label': 1}, {'request_id': 'b', 'label': 'yes'}]}, 'item 2'),
    ({'feedback': [{'request_id': '', 'label': 1}]}, 'request_id'),
    ({'request_id': 'a'}, 'no observed value'),
    ({'request_id': 'a', 'example': -1, 'label': 1}, 'example'),
    ({'feedback': []}, 'non-empty'),
    (b'{"request_id": ', 'JSON'),
])
def test_a_bad_batch_is_refused_whole(served, payload, message):
    server, _, store = served
    status, body, _ = _post(server, FEEDBACK_PATH, payload)
    assert status == 400 and message in body['error']
    assert feedback.read(store) == ({}, [])


def test_a_restarted_server_still_refuses_what_was_stored(served, base_path):
    server, (first, _), store = served
    assert _post(server, FEEDBACK_PATH, {'request_id': first, 'label': 1})[0] == 200
    server.stop()
    restarted = _start(base_path, store)
    try:
        assert _post(restarted, FEEDBACK_PATH, {'request_id': first, 'label': 0})[0] == 409
    finally:
        restarted.stop()


def test_a_store_holding_a_foreign_file_stops_the_server_from_starting(base_path, tmp_path):
    (tmp_path / 'feedback-x.jsonl').write_text('not json\n')
    with pytest.raises(feedback.FeedbackError, match='feedback-x.jsonl, line 1'):
        _start(base_path, str(tmp_path))


def test_without_a_store_the_endpoint_says_how_to_turn_it_on(base_path):
    server = _start(base_path, None)
    try:
        status, body, _ = _post(server, FEEDBACK_PATH, {'request_id': 'a', 'label': 1})
        assert status == 404 and '--feedback-dir' in body['error']
    finally:
        server.stop()


def test_a_batch_a_crash_left_half_written_is_not_read(base_path, tmp_path):
    store = feedback.FeedbackStore(str(tmp_path))
    store.append(feedback.parse_all([{'request_id': 'a', 'label': 1}]), source='test')
    # What write_atomically leaves when killed before its rename: a hidden temporary file.
    (tmp_path / '.feedback-20260101T000000-000000-deadbeef.jsonl.k2j3').write_text('{"request_id": "b", "exa')
    records, duplicates = feedback.read(str(tmp_path))
    assert set(records) == {('a', 0)} and duplicates == []
