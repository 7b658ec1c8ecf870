"""The request log as an audit record (serving/request_log.py): the fast encoder writes what the
reference encoding writes, a killed writer's file is recovered, a full log never loses silently,
and a server killed under load has logged every request it answered."""

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import requests
import tensorflow as tf

from serving import request_log
from serving.errors import ServingError
from serving.request_log import PARTIAL, RequestLogger, recover_orphans
from serving.telemetry import Metrics, log_examples
from support.polling import free_port, wait_for
from support.tf_serving_models import HALF_PLUS_TWO, settled_copy, start_serve

pytestmark = pytest.mark.component



def _meta(request_id, version=1):
    return {'model_name': 'm', 'model_version': version, 'signature_name': 's', 'request_id': request_id,
            'timestamp_micros': 1_700_000_000_000_000}


def _record(request_id, n, seed, missing=None):
    rng = np.random.default_rng(seed)
    fare = rng.random(n).astype(np.float32)
    fare[::3] = np.nan
    inputs = {'fare': fare, 'hour': rng.integers(-2, 24, n), 'company': np.array([b'', b'Flash', 'Taxi Co'] * n,
                                                                                  dtype=object)[:n],
              'flag': rng.random(n) > 0.5,
              # Lengths and values whose varints take several bytes (over 127; negative: ten bytes).
              'note': np.array([b'x' * 300, b'y' * 20000] * n, dtype=object)[:n],
              'big': rng.integers(-2 ** 40, 2 ** 40, n)}
    outputs = {'probabilities': rng.random((n, 1)).astype(np.float32), 'scores': rng.random((n, 2)),
               'flagged': np.array([b'fare,hour'] * n, dtype=object)}
    return _meta(request_id), inputs, outputs, None, dict(missing or {})


def _serialized_record(request_id, n):
    examples = [tf.train.Example(features=tf.train.Features(feature={
        'x': tf.train.Feature(float_list=tf.train.FloatList(value=[float(i)])),
        'scores': tf.train.Feature(float_list=tf.train.FloatList(value=[9.0]))})).SerializeToString()
        for i in range(n)]
    # 'scores' is in the sent example and an output: the output wins, in both encodings.
    return (_meta(request_id), {'examples': np.array(examples, dtype=object)},
            {'scores': np.arange(2 * n, dtype=np.float32).reshape(n, 2)}, 'examples', {})


def _scalar_record(request_id):
    return _meta(request_id), {'x': np.array([1.0, 2.0], np.float32)}, {'total': np.array(3.0, np.float32)}, None, {}


def test_the_fast_encoder_writes_what_the_reference_encoding_writes():
    records = [_record('a', 5, 0, {'fare': 'nan', 'hour': 'negative', 'company': 'empty'}),
               _record('b', 1, 1, {'fare': 'nan', 'hour': 'negative', 'company': 'empty'}),  # grouped with 'a'
               _record('c', 3, 2), _scalar_record('d'), _serialized_record('e', 4), _serialized_record('f', 2),
               _record('g', 7, 3, {'fare': 'nan', 'hour': 'negative', 'company': 'empty'})]
    encoded = request_log.encode(records)
    reference = [e for record in records for e in log_examples(record)]
    assert len(encoded) == len(reference) == 5 + 1 + 3 + 1 + 4 + 2 + 7
    for ours, theirs in zip(encoded, reference):
        # Parsed and written back deterministically: the same features and values, in any order. (Bytes,
        # not protos, are compared: NaN values never compare equal.)
        assert tf.train.Example.FromString(ours).SerializeToString(deterministic=True) == \
            theirs.SerializeToString(deterministic=True)


# -- recovery -----------------------------------------------------------------------------------

def _write_partial(directory, name, records, tail=b''):
    path = os.path.join(directory, name + PARTIAL)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    with open(path, 'ab') as f:
        f.write(tail)
    return path


def _read(path):
    return [r for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]


def test_an_orphaned_partial_file_is_cut_after_its_last_complete_record_and_completed(tmp_path):
    records = [f'record {i}'.encode() for i in range(100)]
    _write_partial(tmp_path, 'requests-a.tfrecord', records, tail=b'\x40\x00\x00\x00\x00\x00\x00\x00half')
    _write_partial(tmp_path, 'requests-empty.tfrecord', [], tail=b'\x01\x02')
    recovered = recover_orphans(str(tmp_path))
    assert (recovered.files, recovered.records) == (1, 100)
    assert sorted(os.listdir(tmp_path)) == ['requests-a.tfrecord']
    assert _read(tmp_path / 'requests-a.tfrecord') == records


def test_a_live_writers_file_is_left_alone(tmp_path):
    logger = RequestLogger(str(tmp_path), Metrics())
    logger.log('m', 1, 's', 'r1', {'x': np.ones(2, np.float32)}, {'y': np.ones(2, np.float32)})
    partial = wait_for(lambda: [n for n in os.listdir(tmp_path) if n.endswith(PARTIAL)])[0]
    wait_for(lambda: os.path.getsize(tmp_path / partial) > 0)
    assert recover_orphans(str(tmp_path)).files == 0
    assert partial in os.listdir(tmp_path)
    assert logger.close()
    assert len(_read(tmp_path / partial[:-len(PARTIAL)])) == 2


def test_a_starting_logger_recovers_what_a_stopped_one_left(tmp_path):
    _write_partial(tmp_path, 'requests-old.tfrecord', [b'one', b'two'])
    metrics = Metrics()
    logger = RequestLogger(str(tmp_path), metrics)
    assert (logger.recovered.files, logger.recovered.records) == (1, 2)
    assert metrics.log_recovered._value.get() == 2
    logger.close()


