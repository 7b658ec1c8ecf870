"""Infra validation refuses, with the check that failed, a model that cannot load, answers NaN, is too slow,
or fails a behaviour case; and then nothing is pushed. The models here are small SavedModels with their own
warm-up requests (as every model the pipeline exports has), so each case takes a second or two."""

import json
import os
import shutil

import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.infra_validator import behaviour, checks, executor
from components.pusher import executor as pusher

pytestmark = pytest.mark.component

SUITE = """
signature: serving_default
output: y
rows:
  small: [{x: 1.0}, {x: 2.0}]
cases:
  - name: y stays below five
    kind: minimum
    rows: small
    max: 5.0
  - name: the same x answers the same y
    kind: consistency
    rows: small
"""


def _model(directory: str, scale: float, warmup: bool = True) -> str:
    """A SavedModel y = x * scale with a warm-up request, under <directory>/Format-Serving."""
    path = os.path.join(directory, 'Format-Serving')
    module = tf.Module()
    module.scale = tf.Variable(scale)
    module.serve = tf.function(lambda x: {'y': x * module.scale}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, path, signatures={'serving_default': module.serve})
    if warmup:
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name='serving_default'))
        request.inputs['x'].CopyFrom(tf.make_tensor_proto([1.0, 2.0], tf.float32))
        os.makedirs(os.path.join(path, 'assets.extra'))
        with tf.io.TFRecordWriter(os.path.join(path, checks.WARMUP_FILE)) as writer:
            writer.write(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    return directory


@pytest.fixture(scope='module')
def good(tmp_path_factory):
    return _model(str(tmp_path_factory.mktemp('good')), 2.0)


def _validate(model_dir, limits=checks.Limits(latency_requests=5), suite=SUITE, tmp_path=None):
    model = standard_artifacts.Model()
    model.uri = model_dir
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / 'blessing')
    report = executor.validate(model, blessing, limits.to_json(), suite)
    return report, blessing


def _push(model_dir, blessing, tmp_path):
    """Our Pusher (TFX's blessing checks) with an Evaluator blessing and this infra blessing."""
    model = standard_artifacts.Model()
    model.uri = model_dir
    model_blessing = standard_artifacts.ModelBlessing()
    model_blessing.uri = str(tmp_path / 'model_blessing')
    model_blessing.set_int_custom_property('blessed', 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / 'pushed_model')
    base = str(tmp_path / 'serving')
    pusher.Executor().Do({'model': [model], 'model_blessing': [model_blessing], 'infra_blessing': [blessing]},
                         {'pushed_model': [pushed]}, {
                             'push_destination': proto_utils.proto_to_json(pusher_pb2.PushDestination(
                                 filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))),
                             'custom_config': json.dumps(None)})
    return pushed.get_int_custom_property('pushed'), (os.listdir(base) if os.path.isdir(base) else [])


def test_a_good_model_is_blessed_with_its_figures_and_pushed(good, tmp_path):
    report, blessing = _validate(good, tmp_path=tmp_path)
    assert report.passed, report.reason()
    assert {'load', 'latency', 'memory', 'gRPC predict serving_default', 'REST predict serving_default',
            'behaviour: y stays below five', 'behaviour: the same x answers the same y'} <= {c.name for c in
                                                                                        report.checks}
    assert blessing.get_int_custom_property('blessed') == 1
    assert os.path.exists(os.path.join(blessing.uri, 'INFRA_BLESSED'))
    assert blessing.get_float_custom_property('p99_ms') > 0 and blessing.get_float_custom_property('load_seconds') > 0
    recorded = json.loads(open(os.path.join(blessing.uri, executor.REPORT_FILE)).read())
    assert recorded['latency_ms']['grpc']['requests'] == 5 and recorded['latency_ms']['rest']['requests'] == 5
    assert _push(good, blessing, tmp_path) == (1, os.listdir(str(tmp_path / 'serving')))
    assert len(os.listdir(str(tmp_path / 'serving'))) == 1


