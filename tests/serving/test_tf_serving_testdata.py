"""TF Serving's own test models (tests/data/tf_serving_testdata), served here, answer as TF Serving
answers them: its REST and gRPC tests (model_servers/tensorflow_model_server_test.py), its
testdata metadata files and its source (each test names the file) are the specification."""

import json
import os
import shutil

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, inference_pb2, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from serving.server import ModelServer, ModelSource, ServerSettings
from support.tf_serving_models import TESTDATA, settle, settled_copy

pytestmark = pytest.mark.component



class Scalar(tf.Module):
    """A signature with a rank-0 output (a model's threshold, a count)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
    def predict(self, x):
        return {'total': tf.reduce_sum(x), 'doubled': x * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
    def total(self, x):
        return {'total': tf.reduce_sum(x)}


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp('models')
    for name in ('saved_model_half_plus_two_cpu', 'saved_model_half_plus_two_tf2_cpu', 'saved_model_half_plus_three'):
        settled_copy(name, base / name)
    scalar = Scalar()
    tf.saved_model.save(scalar, str(base / 'staging'), signatures={'serving_default': scalar.predict,
                                                                   'total': scalar.total})
    shutil.copytree(base / 'staging', base / 'scalar' / '1')
    settle(base / 'scalar')
    models = tuple(ModelSource(name, str(base / directory)) for name, directory in (
        ('half_plus_two', 'saved_model_half_plus_two_cpu'), ('half_plus_two_tf2', 'saved_model_half_plus_two_tf2_cpu'),
        ('half_plus_three', 'saved_model_half_plus_three'), ('scalar', 'scalar')))
    settings = ServerSettings(models=models, rest_port=0, grpc_port=0, poll_seconds=0, settle_seconds=0)
    with ModelServer(settings) as running:
        yield running


def _rest(server, path, body=None):
    url = f'http://127.0.0.1:{server.rest_port}/v1/models/{path}'
    answer = (requests.post(url, data=json.dumps(body), timeout=30) if body is not None
              else requests.get(url, timeout=30))
    return answer.status_code, answer.json()


@pytest.fixture(scope='module')
def stub(server):
    with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _example(**features):
    return tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(float_list=tf.train.FloatList(value=[value])) for name, value in features.items()}))


# -- Predict: the graph decides what shapes it takes ---------------------------------------------

@pytest.mark.parametrize('model,expected', [('half_plus_two', [2.5, 3.0, 4.5]), ('half_plus_two_tf2', [2.5, 3.0, 4.5]),
                                            ('half_plus_three', [3.5, 4.0, 5.5])])
def test_rest_predict_feeds_a_vector_to_a_batch_of_one_element_rows(server, model, expected):
    # TF Serving's REST documentation and testPredictREST: x is [-1, 1] in the signature.
    assert _rest(server, f'{model}:predict', {'instances': [1.0, 2.0, 5.0]}) == (200, {'predictions': expected})


def test_rest_predict_takes_the_signature_shape_too(server):
    assert _rest(server, 'half_plus_two:predict', {'instances': [[1.0], [2.0]]}) == \
        (200, {'predictions': [[2.5], [3.0]]})


def test_grpc_predict_as_tf_servings_example_client_sends_it(stub):
    # tensorflow_model_server_test.py _MakeStub/_VerifyModelSpec: a [2] tensor, not [2, 1].
    request = predict_pb2.PredictRequest()
    request.model_spec.name = 'half_plus_two'
    request.inputs['x'].CopyFrom(tf.make_tensor_proto([2.0, 3.0], dtype=tf.float32))
    response = stub.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs['y']).tolist() == [3.0, 3.5]
    assert response.model_spec.version.value == 123


def test_a_shape_the_graph_cannot_take_is_the_graphs_invalid_argument(server):
    # A [2, 2] input: x / 2 + 2 runs on any shape, so ask a graph that reshapes: ParseExample wants a vector.
    status, body = _rest(server, 'half_plus_two:predict',
                         {'signature_name': 'classify_x_to_y', 'inputs': {'inputs': 'not a vector'}})
    assert status == 400 and 'vector' in body['error'] and '\n' not in body['error']


# -- rank-0 outputs -------------------------------------------------------------------------------

def test_a_scalar_output_is_written_as_a_value_in_the_columnar_format(server):
    assert _rest(server, 'scalar:predict', {'inputs': [1.0, 2.0]}) == (200, {'outputs': {'doubled': [2.0, 4.0],
                                                                                       'total': 3.0}})


def test_a_scalar_output_is_refused_in_the_row_format_as_tf_serving_refuses_it(server):
    # util/json_tensor.cc MakeRowFormatJsonFromTensors.
    status, body = _rest(server, 'scalar:predict', {'signature_name': 'total', 'instances': [1.0, 2.0]})
    assert status == 400 and body['error'].startswith('Tensor name: total has no shape information')


def test_a_scalar_output_over_grpc_is_a_scalar_tensor(stub):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = 'scalar'
    request.inputs['x'].CopyFrom(tf.make_tensor_proto([1.0, 2.0, 4.0], dtype=tf.float32))
    response = stub.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs['total']) == pytest.approx(7.0)
    assert tf.make_ndarray(response.outputs['total']).shape == ()


# -- Classify and Regress on TF2 signatures (method_name check off, as in TF Serving) -------------

def test_classify_and_regress_run_on_tf2_signatures_whose_method_is_predict(server):
    # testClassifyREST / testRegressREST run these on the TF2 model too (method_name predict).
    assert _rest(server, 'half_plus_two_tf2:classify', {'signature_name': 'classify_x_to_y',
                                                        'examples': [{'x': 1.0}, {'x': 2.0}]}) == \
        (200, {'results': [[['', 2.5]], [['', 3.0]]]})
    assert _rest(server, 'half_plus_two_tf2:regress', {'signature_name': 'regress_x_to_y',
                                                       'examples': [{'x': 1.0}, {'x': 2.0}]}) == \
        (200, {'results': [2.5, 3.0]})


def test_the_method_name_check_refuses_them_when_asked_for(tmp_path):
    settled_copy('saved_model_half_plus_two_tf2_cpu', tmp_path / 'm')
    settings = ServerSettings.for_model(str(tmp_path / 'm'), rest_port=0, grpc_port=0, poll_seconds=0,
                                        settle_seconds=0, signature_method_name_check=True)
    with ModelServer(settings) as running:
        status, body = _rest(running, 'm:classify', {'signature_name': 'classify_x_to_y', 'examples': [{'x': 1.0}]})
    assert status == 400
    assert body['error'] == ('Expected classification signature method_name to be tensorflow/serving/classify. '
                             'Was: tensorflow/serving/predict')


def test_classify_on_a_signature_without_an_inputs_tensor_says_so(server):
    # classifier.cc PreProcessClassification: the input must be named "inputs".
    status, body = _rest(server, 'half_plus_two:classify', {'examples': [{'x': 1.0}]})
    assert status == 400 and 'No classification inputs found' in body['error']
    status, body = _rest(server, 'half_plus_two:regress', {'signature_name': 'nope', 'examples': [{'x': 1.0}]})
    assert (status, body) == (400, {'error': 'No signature was found with the name: nope'})


def test_a_tf1_era_model_regresses_on_tf_examples(stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = 'half_plus_two'
    request.model_spec.signature_name = 'regress_x_to_y'
    request.input.example_list.examples.extend([_example(x=2.0), _example(x=6.0)])
    response = stub.Regress(request, timeout=30)
    assert [r.value for r in response.result.regressions] == [3.0, 5.0]


# -- MultiInference ---------------------------------------------------------------------------------

def _multi(*tasks, model='half_plus_two'):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method, name in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = name or model
        task.model_spec.signature_name = signature
    request.input.example_list.examples.extend([_example(x=2.0, x2=4.0)])
    return request


def test_multi_inference_runs_classify_and_regress_on_one_input(stub):
    # multi_inference_test.cc: one result per task, in order, each naming its signature and version.
    response = stub.MultiInference(_multi(('classify_x_to_y', 'tensorflow/serving/classify', None),
                                          ('regress_x_to_y', 'tensorflow/serving/regress', None),
                                          ('regress_x_to_y2', 'tensorflow/serving/regress', None)), timeout=30)
    first, second, third = response.results
    assert first.classification_result == classification_pb2.ClassificationResult(
        classifications=[classification_pb2.Classifications(classes=[classification_pb2.Class(score=3.0)])])
    assert [r.value for r in second.regression_result.regressions] == [3.0]
    assert [r.value for r in third.regression_result.regressions] == [4.0]  # y2 = x / 2 + 3
    assert (second.model_spec.name, second.model_spec.signature_name, second.model_spec.version.value) == \
        ('half_plus_two', 'regress_x_to_y', 123)


@pytest.mark.parametrize('tasks,code,message', [
    ([('regress_x_to_y', 'tensorflow/serving/regress', None)] * 2, grpc.StatusCode.INVALID_ARGUMENT,
     'Duplicate evaluation of signature: regress_x_to_y'),
    ([('regress_x_to_y', 'tensorflow/serving/regress', None), ('classify_x_to_y', 'tensorflow/serving/classify',
                                                               'half_plus_three')],
     grpc.StatusCode.INVALID_ARGUMENT, 'All ModelSpecs in a MultiInferenceRequest must access the same model name.'),
    ([('serving_default', 'tensorflow/serving/predict', None)], grpc.StatusCode.UNIMPLEMENTED,
     'Unsupported signature method_name: tensorflow/serving/predict'),
    ([('nope', 'tensorflow/serving/regress', None)], grpc.StatusCode.INVALID_ARGUMENT,
     'Requested signature not found in model graph: nope'),
    # server_core.cc ServableRequestFromModelSpec, on the default ModelSpec a request without tasks gives.
    ([], grpc.StatusCode.INVALID_ARGUMENT, 'ModelSpec has no name specified.'),
])
def test_multi_inference_refuses_as_tf_serving_does(stub, tasks, code, message):
    with pytest.raises(grpc.RpcError) as refused:
        stub.MultiInference(_multi(*tasks), timeout=30)
    assert (refused.value.code(), refused.value.details()) == (code, message)


# -- Metadata: every field TF Serving prints ------------------------------------------------------

def _reference(name):
    with open(os.path.join(TESTDATA, name)) as f:
        return json.load(f)


def test_metadata_json_is_tf_servings_field_for_field(server):
    # testGetModelMetadataREST: the answer equals the file.
    expected = _reference('half_plus_two_model_metadata.json')
    status, body = _rest(server, 'half_plus_two/metadata')
    assert status == 200
    assert body == {**expected, 'model_spec': {**expected['model_spec'], 'name': 'half_plus_two'}}


def test_tf2_metadata_prints_default_valued_fields_as_tf_serving_does(server):
    # The reference was written before SignatureDef had `defaults`: every other field must match,
    # `"dim": []` and `"unknown_rank": false` included, and the init op is listed as TF Serving lists it.
    expected = _reference('saved_model_half_plus_two_tf2_2_versions_metadata.json')['metadata']['signature_def']
    status, body = _rest(server, 'half_plus_two_tf2/metadata')
    ours = body['metadata']['signature_def']['signature_def']
    assert status == 200 and set(ours) == set(expected['signature_def'])
    for name, signature in expected['signature_def'].items():
        for field in ('inputs', 'outputs', 'method_name'):
            assert ours[name][field] == signature[field], (name, field)
