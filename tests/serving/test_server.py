"""The embedded server with the model the pipeline pushed: REST and gRPC give
the SavedModel's own predictions; versions swap under load without a failed
request; a corrupt version never replaces the serving one; labels, batching,
metrics, request logs, errors and the CLI behave as TF Serving's do."""

import csv
import glob
import json
import os
from pathlib import Path
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

from google.protobuf import text_format
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.config import model_server_config_pb2

from cli import main as cli
from pipeline.config import PIPELINE_NAME
from serving import METRICS_PATH, labels
from serving.batching import BatchingOptions
from serving.client import GrpcClient, RestClient, ServerUnavailable, ServingClientError
from serving.server import ModelServer, ServerSettings
from support.polling import free_port, wait_for
from support.serving_load import LoadGenerator, predict as _predict
from support.samples import SAMPLE_ROWS, as_dicts, write_csv
from taxi_model import contract

pytestmark = pytest.mark.e2e


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The server names a model after its base directory, as the Pusher lays it out.
MODEL_NAME = PIPELINE_NAME


def _copy_version(source, base_path, version):
    target = os.path.join(base_path, str(version))
    shutil.copytree(source, target)
    return target


def _metrics(server):
    """{(metric sample name, frozenset of label items): value} from the server's Prometheus endpoint."""
    text = http.get(f'http://127.0.0.1:{server.rest_port}{METRICS_PATH}').text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _metric_total(server, name, **labels_):
    return sum(value for (sample, labels_found), value in _metrics(server).items()
               if sample == name and set(labels_.items()) <= labels_found)


def _status(client):
    """{version: status entry} as the REST API reports it."""
    try:
        return {int(s['version']): s for s in client.status()}
    except ServingClientError:
        return {}


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
    inputs = {k: tf.constant(v) for k, v in contract.raw_inputs(held_out_rows).items()}
    return np.array(contract.probabilities(model.signatures[contract.PREDICT_RAW](**inputs)))


@pytest.fixture(scope='module')
def server(pushed, tmp_path_factory):
    base = tmp_path_factory.mktemp('serving') / MODEL_NAME
    _copy_version(pushed[0], base, pushed[1])
    with ModelServer(_settings(base, max_request_bytes=1024 * 1024)) as running:
        yield running


@pytest.fixture
def rest(server):
    client = RestClient('127.0.0.1', server.rest_port, model_name=MODEL_NAME)
    yield client
    client.close()


@pytest.fixture
def grpc_client(server):
    client = GrpcClient('127.0.0.1', server.grpc_port, model_name=MODEL_NAME)
    yield client
    client.close()


def _example_json(row):
    """A row as TF Serving's Classify/Regress JSON: present values only, typed."""
    example = contract.to_tf_example(row)
    features = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof('kind')
        value = list(getattr(feature, kind).value)[0]
        features[name] = value.decode() if kind == 'bytes_list' else float(value) if kind == 'float_list' else value
    return features


def test_rest_and_grpc_predictions_equal_the_saved_model(rest, grpc_client, held_out_rows, expected, pushed):
    for signature in (contract.PREDICT_RAW, contract.PREDICT_EXAMPLES):
        by_rest, _ = _predict(rest, held_out_rows, signature)
        by_grpc, version = _predict(grpc_client, held_out_rows, signature)
        np.testing.assert_allclose(by_rest, expected, atol=1e-6)
        np.testing.assert_allclose(by_grpc, expected, atol=1e-6)
        assert version == pushed[1]
    # By version, by the columnar format, as a curl user would send it.
    instances = [contract.to_raw_instance(r) for r in held_out_rows[:3]]
    columns = {name: [instance[name] for instance in instances] for name in instances[0]}
    answer = rest.predict_json({'signature_name': 'serving_raw', 'inputs': columns}, version=pushed[1])
    np.testing.assert_allclose(np.reshape(answer['outputs'][contract.PROBABILITIES], -1), expected[:3], atol=1e-6)


def test_explanations_and_flags_are_the_same_in_process_over_rest_and_over_grpc(rest, grpc_client, held_out_rows,
                                                                               pushed):
    rows = held_out_rows[:50] + [dict(held_out_rows[0], payment_type='Bitcoin', trip_start_hour='99')]
    inputs = contract.raw_inputs(rows)
    model = tf.saved_model.load(pushed[0])
    for signature in (contract.EXPLAIN, contract.PREDICT_RAW):
        local = {k: v.numpy() for k, v in model.signatures[signature](
            **{k: tf.constant(v) for k, v in inputs.items()}).items()}
        for client in (rest, grpc_client):
            served = client.predict(inputs, signature=signature).outputs
            assert set(served) == set(local)
            for name, value in local.items():
                if value.dtype == object:
                    assert [v.decode() for v in value] == [v.decode() if isinstance(v, bytes) else v
                                                           for v in served[name]], name
                else:
                    np.testing.assert_allclose(np.reshape(served[name], value.shape), value, atol=1e-6,
                                               err_msg=name)
        assert contract.flags(local)[-1].is_outlier


