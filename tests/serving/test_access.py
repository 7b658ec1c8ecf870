"""Access control (serving/access.py): bearer tokens with roles, enforced the same
way by the embedded server and the gateway, over REST and gRPC.

Each role reaches exactly its endpoints; status and metrics stay open for
probes and Prometheus; refusals use TF Serving's error shape and are counted;
no token ever reaches a log, the request log, the metrics or an error
message; the tokens file holds only hashes, is re-read when it changes (a
revoked token is refused without a restart) and refuses to start the server
when malformed; a server exposed beyond loopback without tokens is refused;
the gateway never passes a client's token to TF Serving."""

import json
import logging
import os
import secrets
import uuid
from concurrent import futures

import grpc
import numpy as np
import pytest
import requests as http
import tensorflow as tf
from google.protobuf import text_format
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

import serving
from cli import main as cli
from serving import FEEDBACK_PATH, METRICS_PATH, access, feedback
from serving.client import GrpcClient, RestClient, ServingClientError
from serving.gateway import GatewayServer, GatewaySettings
from serving.server import ModelServer, ServerSettings

pytestmark = pytest.mark.unit


MODEL = 'doubler'
PATH = f'/v1/models/{MODEL}'
ROLE_TOKENS = {'predictor': ['predict'], 'explainer': ['explain'], 'feedbacker': ['feedback'], 'operator': ['admin']}


class Explainable(tf.Module):
    """A prediction (y = 2x) and its explanation (the signature the `explain` role guards)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
    def predict(self, x):
        return {'y': 2.0 * x}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
    def explain(self, x):
        return {'y': 2.0 * x, 'attribution_x': 2.0 * x}


@pytest.fixture(scope='module')
def model_config(tmp_path_factory):
    """A ModelServerConfig for the model, so that HandleReloadConfigRequest (admin) has something to do."""
    root = tmp_path_factory.mktemp('models')
    base = root / MODEL
    module = Explainable()
    tf.saved_model.save(module, str(base / '1'), signatures={'serving_default': module.predict,
                                                             'explain': module.explain})
    for directory, _, files in os.walk(base / '1'):  # settled, so the server loads it at once
        for name in files:
            os.utime(os.path.join(directory, name), (1_600_000_000, 1_600_000_000))
    config = root / 'models.config'
    config.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" '
                      'model_platform: "tensorflow" } }\n')
    return str(config)


@pytest.fixture(scope='module')
def tokens(tmp_path_factory):
    """(tokens file, {name: token}): one token per role."""
    path = str(tmp_path_factory.mktemp('auth') / 'tokens.json')
    return path, {name: access.add_token(path, name, roles) for name, roles in ROLE_TOKENS.items()}


def _embedded(model_config, tokens_file=None, **overrides):
    options = dict(rest_port=0, grpc_port=0, poll_seconds=0.1, auth_tokens_file=tokens_file)
    options.update(overrides)
    return ModelServer(ServerSettings.from_config_file(model_config, **options))


@pytest.fixture(scope='module')
def upstream(model_config):
    """The embedded server standing in for TF Serving: no tokens of its own, as TF Serving has none."""
    with _embedded(model_config) as running:
        yield running


@pytest.fixture(scope='module', params=['embedded', 'gateway'])
def server(request, model_config, tokens, tmp_path_factory):
    """Each server with the tokens file, a feedback store and a request log."""
    directory = tmp_path_factory.mktemp(request.param)
    stores = dict(feedback_dir=str(directory / 'feedback'), request_log_dir=str(directory / 'log'))
    if request.param == 'embedded':
        running = _embedded(model_config, tokens[0], **stores).start()
    else:
        upstream = request.getfixturevalue('upstream')
        running = GatewayServer(GatewaySettings(upstream=f'127.0.0.1:{upstream.grpc_port}', rest_port=0,
                                                grpc_port=0, auth_tokens_file=tokens[0], **stores)).start()
    yield running
    running.stop()


# --- calling every endpoint ------------------------------------------------------------------------------

def _headers(token):
    return {'Authorization': f'Bearer {token}'} if token else {}


def _rest(server, method, path, body=None, token=None, headers=None):
    return http.request(method, f'http://127.0.0.1:{server.rest_port}{path}',
                        data=json.dumps(body) if body is not None else None,
                        headers=headers if headers is not None else _headers(token), timeout=30)


def _rest_outcome(response):
    if response.status_code == 200:
        return 'ok'
    error = response.json()['error']  # TF Serving's error shape, whatever the failure
    if response.status_code == 401:
        assert response.headers['WWW-Authenticate'] == 'Bearer'
        return 'unauthenticated'
    if response.status_code == 403:
        return 'denied'
    return f'HTTP {response.status_code}: {error}'


def _grpc_outcome(call):
    try:
        call()
        return 'ok'
    except grpc.RpcError as e:
        return {grpc.StatusCode.UNAUTHENTICATED: 'unauthenticated',
                grpc.StatusCode.PERMISSION_DENIED: 'denied'}.get(e.code(), f'{e.code().name}: {e.details()}')


def _stubs(server):
    channel = grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}')
    return prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)


def _predict_request(signature=''):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    request.inputs['x'].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0], np.float32)))
    return request


def _reload_request(model_config):
    with open(model_config) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    return model_management_pb2.ReloadConfigRequest(config=config)


def rest_outcomes(server, token):
    """Each REST endpoint's outcome for a caller presenting `token` (None: no Authorization header)."""
    def feedback():
        return {'request_id': uuid.uuid4().hex, 'label': 1}  # new each time: a repeat would be 409

    calls = {
        'predict': ('POST', f'{PATH}:predict', {'instances': [1.0, 2.0]}),
        'explain': ('POST', f'{PATH}:predict', {'signature_name': 'explain', 'instances': [1.0]}),
        'feedback': ('POST', FEEDBACK_PATH, feedback()),
        'metadata': ('GET', f'{PATH}/metadata', None),
        'status': ('GET', PATH, None),
        'metrics': ('GET', METRICS_PATH, None),
    }
    return {name: _rest_outcome(_rest(server, *call, token=token)) for name, call in calls.items()}


