"""The embedded server with the model the pipeline pushed: REST and gRPC give
the SavedModel's own predictions; versions swap under load without a failed
request; a corrupt version never replaces the serving one; labels, batching,
metrics, request logs, errors and the CLI behave as TF Serving's do."""

import csv
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import requests as http
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, predict_pb2,
                                     prediction_service_pb2_grpc)

from conftest import SAMPLE_ROWS, as_dicts, write_csv
from pipeline import cli
from pipeline import requests as rows_lib
from serving import MODEL_NAME, WARMUP_FILE, labels, warmup
from serving.batching import BatchingOptions
from serving.client import GrpcClient, RestClient, ServerUnavailable, ServingClientError
from serving.manager import VersionPolicy
from serving.server import ModelServer, ServerSettings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _copy_version(source, base_path, version):
    target = os.path.join(base_path, str(version))
    shutil.copytree(source, target)
    return target


def _wait_for(condition, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError('timed out waiting for the server')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _settings(base_path, **overrides):
    options = dict(rest_port=0, grpc_port=0, poll_seconds=0.1)
    options.update(overrides)
    return ServerSettings.for_model(str(base_path), **options)


@pytest.fixture(scope='module')
def pushed(first_run):
    """(directory, version) of the model the first pipeline run pushed."""
    _, result, _ = first_run
    return result.pushed_to, int(os.path.basename(result.pushed_to))


@pytest.fixture(scope='module')
def held_out_rows(taxi_rows):
    """Rows of the taxi sample the pipeline never saw."""
    header, rows = taxi_rows
    return as_dicts(header, rows[SAMPLE_ROWS:SAMPLE_ROWS + 200])


@pytest.fixture(scope='module')
def expected(pushed, held_out_rows):
    """The pushed SavedModel's own predictions, in process."""
    model = tf.saved_model.load(pushed[0])
    outputs = model.signatures['serving_raw'](**rows_lib.raw_batch(held_out_rows))
    return outputs['probabilities'].numpy().reshape(-1)


@pytest.fixture(scope='module')
def server(pushed, tmp_path_factory):
    base = tmp_path_factory.mktemp('serving') / MODEL_NAME
    _copy_version(pushed[0], base, pushed[1])
    with ModelServer(_settings(base, max_request_bytes=1024 * 1024)) as running:
        yield running


@pytest.fixture
def rest(server):
    client = RestClient('127.0.0.1', server.rest_port)
    yield client
    client.close()


@pytest.fixture
def grpc_client(server):
    client = GrpcClient('127.0.0.1', server.grpc_port)
    yield client
    client.close()


def _example_json(row):
    """A row as TF Serving's Classify/Regress JSON: present values only, typed."""
    example = rows_lib.to_tf_example(row)
    features = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof('kind')
        value = list(getattr(feature, kind).value)[0]
        features[name] = value.decode() if kind == 'bytes_list' else float(value) if kind == 'float_list' else value
    return features


def test_pushed_model_carries_warmup_requests_for_every_client_signature(pushed):
    logs = list(warmup.read_warmup_requests(pushed[0]))
    assert os.path.isfile(os.path.join(pushed[0], WARMUP_FILE))
    kinds = sorted((log.WhichOneof('log_type'), getattr(log, log.WhichOneof('log_type')).request.model_spec.signature_name)
                   for log in logs)
    assert kinds == [('classify_log', 'classification'), ('predict_log', 'serving_default'),
                     ('predict_log', 'serving_raw'), ('regress_log', 'regression')]


def test_rest_and_grpc_predictions_equal_the_saved_model(rest, grpc_client, held_out_rows, expected, pushed):
    for signature in ('serving_raw', 'serving_default'):
        by_rest = rest.predict(held_out_rows, signature=signature)
        by_grpc = grpc_client.predict(held_out_rows, signature=signature)
        np.testing.assert_allclose(by_rest.probabilities, expected, atol=1e-6)
        np.testing.assert_allclose(by_grpc.probabilities, expected, atol=1e-6)
        assert by_grpc.model_version == pushed[1]
    # By version, by the columnar format, as a curl user would send it.
    instances = [rows_lib.to_raw_instance(r) for r in held_out_rows[:3]]
    columns = {name: [instance[name] for instance in instances] for name in instances[0]}
    answer = rest.predict_json({'signature_name': 'serving_raw', 'inputs': columns}, version=pushed[1])
    np.testing.assert_allclose(np.reshape(answer['outputs'], -1), expected[:3], atol=1e-6)


def test_classify_and_regress_answer_with_the_same_probabilities(server, held_out_rows, expected):
    rows = held_out_rows[:20]
    url = f'http://127.0.0.1:{server.rest_port}/v1/models/{MODEL_NAME}'
    examples = [_example_json(r) for r in rows]
    classified = http.post(f'{url}:classify', data=json.dumps({'signature_name': 'classification',
                                                               'examples': examples})).json()['result']
    assert [[label for label, _ in result] for result in classified] == [['0', '1']] * len(rows)
    np.testing.assert_allclose([result[1][1] for result in classified], expected[:20], atol=1e-5)
    regressed = http.post(f'{url}:regress', data=json.dumps({'signature_name': 'regression',
                                                             'examples': examples})).json()['result']
    np.testing.assert_allclose(regressed, expected[:20], atol=1e-5)

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}'))
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL_NAME, 'classification'
    request.input.example_list.examples.extend(rows_lib.to_tf_example(r) for r in rows)
    response = stub.Classify(request)
    np.testing.assert_allclose([c.classes[1].score for c in response.result.classifications], expected[:20], atol=1e-5)