def test_classify_and_regress_answer_with_the_same_probabilities(server, held_out_rows, expected):
    rows = held_out_rows[:20]
    url = f'http://127.0.0.1:{server.rest_port}/v1/models/{MODEL_NAME}'
    examples = [_example_json(r) for r in rows]
    classified = http.post(f'{url}:classify', data=json.dumps({'signature_name': 'classification',
                                                               'examples': examples})).json()['results']
    assert [[label for label, _ in result] for result in classified] == [['0', '1']] * len(rows)  # the model's classes
    np.testing.assert_allclose([result[1][1] for result in classified], expected[:20], atol=1e-5)
    regressed = http.post(f'{url}:regress', data=json.dumps({'signature_name': 'regression',
                                                             'examples': examples})).json()['results']
    np.testing.assert_allclose(regressed, expected[:20], atol=1e-5)

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}'))
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL_NAME, 'classification'
    request.input.example_list.examples.extend(contract.to_tf_example(r) for r in rows)
    response = stub.Classify(request)
    np.testing.assert_allclose([c.classes[1].score for c in response.result.classifications], expected[:20], atol=1e-5)


def test_status_and_metadata_describe_the_serving_version(rest, grpc_client, pushed):
    assert rest.status() == [{'version': str(pushed[1]), 'state': 'AVAILABLE',
                              'status': {'error_code': 'OK', 'error_message': ''}}]
    (status,) = grpc_client.status()
    assert status.version == pushed[1] and status.state == status.AVAILABLE
    signatures = rest.metadata()['metadata']['signature_def']['signature_def']
    assert signatures['classification']['method_name'] == tf.saved_model.CLASSIFY_METHOD_NAME
    assert set(signatures['serving_raw']['inputs']) == set(contract.to_raw_instance({}))
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    grpc_client.metadata().metadata['signature_def'].Unpack(signature_map)
    assert signature_map.signature_def['regression'].method_name == tf.saved_model.REGRESS_METHOD_NAME


def _instance(row, **changes):
    return dict(contract.to_raw_instance(row), **changes)


GOOD = object()  # the held-out row as a serving_raw request
MODEL = f'/v1/models/{MODEL_NAME}'


@pytest.mark.parametrize('method, path, body, status, message', [
    ('POST', '/v1/models/no-such-model:predict', GOOD, 404, 'Servable not found for request: Latest(no-such-model)'),
    ('POST', f'{MODEL}/versions/1:predict', GOOD, 404, f'Specific({MODEL_NAME}, 1)'),
    ('POST', f'{MODEL}/labels/nope:predict', GOOD, 400, 'Unrecognized servable version label: nope'),
    ('POST', f'{MODEL}:predict', '{"instances": [', 400, 'JSON Parse error'),
    ('POST', f'{MODEL}:predict', 'wrong_type', 400, 'fare: JSON value "cheap" is not of expected type'),
    ('POST', f'{MODEL}:predict', 'missing', 400, "Missing but required: ['fare']"),
    ('POST', f'{MODEL}:predict', 'bad_signature', 400, 'not found in signature def'),
    # serving_default takes tf.Examples but is no classifier: classifier.cc PreProcessClassification.
    ('POST', f'{MODEL}:classify', {'examples': [{'fare': 1.0}]}, 400, 'Expected one or two output Tensors, found 4'),
    ('POST', f'{MODEL}:predict', {'instances': ['x' * 2 * 1024 * 1024]}, 413, 'exceeds the limit'),
    ('GET', f'{MODEL}:predict', None, 400, 'Malformed request'),
    ('GET', '/v1/models/no-such-model', None, 404, 'Could not find any versions of model no-such-model'),
    ('GET', '/v2/other', None, 404, 'Malformed request'),
    ('GET', f'{MODEL}/versions/latest', None, 400, 'Malformed request'),
    ('POST', f'{MODEL}:predict', '[' * 100_000, 400, 'JSON Parse error'),
])
def test_bad_rest_requests_get_tf_servings_status_and_error(server, held_out_rows, method, path, body, status, message):
    row = held_out_rows[0]
    body = {GOOD: {'signature_name': contract.PREDICT_RAW, 'instances': [_instance(row)]},
            'wrong_type': {'signature_name': contract.PREDICT_RAW, 'instances': [_instance(row, fare='cheap')]},
            'missing': {'signature_name': contract.PREDICT_RAW,
                        'instances': [{k: v for k, v in _instance(row).items() if k != 'fare'}]},
            'bad_signature': {'signature_name': 'nope', 'instances': [_instance(row)]},
            }.get(body, body) if not isinstance(body, dict) else body
    data = body if isinstance(body, str) or body is None else json.dumps(body)
    response = http.request(method, f'http://127.0.0.1:{server.rest_port}{path}', data=data)
    assert response.status_code == status, response.text
    assert message in response.json()['error'], response.text