def grpc_outcomes(server, token, model_config):
    predictions, models = _stubs(server)
    metadata = (('authorization', f'Bearer {token}'),) if token else None
    calls = {
        'predict': lambda: predictions.Predict(_predict_request(), metadata=metadata, timeout=30),
        'explain': lambda: predictions.Predict(_predict_request('explain'), metadata=metadata, timeout=30),
        'reload': lambda: models.HandleReloadConfigRequest(_reload_request(model_config), metadata=metadata,
                                                           timeout=30),
        'metadata': lambda: predictions.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={'name': MODEL}, metadata_field=['signature_def']), metadata=metadata, timeout=30),
        'status': lambda: models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec={'name': MODEL}), metadata=metadata, timeout=30),
    }
    return {name: _grpc_outcome(call) for name, call in calls.items()}


OK, DENIED, UNAUTHENTICATED = 'ok', 'denied', 'unauthenticated'
OPEN = {'status': OK, 'metrics': OK}
# Per token: what each endpoint answers. Metadata takes any valid token; status and metrics none.
EXPECTED = {
    'predictor': {'predict': OK, 'explain': DENIED, 'feedback': DENIED, 'reload': DENIED, 'metadata': OK, **OPEN},
    'explainer': {'predict': DENIED, 'explain': OK, 'feedback': DENIED, 'reload': DENIED, 'metadata': OK, **OPEN},
    'feedbacker': {'predict': DENIED, 'explain': DENIED, 'feedback': OK, 'reload': DENIED, 'metadata': OK, **OPEN},
    'operator': {'predict': DENIED, 'explain': DENIED, 'feedback': DENIED, 'reload': OK, 'metadata': OK, **OPEN},
    'no token': {'predict': UNAUTHENTICATED, 'explain': UNAUTHENTICATED, 'feedback': UNAUTHENTICATED,
                 'reload': UNAUTHENTICATED, 'metadata': UNAUTHENTICATED, **OPEN},
}
EXPECTED['unknown token'] = EXPECTED['no token']


def _token(tokens, who):
    if who == 'no token':
        return None
    if who == 'unknown token':
        return secrets.token_urlsafe(32)
    return tokens[1][who]


@pytest.mark.parametrize('who', list(EXPECTED))
def test_each_role_reaches_exactly_its_endpoints_over_rest(server, tokens, who):
    outcomes = rest_outcomes(server, _token(tokens, who))
    assert outcomes == {k: v for k, v in EXPECTED[who].items() if k in outcomes}


