"""Each served version describes its REST API in OpenAPI 3.1 (serving/openapi.py): a valid document
by the OpenAPI schema, whose typed bodies the server's real requests and answers satisfy and whose
types refuse what the server refuses."""

import json

import jsonschema
import pytest
import requests
from openapi_spec_validator import validate

from serving.gateway import GatewayServer, GatewaySettings
from serving.server import ModelServer, ModelSource, ServerSettings
from support.tf_serving_models import HALF_PLUS_TWO, settled_copy

pytestmark = pytest.mark.component



@pytest.fixture(scope='module')
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp('models')
    for name in (HALF_PLUS_TWO, 'saved_model_half_plus_two_tf2_cpu'):
        settled_copy(name, base / name)
    models = (ModelSource('half_plus_two', str(base / 'saved_model_half_plus_two_cpu')),
              ModelSource('tf2', str(base / 'saved_model_half_plus_two_tf2_cpu')))
    with ModelServer(ServerSettings(models=models, rest_port=0, grpc_port=0, poll_seconds=0,
                                    settle_seconds=0)) as running:
        yield running


def _get(port, path):
    answer = requests.get(f'http://127.0.0.1:{port}{path}', timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _schema(document, name):
    """A component schema, resolvable on its own (its $refs point into the document)."""
    return {**document['components']['schemas'][name], 'components': document['components']}


@pytest.mark.parametrize('model', ['half_plus_two', 'tf2'])
def test_the_document_is_valid_openapi_for_every_way_of_addressing_the_model(server, model):
    for suffix in ('', '/versions/123', '/labels/stable'):
        if suffix == '/labels/stable':
            continue  # no labels configured; the path exists in the document all the same
        document = _get(server.rest_port, f'/v1/models/{model}{suffix}/openapi.json')
        validate(document)
        assert document['info']['version'] == '123'
        assert f'/v1/models/{model}:predict' in document['paths']
        assert f'/v1/models/{model}/labels/{{label}}:predict' in document['paths']


@pytest.mark.parametrize('body,answer_format', [
    ({'instances': [1.0, 2.0]}, None),  # the graph takes a vector; the schema types the signature's rows
    ({'instances': [[1.0], [2.0]]}, 'Predictions'),
    ({'inputs': [[1.0], [2.0]]}, 'Outputs'),
    ({'signature_name': 'regress_x2_to_y3', 'instances': [[1.0]]}, 'Predictions'),
])
def test_real_predict_requests_and_answers_satisfy_the_typed_bodies(server, body, answer_format):
    document = _get(server.rest_port, '/v1/models/half_plus_two/openapi.json')
    answer = requests.post(f'http://127.0.0.1:{server.rest_port}/v1/models/half_plus_two:predict',
                           data=json.dumps(body), timeout=30)
    assert answer.status_code == 200
    if answer_format:
        jsonschema.validate(body, _schema(document, 'PredictRequest'))
        signature = body.get('signature_name', 'serving_default')
        jsonschema.validate(answer.json(), _schema(document, f'{signature}.{answer_format}'))


def test_classify_and_regress_are_described_for_the_signatures_they_accept(server):
    # The TF2 model's signatures are all method "predict"; Classify and Regress take them (TF Serving's rules).
    document = _get(server.rest_port, '/v1/models/tf2/openapi.json')
    schemas = document['components']['schemas']
    assert schemas['ClassifyRequest']['properties']['signature_name']['enum'] == ['classify_x_to_y']
    assert set(schemas['RegressRequest']['properties']['signature_name']['enum']) == {'regress_x_to_y',
                                                                                     'regress_x_to_y2'}
    body = {'signature_name': 'classify_x_to_y', 'examples': [{'x': 1.0}, {'x': [2.0]}]}
    jsonschema.validate(body, _schema(document, 'ClassifyRequest'))
    answer = requests.post(f'http://127.0.0.1:{server.rest_port}/v1/models/tf2:classify', data=json.dumps(body),
                           timeout=30)
    assert answer.status_code == 200
    jsonschema.validate(answer.json(), _schema(document, 'ClassifyResponse'))


@pytest.mark.parametrize('body', [
    {'instances': [['one']]},  # a string for a float
    {'instances': [[1.0]], 'signature_name': 'nope'},
    {'instances': [[1.0]], 'extra': True},
    {'instances': []},
])
def test_bodies_the_types_refuse_the_server_refuses(server, body):
    document = _get(server.rest_port, '/v1/models/half_plus_two/openapi.json')
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, _schema(document, 'PredictRequest'))
    answer = requests.post(f'http://127.0.0.1:{server.rest_port}/v1/models/half_plus_two:predict',
                           data=json.dumps(body), timeout=30)
    if 'extra' not in body:  # TF Serving ignores unknown keys; the document is stricter, as a contract may be
        assert answer.status_code == 400


def test_the_gateway_serves_the_same_document_from_tf_servings_metadata(server):
    gateway = GatewayServer(GatewaySettings(upstream=f'127.0.0.1:{server.grpc_port}', rest_port=0,
                                            grpc_port=0)).start()
    try:
        assert _get(gateway.rest_port, '/v1/models/half_plus_two/openapi.json') == \
            _get(server.rest_port, '/v1/models/half_plus_two/openapi.json')
    finally:
        gateway.stop()
