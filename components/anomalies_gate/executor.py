"""What the anomalies gate does with its artifacts: reads ExampleValidator's anomalies per split
and the drift check's result, and raises (`gate`) when the run must stop."""

import os
from typing import Optional

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import standard_artifacts
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME as ANOMALIES_FILE  # per split
from tfx.types import artifact_utils

from components.anomalies_gate.gate import DataAnomaliesError, DataDriftError, describe
from components.drift_check import drift


def read_split_anomalies(anomalies_uri: str, split: str) -> anomalies_pb2.Anomalies:
    path = os.path.join(anomalies_uri, f'Split-{split}', ANOMALIES_FILE)
    result = anomalies_pb2.Anomalies()
    result.ParseFromString(tf.io.gfile.GFile(path, 'rb').read())
    return result


def check(anomalies: standard_artifacts.ExampleAnomalies,
          drift_report: Optional[standard_artifacts.ExampleAnomalies]) -> None:
    """Raises DataAnomaliesError if any split of `anomalies` is not empty, and
    DataDriftError if `drift_report` found drift under the blocking policy."""
    problems = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        lines = describe(read_split_anomalies(anomalies.uri, split))
        if lines:
            problems[split] = lines
    if problems:
        raise DataAnomaliesError(problems)
    if drift_report is not None:
        # Through TFX's getters, which read a string or a JSON value alike: on Kubeflow every input's
        # custom property is a JSON value, and its string_value is empty.
        result = drift.result_from({key: drift_report.get_string_custom_property(key)
                                    for key in (drift.VERDICT, drift.DISTANCES, drift.BASELINE_VERSION)
                                    if drift_report.has_custom_property(key)})
        policy = drift_report.get_string_custom_property(drift.POLICY)
        if result is not None and result.verdict == drift.DRIFT and policy == drift.BLOCK:
            raise DataDriftError(result.baseline_version, drift.describe(result))