@pytest.mark.parametrize('who', list(EXPECTED))
def test_each_role_reaches_exactly_its_endpoints_over_grpc(server, tokens, model_config, who):
    outcomes = grpc_outcomes(server, _token(tokens, who), model_config)
    assert outcomes == {k: v for k, v in EXPECTED[who].items() if k in outcomes}


@pytest.mark.parametrize('headers', [{'Authorization': 'Basic dXNlcjpwYXNz'}, {'Authorization': 'Bearer'},
                                     {'Authorization': 'Bearer  '}, {'Authorization': 'Token abc'}])
def test_credentials_that_are_not_a_bearer_token_are_unauthenticated(server, headers):
    response = _rest(server, 'POST', f'{PATH}:predict', {'instances': [1.0]}, headers=headers)
    assert _rest_outcome(response) == UNAUTHENTICATED
    assert 'Bearer <token>' in response.json()['error']
    assert 'dXNlcjpwYXNz' not in response.text  # what the client sent is never repeated


def test_the_bearer_scheme_is_case_insensitive(server, tokens):
    headers = {'Authorization': f'bearer {tokens[1]["predictor"]}'}
    assert _rest(server, 'POST', f'{PATH}:predict', {'instances': [1.0]}, headers=headers).status_code == 200


def test_refusals_say_what_is_missing_and_never_repeat_the_token(server, tokens):
    predictor = tokens[1]['predictor']
    denied = _rest(server, 'POST', f'{PATH}:predict', {'signature_name': 'explain', 'instances': [1.0]},
                   token=predictor)
    assert denied.status_code == 403
    message = denied.json()['error']
    assert "'predictor'" in message and "'explain'" in message and 'it has: predict' in message
    assert predictor not in denied.text

    unknown = secrets.token_urlsafe(32)
    refused = _rest(server, 'POST', f'{PATH}:predict', {'instances': [1.0]}, token=unknown)
    assert refused.status_code == 401 and 'Invalid bearer token' in refused.json()['error']
    assert unknown not in refused.text
    missing = _rest(server, 'POST', FEEDBACK_PATH, {'request_id': 'a', 'label': 1})
    assert missing.status_code == 401 and 'Authorization: Bearer <token>' in missing.json()['error']

    predictions, models = _stubs(server)
    with pytest.raises(grpc.RpcError) as error:
        predictions.Predict(_predict_request('explain'), metadata=(('authorization', f'Bearer {predictor}'),),
                            timeout=30)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'predictor'" in error.value.details() and "'explain'" in error.value.details()
    assert predictor not in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(),
                                         metadata=(('authorization', f'Bearer {predictor}'),), timeout=30)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED and "'admin'" in error.value.details()


def test_a_refused_caller_gets_nothing_decoded(server, tokens):
    # A malformed body from a caller without a predict or explain role is refused, not parsed:
    # the refusal comes before the body is decoded.
    for token, status in ((None, 401), (tokens[1]['feedbacker'], 403), (tokens[1]['predictor'], 400)):
        response = http.post(f'http://127.0.0.1:{server.rest_port}{PATH}:predict', data='{"instances": [',
                             headers=_headers(token), timeout=30)
        assert response.status_code == status, response.text


def test_the_clients_send_their_token(server, tokens):
    inputs = {'x': np.array([1.5], np.float32)}
    for make in (lambda **kw: RestClient('127.0.0.1', server.rest_port, model_name=MODEL, **kw),
                 lambda **kw: GrpcClient('127.0.0.1', server.grpc_port, model_name=MODEL, **kw)):
        client = make(token=tokens[1]['explainer'])
        assert client.predict(inputs, signature='explain').outputs['attribution_x'].tolist() == [3.0]
        with pytest.raises(ServingClientError) as error:
            client.predict(inputs)
        assert error.value.code == 'PERMISSION_DENIED'
        client.close()
        anonymous = make()
        with pytest.raises(ServingClientError) as error:
            anonymous.predict(inputs)
        assert error.value.code == 'UNAUTHENTICATED'
        assert anonymous.status()  # status stays open
        anonymous.close()


# --- nothing leaks ----------------------------------------------------------------------------------------

class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


def _metric(server, name, **labels):
    text = _rest(server, 'GET', METRICS_PATH).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


