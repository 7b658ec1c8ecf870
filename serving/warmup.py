"""Warm-up records: the requests a server replays before a version takes traffic.

The first call of each signature builds and optimizes its graph, which takes
far longer than a normal request. TF Serving (and the embedded server) replay
`assets.extra/tf_serving_warmup_requests`, a TFRecord file of PredictionLog
protos, at load time, so no client ever pays for that first call. The Trainer
writes the file next to the SavedModel; the Pusher copies it with the model.
"""

from __future__ import annotations

import os
from typing import Iterator, List, Mapping

import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, model_pb2, predict_pb2, prediction_log_pb2,
                                     regression_pb2)

from pipeline import requests
from serving import MODEL_NAME, WARMUP_FILE

# One typical trip from the taxi sample and one with every optional value
# missing, so both the dense and the "missing" paths of each signature run.
WARMUP_ROWS: List[Mapping[str, object]] = [
    {'trip_miles': 1.6, 'fare': 7.25, 'trip_seconds': 480, 'pickup_latitude': 41.899,
     'pickup_longitude': -87.626, 'dropoff_latitude': 41.880, 'dropoff_longitude': -87.632,
     'trip_start_hour': 14, 'trip_start_day': 3, 'trip_start_month': 6, 'pickup_community_area': 8,
     'dropoff_community_area': 32, 'payment_type': 'Credit Card', 'company': 'Taxi Affiliation Services'},
    {'trip_start_hour': 0, 'trip_start_day': 1, 'trip_start_month': 1, 'fare': 0.0,
     'trip_miles': 0.0, 'trip_seconds': 0, 'payment_type': 'Cash'},
]

# The signatures `pipeline.model` exports, by the request each one takes.
PREDICT_EXAMPLES, PREDICT_RAW = 'serving_default', 'serving_raw'
CLASSIFY, REGRESS = 'classification', 'regression'


def _examples_input(rows) -> 'input_pb2.Input':
    request = classification_pb2.ClassificationRequest()
    request.input.example_list.examples.extend(requests.to_tf_example(row) for row in rows)
    return request.input


def warmup_logs(rows=WARMUP_ROWS, model_name: str = MODEL_NAME) -> List[prediction_log_pb2.PredictionLog]:
    """One request per signature a client can call, for `rows`."""
    spec = lambda signature: model_pb2.ModelSpec(name=model_name, signature_name=signature)  # noqa: E731
    raw = predict_pb2.PredictRequest(model_spec=spec(PREDICT_RAW))
    for name, tensor in requests.raw_batch(rows).items():
        raw.inputs[name].CopyFrom(tf.make_tensor_proto(tensor))
    examples = predict_pb2.PredictRequest(model_spec=spec(PREDICT_EXAMPLES))
    examples.inputs['examples'].CopyFrom(tf.make_tensor_proto(
        [requests.to_tf_example(row).SerializeToString() for row in rows], dtype=tf.string))
    classify = classification_pb2.ClassificationRequest(model_spec=spec(CLASSIFY), input=_examples_input(rows))
    regress = regression_pb2.RegressionRequest(model_spec=spec(REGRESS), input=_examples_input(rows))
    PredictionLog = prediction_log_pb2.PredictionLog
    return [
        PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=raw)),
        PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=examples)),
        PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=classify)),
        PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=regress)),
    ]


def write_warmup_requests(model_dir: str, logs=None) -> str:
    """Writes the warm-up file into a SavedModel directory; returns its path."""
    path = os.path.join(model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs if logs is not None else warmup_logs():
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(model_dir: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """The warm-up records of a SavedModel directory; none if it has no file."""
    path = os.path.join(model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        yield prediction_log_pb2.PredictionLog.FromString(record)