def _refused(model_dir, tmp_path, **kwargs):
    report, blessing = _validate(model_dir, tmp_path=tmp_path, **kwargs)
    assert not report.passed
    assert blessing.get_int_custom_property('blessed') == 0
    assert os.path.exists(os.path.join(blessing.uri, 'INFRA_NOT_BLESSED'))
    assert blessing.get_string_custom_property('reason') == report.reason() and '\n' not in report.reason()
    pushed, versions = _push(model_dir, blessing, tmp_path)
    assert (pushed, [v for v in versions if v.isdigit()]) == (0, [])
    return report


def test_a_model_that_cannot_load_is_refused_and_not_pushed(good, tmp_path):
    broken = str(tmp_path / 'broken')
    shutil.copytree(good, broken)
    with open(os.path.join(broken, 'Format-Serving', 'saved_model.pb'), 'r+b') as f:
        f.truncate(100)
    report = _refused(broken, tmp_path, limits=checks.Limits(max_load_seconds=20, latency_requests=5))
    assert report.failed[0].name == 'load' and 'not AVAILABLE' in report.failed[0].detail


def test_a_model_that_answers_nan_is_refused_and_not_pushed(tmp_path):
    nan = _model(str(tmp_path / 'nan'), float('nan'))
    report = _refused(nan, tmp_path)
    failed = {c.name: c.detail for c in report.failed}
    assert 'not finite' in failed['gRPC predict serving_default']
    assert 'is nan' in failed['REST predict serving_default'].lower()


def test_a_model_too_slow_for_the_latency_limit_is_refused_and_not_pushed(good, tmp_path):
    report = _refused(good, tmp_path, limits=checks.Limits(max_p99_ms=0.001, latency_requests=5))
    assert [c.name for c in report.failed] == ['latency'] and 'limit p99 0.001 ms' in report.reason()


def test_a_model_that_fails_a_behaviour_case_is_refused_naming_the_rows(tmp_path):
    large = _model(str(tmp_path / 'large'), 4.0)  # y = 4x: x = 2 answers 8, above five
    report = _refused(large, tmp_path)
    assert [c.name for c in report.failed] == ['behaviour: y stays below five']
    assert '1 of 2 row(s) failed: {x: 2.0} -> 8.0000, outside' in report.reason()


def test_a_model_without_warm_up_requests_is_refused_it_says_nothing_of_how_to_call_it(tmp_path):
    cold = _model(str(tmp_path / 'cold'), 2.0, warmup=False)
    report = _refused(cold, tmp_path, suite='')
    assert report.failed[0].name == 'warm-up requests'


def test_a_suite_that_names_rows_it_does_not_have_is_an_error_not_a_pass():
    with pytest.raises(ValueError, match="rows 'missing' are not among"):
        behaviour.load(SUITE.replace('rows: small\n    max', 'rows: missing\n    max'))


def test_the_same_checks_target_a_server_started_elsewhere(good, tmp_path):
    """On a cluster the check can target the real tensorflow/serving image serving the candidate; here a
    TF-Serving-compatible server in this process stands in for it, reached only over the wire."""
    from serving.server import ModelServer, ServerSettings
    base = tmp_path / 'served'
    base.mkdir()
    os.symlink(os.path.join(good, 'Format-Serving'), base / '7')
    settings = ServerSettings.for_model(str(base), 'taxi', rest_port=0, grpc_port=0, settle_seconds=0.0)
    with ModelServer(settings) as server:
        target = checks.Target(f'http://127.0.0.1:{server.rest_port}', f'127.0.0.1:{server.grpc_port}', 'taxi')
        report = checks.validate(os.path.join(good, 'Format-Serving'), checks.Limits(latency_requests=5),
                                 behaviour.load(SUITE), log=lambda line: None, target=target)
    assert report.passed, report.reason()
    assert 'memory' not in {c.name for c in report.checks}  # the Deployment's limit bounds a remote server
    assert report.latency_ms['grpc']['requests'] == 5
