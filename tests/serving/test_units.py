"""The embedded server's parts that need no model: TF Serving's JSON formats,
version policies, batching options and the batcher's merging of requests."""

import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving import json_codec
from serving.batching import Batcher, BatchingOptions
from serving.errors import ServingError
from serving.manager import VersionPolicy

pytestmark = pytest.mark.unit


SPECS = {'fare': tf.TensorSpec([None], tf.float32), 'trips': tf.TensorSpec([None], tf.int64),
         'company': tf.TensorSpec([None], tf.string)}


def test_row_format_becomes_one_array_per_input():
    inputs, row_format = json_codec.predict_inputs(
        {'instances': [{'fare': 1, 'trips': 2, 'company': 'a'}, {'fare': 2.5, 'trips': 3, 'company': {'b64': 'Yg=='}}]},
        SPECS)
    assert row_format
    np.testing.assert_array_equal(inputs['fare'], np.array([1.0, 2.5], np.float32))
    assert inputs['fare'].dtype == np.float32 and inputs['trips'].dtype == np.int64
    assert list(inputs['company']) == [b'a', b'b']


def test_columnar_format_and_single_input_shorthand():
    inputs, row_format = json_codec.predict_inputs({'inputs': {'fare': [1.5], 'trips': [1], 'company': ['x']}}, SPECS)
    assert not row_format and inputs['trips'].tolist() == [1]
    single = {'examples': tf.TensorSpec([None], tf.string)}
    inputs, _ = json_codec.predict_inputs({'instances': [{'b64': 'eHk='}, 'z']}, single)
    assert list(inputs['examples']) == [b'xy', b'z']


@pytest.mark.parametrize('request_body, message', [
    ({'instances': [{'fare': '1.5', 'trips': 1, 'company': 'a'}]}, 'is not of expected type: float32'),
    ({'instances': [{'fare': 1.0, 'trips': 1.5, 'company': 'a'}]}, 'is not of expected type: int64'),
    ({'instances': [{'fare': 1.0, 'trips': 1, 'company': 3}]}, 'is not of expected type: string'),
    ({'instances': [{'fare': None, 'trips': 1, 'company': 'a'}]}, 'is not of expected type: float32'),
    ({'instances': [{'fare': 1.0, 'trips': 1}]}, "Missing but required: ['company']"),
    ({'instances': [{'fare': 1.0, 'trips': 1, 'company': 'a', 'tips': 2}]}, "Sent extra: ['tips']"),
    ({'instances': [{'fare': 1.0, 'trips': 1, 'company': 'a'}, {'fare': 1.0}]}, 'must have the same keys'),
    ({'instances': []}, 'non-empty list'),
    ({'inputs': {'fare': [1.0, 2.0], 'trips': [1], 'company': ['a']}}, 'different batch sizes'),
    ({'signature_name': 'x'}, "Missing 'inputs' or 'instances' key"),
    ({'instances': [], 'inputs': {}}, "only one of 'inputs' or 'instances'"),
    ({'instances': [{'fare': 1.0, 'trips': 1, 'company': {'b64': '***'}}]}, 'not valid base64'),
    ({'inputs': {'fare': [7.25, None], 'trips': [1, 2], 'company': ['a', 'b']}}, 'JSON value null is not'),
    ({'instances': [{'fare': 1.0, 'trips': 1, 'company': ['a']}, {'fare': 1.0, 'trips': 1, 'company': ['b', 'c']}]},
     'lists are ragged'),
])
def test_bad_requests_are_invalid_argument_with_a_reason(request_body, message):
    with pytest.raises(ServingError) as error:
        json_codec.predict_inputs(request_body, SPECS)
    assert error.value.code_name == 'INVALID_ARGUMENT' and error.value.http_status == 400
    assert message in error.value.message