# -- a full log ----------------------------------------------------------------------------------

@pytest.fixture
def stalled_writer(monkeypatch):
    """The writer stalls (a slow disk) once it has taken records, until `release` is set; `stalled` is
    set when it has."""
    release, stalled = threading.Event(), threading.Event()
    real = request_log.encode

    def stall(records):
        stalled.set()
        release.wait(30)
        return real(records)

    monkeypatch.setattr(request_log, 'encode', stall)
    release.stalled = stalled
    yield release
    release.set()


def test_block_waits_for_room_then_refuses_the_request_rather_than_answer_it_unlogged(tmp_path, stalled_writer):
    metrics = Metrics()
    logger = RequestLogger(str(tmp_path), metrics, overflow='block', block_seconds=0.2, queue_size=1)
    logger.log('m', 1, 's', 'first', {'x': np.ones(1, np.float32)}, {'y': np.ones(1, np.float32)})
    assert stalled_writer.stalled.wait(10)  # the writer holds it, stalled
    logger.log('m', 1, 's', 'queued', {'x': np.ones(1, np.float32)}, {'y': np.ones(1, np.float32)})
    with pytest.raises(ServingError) as refused:
        logger.log('m', 1, 's', 'refused', {'x': np.ones(1, np.float32)}, {'y': np.ones(1, np.float32)})
    assert refused.value.code_name == 'UNAVAILABLE' and 'request log is full' in refused.value.message
    assert metrics.log_dropped.labels('refused')._value.get() == 1
    stalled_writer.set()
    assert logger.close()
    logged = [tf.train.Example.FromString(r).features.feature['request_id'].bytes_list.value[0]
              for path in tf.io.gfile.glob(str(tmp_path / '*.tfrecord')) for r in _read(path)]
    assert sorted(logged) == [b'first', b'queued']


def test_shed_answers_and_the_answer_says_it_was_not_logged(tmp_path, stalled_writer):
    from serving.server import ModelServer, ServerSettings
    base = settled_copy(HALF_PLUS_TWO, tmp_path / 'half_plus_two')
    settings = ServerSettings.for_model(base, rest_port=0, grpc_port=0, poll_seconds=0, settle_seconds=0,
                                        request_log_dir=str(tmp_path / 'log'), request_log_overflow='shed')
    with ModelServer(settings) as running:
        running.request_logger._queue.maxsize = 1
        url = f'http://127.0.0.1:{running.rest_port}/v1/models/half_plus_two:predict'
        answers = []
        while len(answers) < 50 and 'false' not in [a.headers.get('X-Request-Logged') for a in answers]:
            answers.append(requests.post(url, data=json.dumps({'instances': [1.0]}), timeout=10))
        assert all(a.status_code == 200 and a.json() == {'predictions': [2.5]} for a in answers)
        marks = [a.headers.get('X-Request-Logged') for a in answers]
        assert marks[0] is None and marks[-1] == 'false'  # the writer took the first; the queue then filled
        assert running.metrics.log_dropped.labels('shed')._value.get() == marks.count('false')
        stalled_writer.set()


# -- killed under load ----------------------------------------------------------------------------

def _start_server(base, log_dir, port):
    process, _ = start_serve('--model-base-path', str(base), '--rest-port', str(port), '--grpc-port',
                             str(free_port()), '--request-log-dir', str(log_dir), '--poll-seconds', '0')
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process


def _logged_ids(log_dir):
    ids = []
    for path in sorted(tf.io.gfile.glob(os.path.join(str(log_dir), '*.tfrecord'))):
        for record in _read(path):
            ids.append(tf.train.Example.FromString(record).features.feature['request_id'].bytes_list.value[0].decode())
    return ids


def _load(port, stop, answered):
    session = requests.Session()
    url = f'http://127.0.0.1:{port}/v1/models/half_plus_two:predict'
    while not stop.is_set():
        try:
            answer = session.post(url, data='{"instances": [1.0, 2.0]}', timeout=10)
        except requests.RequestException:
            return
        if answer.status_code == 200:
            answered.append((time.monotonic(), answer.headers['X-Request-Id']))


def test_a_server_killed_under_load_has_logged_every_request_it_answered(tmp_path):
    base = settled_copy(HALF_PLUS_TWO, tmp_path / 'half_plus_two')
    log_dir, port = tmp_path / 'log', free_port()
    server = _start_server(base, log_dir, port)
    stop, answered = threading.Event(), []
    clients = [threading.Thread(target=_load, args=(port, stop, answered)) for _ in range(4)]
    for client in clients:
        client.start()
    wait_for(lambda: len(answered) >= 2000, timeout=120)
    server.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    server.wait()
    stop.set()
    for client in clients:
        client.join()
    assert any(name.endswith(PARTIAL) for name in os.listdir(log_dir))  # the killed writer's file

    # Restarted, the server completes the orphan; under more load, then SIGTERM, it logs the rest.
    server = _start_server(base, log_dir, port)
    more, stop = [], threading.Event()
    client = threading.Thread(target=_load, args=(port, stop, more))
    client.start()
    wait_for(lambda: len(more) >= 200, timeout=60)
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0
    stop.set()
    client.join()

    logged = _logged_ids(log_dir)
    assert len(logged) == len(set(logged)) * 2  # two examples a request, each logged once
    logged = set(logged)
    # SIGKILL: what was answered more than a moment before the kill is there; SIGTERM: everything.
    assert {rid for at, rid in answered if at < killed - 0.5} <= logged
    assert {rid for _, rid in more} <= logged
    assert not any(name.endswith(PARTIAL) for name in os.listdir(log_dir))