def test_a_chunked_request_is_refused_with_411(server, held_out_rows):
    good = {'signature_name': contract.PREDICT_RAW, 'instances': [_instance(held_out_rows[0])]}
    chunked = http.post(f'http://127.0.0.1:{server.rest_port}{MODEL}:predict', data=iter([json.dumps(good).encode()]))
    assert chunked.status_code == 411 and 'Content-Length' in chunked.json()['error']


def _raw_request(rows):
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL_NAME, contract.PREDICT_RAW
    for name, array in contract.raw_inputs(rows).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


@pytest.mark.parametrize('change, code, message', [
    (lambda r: r.inputs.pop('fare') and None, 'INVALID_ARGUMENT', "Missing but required: ['fare']"),
    (lambda r: r.inputs['fare'].CopyFrom(tf.make_tensor_proto(np.array([7], np.int32))), 'INVALID_ARGUMENT',
     'Expects arg[fare] to be float32 but int32'),  # TF Serving wants the signature's dtype
    (lambda r: r.inputs['fare'].CopyFrom(tf.make_tensor_proto(np.zeros(400_000, np.float32))), 'RESOURCE_EXHAUSTED',
     ''),
    (lambda r: setattr(r.model_spec, 'version_label', 'nope'), 'INVALID_ARGUMENT', 'nope'),
    (lambda r: setattr(r.model_spec, 'name', 'no-such-model'), 'NOT_FOUND', 'no-such-model'),
])
def test_bad_grpc_requests_get_tf_servings_code(grpc_client, held_out_rows, change, code, message):
    request = _raw_request(held_out_rows[:1])
    change(request)
    with pytest.raises(ServingClientError) as error:
        grpc_client.predict_request(request)
    assert error.value.code == code
    assert message in error.value.message


def test_an_unreachable_server_is_reported_as_unavailable():
    with pytest.raises(ServerUnavailable):
        RestClient('127.0.0.1', free_port(), model_name=MODEL_NAME).status()
    with pytest.raises(ServerUnavailable):
        _predict(GrpcClient('127.0.0.1', free_port(), model_name=MODEL_NAME, timeout=2), [{}])


def test_failed_requests_are_counted_and_made_up_names_never_become_labels(server, rest, grpc_client, held_out_rows):
    invalid = _metric_total(server, 'tfserving_requests_total', api='predict', code='INVALID_ARGUMENT')
    for client in (rest, grpc_client):
        with pytest.raises(ServingClientError):
            client.predict({'fare': np.array([1.0], np.float32)}, signature=contract.PREDICT_RAW)
        with pytest.raises(ServingClientError):
            GrpcClient('127.0.0.1', server.grpc_port, model_name='no-such-model').predict(
                contract.raw_inputs(held_out_rows[:1]), signature='nope')
    # Still serving, on both protocols.
    assert len(_predict(rest, held_out_rows[:2])[0]) == 2
    assert len(_predict(grpc_client, held_out_rows[:2])[0]) == 2
    assert _metric_total(server, 'tfserving_requests_total', api='predict', code='INVALID_ARGUMENT') == invalid + 2
    assert _metric_total(server, 'tfserving_request_latency_seconds_count', protocol='grpc') > 0
    label_values = {value for (_, labels_found) in _metrics(server) for _, value in labels_found}
    assert 'no-such-model' not in label_values and 'nope' not in label_values