@pytest.mark.parametrize('body', [b'{bad', b'[1, 2]', b'\xff'])
def test_malformed_json_and_non_objects_are_rejected(body):
    with pytest.raises(ServingError, match='JSON'):
        json_codec.parse_body(body)


def test_responses_follow_the_request_format():
    outputs = {'probabilities': np.array([[0.25], [0.75]], np.float32)}
    assert json_codec.predict_response(outputs, row_format=True) == {'predictions': [[0.25], [0.75]]}
    assert json_codec.predict_response(outputs, row_format=False) == {'outputs': [[0.25], [0.75]]}
    two = {'a': np.array([1, 2]), 'b_bytes': np.array([b'x', b'y'], dtype=object)}
    assert json_codec.predict_response(two, row_format=True) == {
        'predictions': [{'a': 1, 'b_bytes': {'b64': 'eA=='}}, {'a': 2, 'b_bytes': {'b64': 'eQ=='}}]}


def test_classify_examples_infer_feature_types_and_merge_context():
    (serialized,) = json_codec.serialized_examples({'context': {'company': 'c'}, 'examples': [{'fare': 2.5, 'hour': 3}]})
    feature = tf.train.Example.FromString(serialized).features.feature
    assert feature['fare'].float_list.value == [2.5]
    assert feature['hour'].int64_list.value == [3]
    assert feature['company'].bytes_list.value == [b'c']
    with pytest.raises(ServingError, match='non-empty list'):
        json_codec.serialized_examples({'examples': []})
    with pytest.raises(ServingError, match='is not a number, string or list'):
        json_codec.serialized_examples({'examples': [{'fare': None}]})


@pytest.mark.parametrize('policy, selected', [
    (VersionPolicy(), [7]),
    (VersionPolicy.parse('latest:2'), [5, 7]),
    (VersionPolicy.parse('all'), [1, 3, 5, 7]),
    (VersionPolicy.parse('specific:1,5,9'), [1, 5]),
])
def test_version_policies_select_like_tf_serving(policy, selected):
    assert policy.select([3, 1, 7, 5]) == selected


@pytest.mark.parametrize('text', ['latest:0', 'newest', 'specific:a', 'all:2'])
def test_malformed_version_policies_are_refused(text):
    with pytest.raises(ValueError, match='version policy'):
        VersionPolicy.parse(text)


def test_batching_options_read_the_tf_serving_file(tmp_path):
    path = tmp_path / 'batching.config'
    path.write_text('max_batch_size { value: 64 }\nbatch_timeout_micros { value: 500 }\n')
    options = BatchingOptions.from_file(str(path))
    assert (options.max_batch_size, options.batch_timeout_micros) == (64, 500)
    assert options.num_batch_threads == BatchingOptions().num_batch_threads
    path.write_text('max_batch_size: 64\n')  # TF Serving wants an Int64Value here
    with pytest.raises(ValueError, match='not a BatchingParameters text proto'):
        BatchingOptions.from_file(str(path))
    path.write_text('max_batch_size { value: 0 }\n')
    with pytest.raises(ValueError, match='positive'):
        BatchingOptions.from_file(str(path))


class DoublingServable:
    """Stands in for a model: doubles `x`, fails on negative values; records batch sizes."""

    def __init__(self):
        self.batch_sizes = []
        self.lock = threading.Lock()

    def run_unbatched(self, signature, inputs):
        with self.lock:
            self.batch_sizes.append(len(inputs['x']))
        if (inputs['x'] < 0).any():
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, 'negative input')
        return {'y': inputs['x'] * 2}


def test_batcher_merges_concurrent_requests_and_returns_each_its_own_rows():
    servable = DoublingServable()
    batcher = Batcher(BatchingOptions(max_batch_size=64, batch_timeout_micros=50_000, num_batch_threads=1))
    results, errors = {}, {}
    start = threading.Barrier(16)

    def client(i):
        start.wait()
        x = np.array([i, i + 100, -1] if i == 5 else [i, i + 100], dtype=np.int64)
        try:
            results[i] = batcher.run(servable, 'sig', {'x': x})['y'].tolist()
        except ServingError as e:
            errors[i] = e.message

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    batcher.close()
    assert errors == {5: 'negative input'}  # the bad request fails alone
    assert results == {i: [2 * i, 2 * (i + 100)] for i in range(16) if i != 5}
    assert max(servable.batch_sizes) > 2  # requests were really merged