def test_status_and_metadata_describe_the_serving_version(rest, grpc_client, pushed):
    assert rest.status() == [{'version': str(pushed[1]), 'state': 'AVAILABLE',
                              'status': {'error_code': 'OK', 'error_message': ''}}]
    (status,) = grpc_client.status()
    assert status.version == pushed[1] and status.state == status.AVAILABLE
    signatures = rest.metadata()['metadata']['signature_def']['signature_def']
    assert signatures['classification']['method_name'] == 'tensorflow/serving/classify'
    assert set(signatures['serving_raw']['inputs']) == set(rows_lib.to_raw_instance({}))
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    grpc_client.metadata().metadata['signature_def'].Unpack(signature_map)
    assert signature_map.signature_def['regression'].method_name == 'tensorflow/serving/regress'


def test_bad_requests_get_tf_serving_errors_and_the_server_keeps_serving(server, rest, grpc_client, held_out_rows):
    url = f'http://127.0.0.1:{server.rest_port}/v1/models'
    good = {'signature_name': 'serving_raw', 'instances': [rows_lib.to_raw_instance(held_out_rows[0])]}
    wrong_type = {'signature_name': 'serving_raw',
                  'instances': [dict(rows_lib.to_raw_instance(held_out_rows[0]), fare='cheap')]}
    missing = {'signature_name': 'serving_raw',
               'instances': [{k: v for k, v in rows_lib.to_raw_instance(held_out_rows[0]).items() if k != 'fare'}]}
    cases = [
        ('POST', f'{url}/no-such-model:predict', good, 404, 'Servable not found for request: Latest(no-such-model)'),
        ('POST', f'{url}/{MODEL_NAME}/versions/1:predict', good, 404, f'Specific({MODEL_NAME}, 1)'),
        ('POST', f'{url}/{MODEL_NAME}/labels/nope:predict', good, 400, 'Unrecognized servable version label: nope'),
        ('POST', f'{url}/{MODEL_NAME}:predict', '{"instances": [', 400, 'JSON Parse error'),
        ('POST', f'{url}/{MODEL_NAME}:predict', wrong_type, 400, 'fare: JSON value "cheap" is not of expected type'),
        ('POST', f'{url}/{MODEL_NAME}:predict', missing, 400, "Missing but required: ['fare']"),
        ('POST', f'{url}/{MODEL_NAME}:predict', dict(good, signature_name='nope'), 400, 'not found in signature def'),
        ('POST', f'{url}/{MODEL_NAME}:classify', {'examples': [{'fare': 1.0}]}, 400, 'method_name'),
        ('POST', f'{url}/{MODEL_NAME}:predict', {'instances': ['x' * 2 * 1024 * 1024]}, 413, 'exceeds the limit'),
        ('GET', f'{url}/{MODEL_NAME}:predict', None, 400, 'Malformed request'),
        ('GET', f'{url}/no-such-model', None, 404, 'Could not find any versions of model no-such-model'),
        ('GET', f'http://127.0.0.1:{server.rest_port}/v2/other', None, 404, 'Malformed request'),
        ('GET', f'{url}/{MODEL_NAME}/versions/latest', None, 400, 'Malformed request'),
        ('POST', f'{url}/{MODEL_NAME}:predict', '[' * 100_000, 400, 'JSON Parse error'),
    ]
    for method, target, body, status, message in cases:
        data = body if isinstance(body, str) or body is None else json.dumps(body)
        response = http.request(method, target, data=data)
        assert response.status_code == status, (target, response.text)
        assert message in response.json()['error'], (target, response.text)

    with pytest.raises(ServingClientError) as error:
        GrpcClient('127.0.0.1', server.grpc_port, model_name='no-such-model').predict(held_out_rows[:1])
    assert error.value.code == 'NOT_FOUND'
    with pytest.raises(ServingClientError) as error:
        grpc_client.predict(held_out_rows[:1], label='nope')
    assert error.value.code == 'INVALID_ARGUMENT'
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL_NAME, 'serving_raw'
    request.inputs['fare'].CopyFrom(tf.make_tensor_proto(['text']))
    with pytest.raises(ServingClientError) as error:
        grpc_client.predict_request(request)
    assert error.value.code == 'INVALID_ARGUMENT' and 'Missing but required' in error.value.message
    for name, tensor in rows_lib.raw_batch(held_out_rows[:1]).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(tensor))
    request.inputs['fare'].CopyFrom(tf.make_tensor_proto(np.array([7], np.int32)))  # TF Serving wants float
    with pytest.raises(ServingClientError) as error:
        grpc_client.predict_request(request)
    assert error.value.code == 'INVALID_ARGUMENT' and 'Expects arg[fare] to be float32 but int32' in error.value.message
    request.inputs['fare'].CopyFrom(tf.make_tensor_proto(np.zeros(400_000, np.float32)))
    with pytest.raises(ServingClientError) as error:
        grpc_client.predict_request(request)
    assert error.value.code == 'RESOURCE_EXHAUSTED'
    with pytest.raises(ServerUnavailable):
        RestClient('127.0.0.1', _free_port()).status()

    chunked = http.post(f'{url}/{MODEL_NAME}:predict', data=iter([json.dumps(good).encode()]))
    assert chunked.status_code == 411 and 'Content-Length' in chunked.json()['error']

    # Still serving, on both protocols.
    assert len(rest.predict(held_out_rows[:2]).probabilities) == 2
    assert len(grpc_client.predict(held_out_rows[:2]).probabilities) == 2
    metrics = http.get(f'http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics').text
    assert 'tfserving_requests_total{api="predict",code="INVALID_ARGUMENT"' in metrics
    assert 'code="NOT_FOUND"' in metrics and 'protocol="grpc"' in metrics
    assert 'tfserving_request_latency_seconds_bucket' in metrics
    # Made-up model and signature names never become metric labels.
    assert 'no-such-model' not in metrics and 'signature_name="nope"' not in metrics