def test_new_version_swaps_in_under_load_without_a_failed_request_and_corrupt_one_never_does(
        pushed, held_out_rows, expected, tmp_path):
    source, version = pushed
    base = tmp_path / MODEL_NAME
    _copy_version(source, base, version)
    with ModelServer(_settings(base)) as server, LoadGenerator(server, held_out_rows, MODEL_NAME) as load:
        watcher = RestClient('127.0.0.1', server.rest_port, model_name=MODEL_NAME)
        wait_for(lambda: load.count > 20)
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
            assert version + 1 not in _status(watcher)  # never tried while half written
            f.write(graph[len(graph) // 2:])
        wait_for(lambda: load.versions and load.versions[-1] == version + 1)
        served_before = load.count
        wait_for(lambda: load.count > served_before + 20)

        # A corrupt v+2 fails to load, is reported, and v+1 keeps serving.
        corrupt = base / str(version + 2)
        shutil.copytree(source, corrupt, ignore=shutil.ignore_patterns('saved_model.pb'))
        (corrupt / 'saved_model.pb').write_bytes(b'not a SavedModel')
        status = wait_for(lambda: _status(watcher).get(version + 2)
                           if _status(watcher).get(version + 2, {}).get('state') == 'END' else None)
        served_before = load.count
        wait_for(lambda: load.count > served_before + 20)
        load_failures = _metric_total(server, 'tfserving_model_load_failures_total', model_name=MODEL_NAME)
        final = _status(watcher)
        watcher.close()

    assert load.failures == []
    assert status['status']['error_code'] != 'OK' and 'Failed to load version' in status['status']['error_message']
    assert final[version]['state'] == 'END' and final[version]['status']['error_code'] == 'OK'  # unloaded after the swap
    assert final[version + 1]['state'] == 'AVAILABLE'
    assert set(load.versions) == {version, version + 1}
    for seen in load.versions_by_client.values():
        if seen:  # each client, once switched, never goes back
            assert seen == sorted(seen) and seen[-1] == version + 1
    assert load_failures == 1


def test_labels_from_a_model_config_route_requests_and_follow_its_changes(pushed, held_out_rows, tmp_path):
    source, version = pushed
    base = tmp_path / MODEL_NAME
    for v in (version, version + 1):
        _copy_version(source, base, v)
    config = tmp_path / 'models.config'
    shipped = text_format.Parse((Path(REPO) / 'serving' / 'config' / 'models.config').read_text(),
                                model_server_config_pb2.ModelServerConfig())
    shipped.model_config_list.config[0].base_path = str(base)  # the shipped config, served from here
    config.write_text(text_format.MessageToString(shipped))
    labels.set_labels(str(config), stable=version, canary=version + 1, staged=False)
    settings = ServerSettings.from_config_file(str(config), rest_port=0, grpc_port=0, poll_seconds=0.1,
                                               config_poll_seconds=0.1)
    with ModelServer(settings) as server:
        client = GrpcClient('127.0.0.1', server.grpc_port, model_name=MODEL_NAME)
        rows = held_out_rows[:2]
        assert _predict(client, rows, label='stable')[1] == version
        assert _predict(client, rows, label='canary')[1] == version + 1
        assert _predict(client, rows)[1] == version + 1  # latest loaded
        rest = RestClient('127.0.0.1', server.rest_port, model_name=MODEL_NAME)
        assert [s['version'] for s in rest.status(label='stable')] == [str(version)]

        # Promote the canary: one step, as it is loaded.
        assert labels.set_labels(str(config), stable=version + 1) == frozenset()
        wait_for(lambda: [s['version'] for s in rest.status(label='stable')] == [str(version + 1)])
        assert _predict(client, rows, label='stable')[1] == version + 1
        with pytest.raises(ServingClientError) as error:
            _predict(rest, rows, label='canary')
        assert 'Unrecognized servable version label: canary' in error.value.message
        # The policy now names only the promoted version; the other is unloaded.
        wait_for(lambda: {v: s['state'] for v, s in _status(rest).items()} == {version: 'END',
                                                                                version + 1: 'AVAILABLE'})
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
            client = GrpcClient('127.0.0.1', server.grpc_port, model_name=MODEL_NAME)
            for j in range(5):
                start = (i * 5 + j) * 3
                try:
                    results[start] = _predict(client, held_out_rows[start:start + 3])[0]
                except Exception as e:
                    errors.append(e)
            client.close()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        batch_calls = _metric_total(server, 'tfserving_batch_size_count')
        batched_examples = _metric_total(server, 'tfserving_batch_size_sum')
    assert errors == [] and len(results) == 40
    for start, probabilities in results.items():
        np.testing.assert_allclose(probabilities, expected[start:start + 3], atol=1e-6)
    # 40 requests of 3 rows (plus warm-up) ran in fewer, larger model calls.
    assert batch_calls < 40
    assert batched_examples >= 120


def test_request_log_holds_every_served_example_in_a_form_tfdv_reads(pushed, held_out_rows, expected, tmp_path):
    import tensorflow_data_validation as tfdv
    base = tmp_path / MODEL_NAME
    _copy_version(pushed[0], base, pushed[1])
    log_dir = tmp_path / 'request_log'
    with ModelServer(_settings(base, request_log_dir=str(log_dir), warm_up=False)) as server:
        _predict(RestClient('127.0.0.1', server.rest_port, model_name=MODEL_NAME), held_out_rows[:10])
        _predict(GrpcClient('127.0.0.1', server.grpc_port, model_name=MODEL_NAME), held_out_rows[10:30],
                 contract.PREDICT_EXAMPLES)
    assert glob.glob(str(log_dir / '*.partial')) == []  # completed on shutdown
    stats = tfdv.generate_statistics_from_tfrecord(data_location=str(log_dir / '*.tfrecord'))
    dataset = stats.datasets[0]
    assert dataset.num_examples == 30
    features = {f.path.step[0]: f for f in dataset.features}
    version = features['model_version'].num_stats
    assert version.min == version.max == pushed[1]
    assert features['request_id'].string_stats.unique == 2  # one id per request, shared by its examples
    assert features[contract.PROBABILITIES].num_stats.mean == pytest.approx(np.mean(expected[:30]), abs=1e-5)
    assert features['timestamp_micros'].num_stats.min > 0
    fares = [float(r['fare']) for r in held_out_rows[:30] if r['fare']]
    assert features['fare'].num_stats.mean == pytest.approx(np.mean(fares), rel=1e-4)
    # Missing values are absent, not markers (the model declares its markers in assets.extra):
    # the sent rows' empty companies are missing here too.
    missing_companies = sum(1 for r in held_out_rows[:30] if not r['company'])
    assert features['company'].string_stats.common_stats.num_missing == missing_companies


def test_cli_serves_and_predicts_a_csv(pushed, held_out_rows, expected, tmp_path, capsys):
    base = tmp_path / MODEL_NAME
    _copy_version(pushed[0], base, pushed[1])
    rest_port, grpc_port = free_port(), free_port()
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
            assert all(p['is_outlier'] in ('0', '1') and float(p['outlier_score']) >= 0 for p in printed)
            assert cli.main(['explain', rows_csv, '--protocol', protocol, '--port', str(port), '--json']) == 0
            explained = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert [e['row'] for e in explained] == list(range(1, 8))
            np.testing.assert_allclose([e['probability'] for e in explained], expected[:7], atol=1e-6)
            assert all(set(e['attributions']) == set(contract.raw_inputs(held_out_rows[:1])) for e in explained)
        odd = write_csv(str(tmp_path / 'odd.csv'), header, [[('Bitcoin' if h == 'payment_type' else r[h])
                                                            for h in header] for r in held_out_rows[:1]])
        assert cli.main(['explain', odd, '--port', str(rest_port), '--top', '2']) == 0
        text = capsys.readouterr().out
        assert 'top attributions (log-odds):' in text and 'OUTLIER' in text and 'payment_type' in text
        bad = write_csv(str(tmp_path / 'bad.csv'), header, [[('cheap' if h == 'fare' else r[h]) for h in header]
                                                           for r in held_out_rows[:2]])
        assert cli.main(['predict', bad, '--port', str(rest_port)]) == 2
        assert 'fare' in capsys.readouterr().err
        assert cli.main(['predict', rows_csv, '--port', str(free_port())]) == 1
        assert 'UNAVAILABLE' in capsys.readouterr().err
        assert cli.main(['predict', str(tmp_path / 'missing.csv')]) == 2
        assert 'missing.csv' in capsys.readouterr().err
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


def test_the_taxi_models_openapi_document_types_its_real_requests_and_answers(server, held_out_rows):
    import jsonschema
    from openapi_spec_validator import validate
    base = f'http://127.0.0.1:{server.rest_port}{MODEL}'
    document = http.get(f'{base}/openapi.json', timeout=30).json()
    validate(document)
    schemas = {**document['components']}
    body = {'signature_name': contract.PREDICT_RAW, 'instances': [_instance(row) for row in held_out_rows[:5]]}
    jsonschema.validate(body, {**schemas['schemas']['PredictRequest'], 'components': schemas})
    answer = http.post(f'{base}:predict', data=json.dumps(body), timeout=30)
    assert answer.status_code == 200
    jsonschema.validate(answer.json(), {**schemas['schemas'][f'{contract.PREDICT_RAW}.Predictions'],
                                        'components': schemas})
    # A fare sent as text is refused by the types, as by the server.
    bad = {**body, 'instances': [_instance(held_out_rows[0], fare='cheap')]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, {**schemas['schemas']['PredictRequest'], 'components': schemas})
    assert http.post(f'{base}:predict', data=json.dumps(bad), timeout=30).status_code == 400