@pytest.mark.parametrize('kind', ['embedded', 'gateway'])
def test_tokens_never_reach_logs_the_request_log_metrics_or_the_feedback_store(kind, model_config, tmp_path, request):
    tokens_file = str(tmp_path / 'tokens.json')
    issued = {name: access.add_token(tokens_file, name, roles) for name, roles in ROLE_TOKENS.items()}
    stray = secrets.token_urlsafe(32)  # sent, but in no file
    stores = dict(feedback_dir=str(tmp_path / 'feedback'), request_log_dir=str(tmp_path / 'log'))
    records = _Records()
    loggers = [logging.getLogger(), logging.getLogger('serving')]  # 'serving' may not propagate (the CLI's setup)
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(records)
        logger.setLevel(logging.DEBUG)
    if kind == 'embedded':
        server = _embedded(model_config, tokens_file, **stores).start()
    else:
        upstream = request.getfixturevalue('upstream')
        server = GatewayServer(GatewaySettings(upstream=f'127.0.0.1:{upstream.grpc_port}', rest_port=0, grpc_port=0,
                                               auth_tokens_file=tokens_file, **stores)).start()
    try:
        answered = []
        for token in [*issued.values(), stray, None]:
            outcomes = rest_outcomes(server, token)
            outcomes.update(grpc_outcomes(server, token, model_config))
            assert set(outcomes.values()) <= {OK, DENIED, UNAUTHENTICATED}, outcomes
            response = _rest(server, 'POST', f'{PATH}:predict', {'instances': [3.0]}, token=token)
            if response.status_code == 200:
                answered.append(response.headers['X-Request-Id'])
        # A rotation and a broken file, so that the access module has had its say in the log too.
        access.revoke_token(tokens_file, 'operator')
        rest_outcomes(server, issued['predictor'])
        with open(tokens_file, 'a') as f:
            f.write('not json')
        rest_outcomes(server, issued['predictor'])
        metrics_text = _rest(server, 'GET', METRICS_PATH).text
        refused = {code: _metric(server, 'tfserving_requests_total', api='predict', code=code)
                   for code in ('UNAUTHENTICATED', 'PERMISSION_DENIED')}
    finally:
        server.stop()  # completes the request log's files
        for logger, level in zip(loggers, previous):
            logger.removeHandler(records)
            logger.setLevel(level)

    written = b''
    for directory in (stores['request_log_dir'], stores['feedback_dir']):
        for root, _, files in os.walk(directory):
            for name in files:
                with open(os.path.join(root, name), 'rb') as f:
                    written += f.read()
    assert answered and all(request_id.encode() in written for request_id in answered)  # the log was written
    assert any('re-read' in line for line in records.lines) and any('ignoring' in line for line in records.lines)
    # Refusals are counted as errors of the API they were refused (no model label: nothing was checked).
    assert refused['UNAUTHENTICATED'] >= 4 and refused['PERMISSION_DENIED'] >= 4, refused
    for token in [*issued.values(), stray]:
        assert token.encode() not in written
        assert token not in metrics_text
        assert not [line for line in records.lines if token in line]
    # Who sent ground truth is kept, by the token's name.
    stored, _ = feedback.read(stores['feedback_dir'])
    assert stored and {record.source for record in stored.values()} == {'rest:feedbacker'}


def test_tokens_added_at_once_are_all_kept(tmp_path):
    path = str(tmp_path / 'tokens.json')
    names = [f'client-{i}' for i in range(8)]
    with futures.ThreadPoolExecutor(len(names)) as pool:
        issued = dict(zip(names, pool.map(lambda name: access.add_token(path, name, ['predict']), names)))
    kept = access.read_tokens(path)
    assert sorted(t.name for t in kept.values()) == names
    assert {access.hash_token(token) for token in issued.values()} == set(kept)


def test_the_tokens_file_holds_hashes_only(tmp_path):
    path = str(tmp_path / 'tokens.json')
    token = access.add_token(path, 'ci-bot', ['predict', 'feedback'])
    with open(path) as f:
        text = f.read()
    assert token not in text and access.hash_token(token) in text
    (entry,) = json.loads(text)['tokens']
    assert entry['name'] == 'ci-bot' and entry['roles'] == ['predict', 'feedback'] and entry['created']
    assert os.stat(path).st_mode & 0o777 == 0o600  # a new file is the owner's only
    assert len(token) >= 43  # 32 random bytes