class LoadGenerator:
    """Clients on both protocols sending requests in a loop; records every outcome."""

    def __init__(self, server, rows, threads_per_protocol=2):
        self.rows, self.stop = rows, threading.Event()
        self.failures, self.versions, self.count = [], [], 0
        self.versions_by_client = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(factory, i), daemon=True)
                        for i, factory in enumerate( [lambda: RestClient('127.0.0.1', server.rest_port),
                                        lambda: GrpcClient('127.0.0.1', server.grpc_port)] * threads_per_protocol)]

    def _loop(self, factory, index):
        client = factory()
        seen = self.versions_by_client.setdefault(index, [])
        i = 0
        while not self.stop.is_set():
            try:
                prediction = client.predict(self.rows[i % len(self.rows):][:4])
                with self.lock:
                    self.count += 1
                    if prediction.model_version is not None:
                        self.versions.append(prediction.model_version)
                        seen.append(prediction.model_version)
            except Exception as e:  # any failure is what this test is about
                with self.lock:
                    self.failures.append(repr(e))
            i += 4
        client.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def _status(server):
    return {v: s for v, s in server.registry.manager(MODEL_NAME).status().items()}


def test_new_version_swaps_in_under_load_without_a_failed_request_and_corrupt_one_never_does(
        pushed, held_out_rows, expected, tmp_path):
    source, version = pushed
    base = tmp_path / MODEL_NAME
    _copy_version(source, base, version)
    with ModelServer(_settings(base)) as server, LoadGenerator(server, held_out_rows) as load:
        _wait_for(lambda: load.count > 20)
        # Push v+1 the way the Pusher does: files one by one, saved_model.pb
        # last, and here even that in two slow halves.
        new = base / str(version + 1)
        shutil.copytree(source, new, ignore=shutil.ignore_patterns('saved_model.pb'))
        time.sleep(0.5)
        graph = open(os.path.join(source, 'saved_model.pb'), 'rb').read()
        with open(new / 'saved_model.pb', 'wb') as f:
            f.write(graph[:len(graph) // 2])
            f.flush()
            time.sleep(0.5)
            assert version + 1 not in _status(server)  # never tried while half written
            f.write(graph[len(graph) // 2:])
        _wait_for(lambda: load.versions and load.versions[-1] == version + 1)
        served_before = load.count
        _wait_for(lambda: load.count > served_before + 20)

        # A corrupt v+2 fails to load, is reported, and v+1 keeps serving.
        corrupt = base / str(version + 2)
        shutil.copytree(source, corrupt, ignore=shutil.ignore_patterns('saved_model.pb'))
        (corrupt / 'saved_model.pb').write_bytes(b'not a SavedModel')
        status = _wait_for(lambda: _status(server).get(version + 2)
                           if getattr(_status(server).get(version + 2), 'state', None) == 'END' else None)
        served_before = load.count
        _wait_for(lambda: load.count > served_before + 20)
        reported = http.get(f'http://127.0.0.1:{server.rest_port}/v1/models/{MODEL_NAME}').json()
        metrics = http.get(f'http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics').text
        final = _status(server)

    assert load.failures == []
    assert status.error_code != 'OK' and 'Failed to load version' in status.error_message
    assert final[version].state == 'END' and final[version].error_code == 'OK'  # unloaded after the swap
    assert final[version + 1].state == 'AVAILABLE'
    assert set(load.versions) == {version, version + 1}
    for seen in load.versions_by_client.values():
        if seen:  # each client, once switched, never goes back
            assert seen == sorted(seen) and seen[-1] == version + 1
    by_version = {s['version']: s for s in reported['model_version_status']}
    assert by_version[str(version + 2)]['state'] == 'END'
    assert 'Failed to load version' in by_version[str(version + 2)]['status']['error_message']
    assert 'tfserving_model_load_failures_total{model_name="chicago-taxi"} 1.0' in metrics


def test_labels_from_a_model_config_route_requests_and_follow_its_changes(pushed, held_out_rows, tmp_path):
    source, version = pushed
    base = tmp_path / MODEL_NAME
    for v in (version, version + 1):
        _copy_version(source, base, v)
    config = tmp_path / 'models.config'
    shutil.copy(os.path.join(REPO, 'serving', 'config', 'models.config'), config)
    text = config.read_text().replace('gs://my-bucket/chicago-taxi/serving_model/chicago-taxi', str(base))
    config.write_text(text)
    labels.set_labels(str(config), stable=version, canary=version + 1, staged=False)
    settings = ServerSettings.from_config_file(str(config), rest_port=0, grpc_port=0, poll_seconds=0.1,
                                               config_poll_seconds=0.1)
    with ModelServer(settings) as server:
        client = GrpcClient('127.0.0.1', server.grpc_port)
        assert client.predict(held_out_rows[:2], label='stable').model_version == version
        assert client.predict(held_out_rows[:2], label='canary').model_version == version + 1
        assert client.predict(held_out_rows[:2]).model_version == version + 1  # latest loaded
        rest = RestClient('127.0.0.1', server.rest_port)
        assert [s['version'] for s in rest.status(label='stable')] == [str(version)]

        # Promote the canary: one step, as it is loaded.
        assert labels.set_labels(str(config), stable=version + 1) == frozenset()
        _wait_for(lambda: server.registry.manager(MODEL_NAME).labels == {'stable': version + 1})
        assert client.predict(held_out_rows[:2], label='stable').model_version == version + 1
        with pytest.raises(ServingClientError) as error:
            rest.predict(held_out_rows[:2], label='canary')
        assert 'Unrecognized servable version label: canary' in error.value.message
        # The policy now names only the promoted version; the other is unloaded.
        _wait_for(lambda: server.registry.manager(MODEL_NAME).available_versions == [version + 1])
        client.close()
        rest.close()


def test_server_side_batching_merges_concurrent_requests_and_answers_each_correctly(
        pushed, held_out_rows, expected, tmp_path):
    base = tmp_path / MODEL_NAME
    _copy_version(pushed[0], base, pushed[1])
    batching = BatchingOptions(max_batch_size=64, batch_timeout_micros=5000, num_batch_threads=1)
    results, errors = {}, []
    with ModelServer(_settings(base, batching=batching)) as server:
        def send(i):
            client = GrpcClient('127.0.0.1', server.grpc_port)
            for j in range(5):
                start = (i * 5 + j) * 3
                try:
                    results[start] = client.predict(held_out_rows[start:start + 3]).probabilities
                except Exception as e:
                    errors.append(e)
            client.close()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        metrics = http.get(f'http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics').text
    assert errors == [] and len(results) == 40
    for start, probabilities in results.items():
        np.testing.assert_allclose(probabilities, expected[start:start + 3], atol=1e-6)
    batches = {line.split('{')[0]: float(line.rsplit(' ', 1)[1]) for line in metrics.splitlines()
               if line.startswith('tfserving_batch_size_') and not line.startswith('tfserving_batch_size_bucket')}
    # 40 requests of 3 rows (plus warm-up) ran in fewer, larger model calls.
    assert batches['tfserving_batch_size_count'] < 40
    assert batches['tfserving_batch_size_sum'] >= 120


def test_request_log_holds_every_served_example_in_a_form_tfdv_reads(pushed, held_out_rows, tmp_path):
    import tensorflow_data_validation as tfdv
    base = tmp_path / MODEL_NAME
    _copy_version(pushed[0], base, pushed[1])
    log_dir = tmp_path / 'request_log'
    with ModelServer(_settings(base, request_log_dir=str(log_dir), warm_up=False)) as server:
        RestClient('127.0.0.1', server.rest_port).predict(held_out_rows[:10])
        GrpcClient('127.0.0.1', server.grpc_port).predict(held_out_rows[10:30], signature='serving_default')
    assert glob.glob(str(log_dir / '*.partial')) == []  # completed on shutdown
    stats = tfdv.generate_statistics_from_tfrecord(data_location=str(log_dir / '*.tfrecord'))
    dataset = stats.datasets[0]
    assert dataset.num_examples == 30
    features = {f.path.step[0]: f for f in dataset.features}
    assert {'fare', 'company', 'probabilities', 'model_version', 'request_id', 'timestamp_micros'} <= set(features)
    fares = [float(r['fare']) for r in held_out_rows[:30] if r['fare']]
    assert features['fare'].num_stats.mean == pytest.approx(np.mean(fares), rel=1e-4)
    # Missing values are absent, not markers: the sent rows' empty companies are missing here too.
    missing_companies = sum(1 for r in held_out_rows[:30] if not r['company'])
    assert features['company'].string_stats.common_stats.num_missing == missing_companies


def test_cli_serves_and_predicts_a_csv(pushed, held_out_rows, expected, tmp_path, capsys):
    base = tmp_path / MODEL_NAME
    _copy_version(pushed[0], base, pushed[1])
    rest_port, grpc_port = _free_port(), _free_port()
    serve = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), 'taxi-pipeline'), 'serve', '--model-base-path', str(base),
         '--rest-port', str(rest_port), '--grpc-port', str(grpc_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in serve.stdout:
            lines.append(line)
            if 'Press Ctrl-C' in line:
                break
        assert f'versions {pushed[1]}' in ''.join(lines), lines
        header = list(held_out_rows[0])
        rows_csv = write_csv(str(tmp_path / 'rows.csv'), header, [[r[h] for h in header] for r in held_out_rows[:7]])
        for protocol, port in (('rest', rest_port), ('grpc', grpc_port)):
            assert cli.main(['predict', rows_csv, '--protocol', protocol, '--port', str(port),
                             '--batch-size', '3']) == 0
            printed = list(csv.DictReader(capsys.readouterr().out.splitlines()))
            assert [int(p['row']) for p in printed] == list(range(1, 8))
            np.testing.assert_allclose([float(p['probability']) for p in printed], expected[:7], atol=1e-6)
        bad = write_csv(str(tmp_path / 'bad.csv'), header, [[('cheap' if h == 'fare' else r[h]) for h in header]
                                                           for r in held_out_rows[:2]])
        assert cli.main(['predict', bad, '--port', str(rest_port)]) == 2
        assert 'fare' in capsys.readouterr().err
        assert cli.main(['predict', rows_csv, '--port', str(_free_port())]) == 1
        assert 'UNAVAILABLE' in capsys.readouterr().err
        assert cli.main(['predict', str(tmp_path / 'missing.csv')]) == 2
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=30) == 0


def test_a_server_that_cannot_bind_its_port_fails_cleanly(tmp_path):
    (tmp_path / MODEL_NAME).mkdir()
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        server = ModelServer(_settings(tmp_path / MODEL_NAME, grpc_port=taken.getsockname()[1]))
        with pytest.raises(OSError, match='could not bind the gRPC port'):
            server.start()
        stopped = threading.Thread(target=server.stop)
        stopped.start()
        stopped.join(timeout=10)
        assert not stopped.is_alive()  # stop() after a failed start must not hang
