"""Request logs as the server writes them: rows answered by a real pushed version, at a chosen time."""

import json
import os

import tensorflow as tf

from serving.telemetry import log_examples
from taxi_model import contract


class LogWriter:
    """Writes rows to a log directory as served by one version of the model at `base_path`."""

    def __init__(self, base_path: str, version: int):
        self.version = version
        self._predict = tf.saved_model.load(os.path.join(base_path, str(version))).signatures[contract.PREDICT_RAW]

    def write(self, directory, rows, at_micros, name, request_id=None, strip=()):
        """One request per file, its id the file's name (feedback names (id, example index));
        `strip`: fields left out of the records, as logs written before they existed."""
        inputs = contract.raw_inputs(rows)
        outputs = {k: v.numpy() for k, v in self._predict(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
        meta = {'model_name': 'chicago-taxi', 'model_version': self.version, 'signature_name': contract.PREDICT_RAW,
                'request_id': request_id or name, 'timestamp_micros': at_micros}
        missing = json.loads(contract.missing_values_json())[contract.PREDICT_RAW]
        os.makedirs(directory, exist_ok=True)
        with tf.io.TFRecordWriter(os.path.join(directory, f'{name}.tfrecord')) as writer:
            for example in log_examples((meta, inputs, outputs, None, missing)):
                for field in strip:
                    del example.features.feature[field]
                writer.write(example.SerializeToString())
        return outputs