# --- rotation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['embedded', 'gateway'])
def test_tokens_added_and_revoked_on_the_command_line_take_effect_without_a_restart(kind, model_config, tmp_path,
                                                                                   capsys, request):
    path = str(tmp_path / 'tokens.json')
    assert cli.main(['serving-tokens', 'add', '--file', path, '--name', 'first', '--roles', 'predict']) == 0
    first = capsys.readouterr().out.strip()
    if kind == 'embedded':
        server = _embedded(model_config, path).start()
    else:
        upstream = request.getfixturevalue('upstream')
        server = GatewayServer(GatewaySettings(upstream=f'127.0.0.1:{upstream.grpc_port}', rest_port=0, grpc_port=0,
                                               auth_tokens_file=path)).start()
    try:
        assert rest_outcomes(server, first)['predict'] == OK
        assert cli.main(['serving-tokens', 'add', '--file', path, '--name', 'second', '--roles', 'predict']) == 0
        second = capsys.readouterr().out.strip()
        assert cli.main(['serving-tokens', 'revoke', '--file', path, '--name', 'first']) == 0
        # The very next requests see the new file: no restart, no waiting.
        assert rest_outcomes(server, first)['predict'] == UNAUTHENTICATED
        assert _grpc_outcome(lambda: _stubs(server)[0].Predict(
            _predict_request(), metadata=(('authorization', f'Bearer {first}'),), timeout=30)) == UNAUTHENTICATED
        assert rest_outcomes(server, second)['predict'] == OK
    finally:
        server.stop()


def test_a_rotated_kubernetes_secret_is_picked_up(model_config, tmp_path):
    # How the kubelet updates a Secret volume: the files live in a timestamped
    # directory, `..data` links to it, `tokens.json` links through `..data`, and an
    # update writes a new directory and swaps `..data` in one rename.
    mount = tmp_path / 'secret'
    mount.mkdir()
    old, new = mount / '..2026_01_01', mount / '..2026_01_02'
    old.mkdir()
    new.mkdir()
    before = access.add_token(str(old / 'tokens.json'), 'ci-bot', ['predict'])
    os.symlink(old.name, mount / '..data')
    os.symlink('..data/tokens.json', mount / 'tokens.json')
    after = access.add_token(str(new / 'tokens.json'), 'ci-bot', ['predict'])

    with _embedded(model_config, str(mount / 'tokens.json')) as server:
        assert rest_outcomes(server, before)['predict'] == OK
        os.symlink(new.name, mount / '..data_tmp')
        os.replace(mount / '..data_tmp', mount / '..data')
        assert rest_outcomes(server, before)['predict'] == UNAUTHENTICATED
        assert rest_outcomes(server, after)['predict'] == OK


def test_a_broken_file_later_keeps_the_last_good_tokens_and_is_logged_once(model_config, tmp_path, caplog,
                                                                           monkeypatch):
    path = str(tmp_path / 'tokens.json')
    token = access.add_token(path, 'ci-bot', ['predict'])
    caplog.set_level(logging.ERROR, logger='serving.access')
    monkeypatch.setattr(logging.getLogger('serving'), 'propagate', True)  # the CLI's console setup turns it off
    with _embedded(model_config, path) as server:
        with open(path, 'w') as f:
            f.write('{"tokens": [{"name": "ci-bot", "sha256": "0000", "roles": ["predict"]}]}')
        for _ in range(3):
            assert rest_outcomes(server, token)['predict'] == OK
        errors = [r for r in caplog.records if r.name == 'serving.access' and r.levelno == logging.ERROR]
        assert len(errors) == 1 and path in errors[0].getMessage() and 'sha256' in errors[0].getMessage()
        # Fixed, the file applies again: this one holds no tokens at all.
        with open(path, 'w') as f:
            f.write('{"tokens": []}')
        assert rest_outcomes(server, token)['predict'] == UNAUTHENTICATED


# --- refusing to start ----------------------------------------------------------------------------------