class BlockingServable:
    """A model call that blocks until released, to fill the batcher's queue."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def run_unbatched(self, signature, inputs):
        self.entered.set()
        self.release.wait(timeout=10)
        return {'y': inputs['x']}


def test_batcher_answers_unavailable_when_its_queue_is_full():
    servable = BlockingServable()
    batcher = Batcher(BatchingOptions(max_batch_size=2, batch_timeout_micros=1, num_batch_threads=1,
                                      max_enqueued_batches=1))
    call = lambda: batcher.run(servable, 's', {'x': np.array([1])})  # noqa: E731
    busy = threading.Thread(target=call, daemon=True)
    busy.start()
    assert servable.entered.wait(timeout=10)  # the only batch thread is now busy
    queued = [threading.Thread(target=call, daemon=True) for _ in range(2)]  # fills the queue (1 batch of 2)
    for t in queued:
        t.start()
    time.sleep(0.3)  # let both reach the queue
    with pytest.raises(ServingError) as error:
        call()
    servable.release.set()
    for t in [busy] + queued:
        t.join(timeout=10)
    assert error.value.code_name == 'UNAVAILABLE' and 'queue' in error.value.message


@pytest.mark.parametrize('value', [
    np.array([1.5, 2.5], np.float32), np.array([[1], [2]], np.int64), np.array([b'a', b'bc'], dtype=object),
    np.float32(3.0), np.array([], np.float32), np.array([1, 2], np.int32), np.array([True, False]),
    np.array([0.5, 1.5], np.float16)])
def test_tensor_protos_decode_as_tf_make_ndarray_does(value):
    from serving.tensors import to_ndarray
    proto = tf.make_tensor_proto(value)
    decoded, reference = to_ndarray(proto), tf.make_ndarray(proto)
    assert decoded.dtype == reference.dtype and decoded.shape == reference.shape
    np.testing.assert_array_equal(decoded, reference)


def test_tensor_protos_in_tfs_repeated_value_shorthand_decode_in_full():
    from serving.tensors import to_ndarray
    repeated = tf.make_tensor_proto(2.0, shape=[3])  # one value repeated over the whole shape
    np.testing.assert_array_equal(to_ndarray(repeated), [2.0, 2.0, 2.0])


def test_integers_out_of_range_are_refused_not_wrapped():
    with pytest.raises(ServingError, match='out of range for int64'):
        json_codec.to_array([2 ** 63], tf.TensorSpec([None], tf.int64), 'x')
    with pytest.raises(ServingError, match='out of range for int32'):
        json_codec.to_array([3_000_000_000], tf.TensorSpec([None], tf.int32), 'x')
    assert json_codec.to_array([2 ** 62], tf.TensorSpec([None], tf.int64), 'x').tolist() == [2 ** 62]


def test_a_closed_batcher_answers_what_was_queued_and_then_runs_requests_directly():
    servable = DoublingServable()
    batcher = Batcher(BatchingOptions(max_batch_size=64, batch_timeout_micros=200_000, num_batch_threads=1))
    queued = {}
    waiting = threading.Thread(target=lambda: queued.update(r=batcher.run(servable, 's', {'x': np.array([3])})))
    waiting.start()
    time.sleep(0.05)  # the request waits for a batch to fill
    batcher.close()  # the version is unloaded meanwhile
    waiting.join(timeout=10)
    assert queued['r']['y'].tolist() == [6]
    assert batcher.run(servable, 's', {'x': np.array([4])})['y'].tolist() == [8]