@pytest.mark.parametrize('content, message', [
    (None, 'cannot read the tokens file'),
    ('{"tokens": [', 'not valid JSON'),
    ('[]', 'must be a JSON object {"tokens": [...]}'),
    ('{"tokens": [{"name": "a", "sha256": "abc", "roles": ["predict"]}]}', '64 lowercase hex'),
    ('{"tokens": [{"name": "a", "sha256": "' + 'a' * 64 + '", "roles": ["predcit"]}]}', "unknown role(s) ['predcit']"),
    ('{"tokens": [{"name": "a", "sha256": "' + 'a' * 64 + '", "roles": []}]}', 'non-empty list'),
    ('{"tokens": [{"name": "a", "sha256": "' + 'a' * 64 + '", "roles": ["admin"], "token": "x"}]}',
     "unknown field(s) ['token']"),
    ('{"tokens": [{"name": "a", "sha256": "' + 'a' * 64 + '", "roles": ["admin"]}, '
     '{"name": "a", "sha256": "' + 'b' * 64 + '", "roles": ["admin"]}]}', 'used twice'),
])
def test_a_malformed_tokens_file_refuses_to_start_with_a_clear_message(model_config, tmp_path, capsys, content,
                                                                       message):
    path = tmp_path / 'tokens.json'
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=None) as error:
        _embedded(model_config, str(path))
    assert message in str(error.value) and str(path) in str(error.value)
    with pytest.raises(ValueError) as error:
        GatewayServer(GatewaySettings(upstream='127.0.0.1:1', auth_tokens_file=str(path)))
    assert message in str(error.value)
    # The command stops before it loads or binds anything, with exit code 2.
    assert cli.main(['serve', '--model-config-file', model_config, '--auth-tokens', str(path)]) == 2
    assert message in capsys.readouterr().err


# --- exposure ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('argv', [['--host', '0.0.0.0'], ['--host', '::'], ['--host', '10.1.2.3'],
                                  ['--host', 'serving.example.com'],
                                  ['--host', '0.0.0.0', '--upstream', 'localhost:8510']])
def test_binding_beyond_loopback_without_tokens_is_refused(argv, capsys):
    assert cli.main(['serve', *argv]) == 2
    err = capsys.readouterr().err
    assert 'reachable from other machines' in err and '--auth-tokens' in err and '--no-auth' in err


def test_tokens_and_no_auth_are_not_given_together(tmp_path, capsys):
    assert cli.main(['serve', '--auth-tokens', str(tmp_path / 'tokens.json'), '--no-auth']) == 2
    assert 'contradict' in capsys.readouterr().err


@pytest.mark.parametrize('host, loopback', [('127.0.0.1', True), ('127.0.0.2', True), ('localhost', True),
                                            ('::1', True), ('[::1]', True), ('0.0.0.0', False), ('::', False),
                                            ('', False), ('192.168.1.5', False), ('my-host', False)])
def test_what_counts_as_loopback(host, loopback):
    assert access.is_loopback(host) is loopback
    if loopback:
        access.check_exposure(host, None, False)  # the default stays as it was: no tokens needed
    else:
        access.check_exposure(host, None, True)  # said explicitly
        access.check_exposure(host, 'tokens.json', False)
        with pytest.raises(ValueError, match='--no-auth'):
            access.check_exposure(host, None, False)


# --- the mapping ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('endpoint, signatures, roles', [
    (access.PREDICT, ('',), {'predict'}),
    (access.PREDICT, ('serving_default',), {'predict'}),
    (access.PREDICT, ('serving_raw',), {'predict'}),
    (access.PREDICT, ('explain',), {'explain'}),
    (access.CLASSIFY, ('classification',), {'predict'}),
    (access.REGRESS, ('explain',), {'explain'}),
    (access.MULTI_INFERENCE, ('classification', 'regression'), {'predict'}),
    (access.MULTI_INFERENCE, ('classification', 'explain'), {'predict', 'explain'}),
    (access.MULTI_INFERENCE, (), {'predict'}),
    (access.FEEDBACK, ('',), {'feedback'}),
    (access.RELOAD, ('',), {'admin'}),
    (access.METADATA, ('explain',), set()),
    (access.OTHER, ('',), set()),
    (access.STATUS, ('',), None),
    (access.METRICS, ('',), None),
])
def test_one_mapping_decides_every_endpoints_roles(endpoint, signatures, roles):
    needed = access.required_roles(endpoint, signatures)
    assert (None if needed is None else set(needed)) == roles


def test_every_grpc_method_has_a_rule():
    services = [prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer]
    methods = {name for service in services for name in dir(service) if name[0].isupper()}
    assert methods == set(access.GRPC_ENDPOINTS)


def test_the_taxi_models_explanation_signature_needs_the_explain_role():
    from taxi_model import contract
    assert contract.EXPLAIN in serving.EXPLAIN_SIGNATURES


# --- the gateway keeps tokens to itself -----------------------------------------------------------------

class _RecordingTfServing(prediction_service_pb2_grpc.PredictionServiceServicer,
                          model_service_pb2_grpc.ModelServiceServicer):
    """Stands in for TF Serving and remembers the metadata of every call it gets."""

    def __init__(self):
        self.metadata = []

    def Predict(self, request, context):  # noqa: N802
        self.metadata.append(dict(context.invocation_metadata()))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        response.outputs['y'].CopyFrom(tf.make_tensor_proto(np.array([2.0], np.float32)))
        return response

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        self.metadata.append(dict(context.invocation_metadata()))
        return model_management_pb2.ReloadConfigResponse()


def test_the_gateway_never_forwards_the_clients_token(tmp_path):
    path = str(tmp_path / 'tokens.json')
    token = access.add_token(path, 'ops', ['predict', 'admin'])
    recorder = _RecordingTfServing()
    tf_serving = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(recorder, tf_serving)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(recorder, tf_serving)
    port = tf_serving.add_insecure_port('127.0.0.1:0')
    tf_serving.start()
    gateway = GatewayServer(GatewaySettings(upstream=f'127.0.0.1:{port}', rest_port=0, grpc_port=0,
                                            auth_tokens_file=path)).start()
    try:
        predictions, models = _stubs(gateway)
        metadata = (('authorization', f'Bearer {token}'), ('x-request-id', 'r-1'))
        assert predictions.Predict(_predict_request(), metadata=metadata, timeout=30).model_spec.version.value == 1
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), metadata=metadata, timeout=30)
        # Refused calls never reach TF Serving.
        assert _grpc_outcome(lambda: predictions.Predict(_predict_request(), timeout=30)) == UNAUTHENTICATED
    finally:
        gateway.stop()
        tf_serving.stop(None)
    assert len(recorder.metadata) == 2
    for seen in recorder.metadata:
        assert seen['x-request-id'] == 'r-1' and 'authorization' not in seen
        assert not [value for value in seen.values() if token in str(value)]


# --- the command line -----------------------------------------------------------------------------------

def test_serving_tokens_add_list_revoke_round_trip(tmp_path, capsys):
    path = str(tmp_path / 'tokens.json')
    assert cli.main(['serving-tokens', 'add', '--file', path, '--name', 'ci-bot', '--roles', 'predict,feedback']) == 0
    out, err = capsys.readouterr()
    (token,) = out.split()  # the token alone on stdout, so that TOKEN=$(...) works
    assert 'cannot be shown again' in err and 'not stored' in err and token not in err
    assert access.AccessControl(path).authenticate(f'Bearer {token}').name == 'ci-bot'
    assert cli.main(['serving-tokens', 'add', '--file', path, '--name', 'ops', '--roles', 'admin']) == 0
    ops = capsys.readouterr().out.strip()

    # A duplicate name, an unknown role, no role: refused, and the file is unchanged.
    with open(path) as f:
        before = f.read()
    for argv, message in ((['--name', 'ci-bot', '--roles', 'predict'], "already has a token named 'ci-bot'"),
                          (['--name', 'new', '--roles', 'predict,root'], "unknown role(s) ['root']"),
                          (['--name', 'new', '--roles', ','], 'no role given')):
        assert cli.main(['serving-tokens', 'add', '--file', path, *argv]) == 2
        captured = capsys.readouterr()
        assert message in captured.err and not captured.out
    with open(path) as f:
        assert f.read() == before

    assert cli.main(['serving-tokens', 'list', '--file', path]) == 0
    listing = capsys.readouterr().out
    lines = listing.splitlines()
    assert lines[0].split() == ['name', 'roles', 'created']
    assert lines[1].startswith('ci-bot') and 'predict, feedback' in lines[1]
    assert lines[2].startswith('ops') and 'admin' in lines[2]
    assert '20' in lines[1]  # the creation time
    for secret in (token, ops, access.hash_token(token), access.hash_token(ops)):
        assert secret not in listing

    assert cli.main(['serving-tokens', 'revoke', '--file', path, '--name', 'ci-bot']) == 0
    assert 'Revoked' in capsys.readouterr().out
    assert [t.name for t in access.list_tokens(path)] == ['ops']
    assert cli.main(['serving-tokens', 'revoke', '--file', path, '--name', 'ci-bot']) == 2
    assert "no token named 'ci-bot' (it has: ops)" in capsys.readouterr().err
    assert cli.main(['serving-tokens', 'list', '--file', str(tmp_path / 'missing.json')]) == 2
    assert 'cannot read the tokens file' in capsys.readouterr().err
