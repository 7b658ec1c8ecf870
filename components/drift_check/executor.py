"""What the drift check does with its artifacts: reads the new span's statistics, the schema and
the serving version's training statistics, measures (`drift`), and writes the drift report: the
findings as anomalies per split, and the result as custom properties of the report artifact."""

import dataclasses
import json
import os

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import standard_artifacts
from tfx.dsl.io import fileio
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME as ANOMALIES_FILE  # per split
from tfx.types import artifact_utils

from components.baseline_model import latest_pushed_version
from components.drift_check.drift import (BASELINE_VERSION, DISTANCES, DRIFTED_FEATURES, NO_BASELINE, POLICIES,
                                          POLICY, VERDICT, DriftResult, compare)
from components.trainer.training_record import TRAIN_SPLIT
from foundation import metadata_store
from foundation.model_files import TRAINING_STATISTICS_FILE


def _load_baseline(serving_model_dir: str, metadata_connection: str):
    """(version, training statistics) of the latest pushed version (one ML Metadata knows, given a
    connection: components/baseline_model.py), or (version or None, None)."""
    version = latest_pushed_version(serving_model_dir, metadata_store.connect_parameter(metadata_connection))
    if version is None:
        return None, None
    path = os.path.join(serving_model_dir, version, TRAINING_STATISTICS_FILE)
    if not tf.io.gfile.exists(path):  # a version exported before models carried their statistics
        return version, None
    return version, tfdv.load_stats_binary(path)


def check(statistics: standard_artifacts.ExampleStatistics, schema: standard_artifacts.Schema,
          serving_model_dir: str, drift_policy: str,
          drift_report: standard_artifacts.ExampleAnomalies, metadata_connection: str = '') -> None:
    """Compares the new span's training split with the serving version's training data."""
    if drift_policy not in POLICIES:
        raise ValueError(f'drift_policy must be one of {", ".join(POLICIES)}, not {drift_policy!r}')
    version, baseline = _load_baseline(serving_model_dir, metadata_connection)
    drift_report.split_names = artifact_utils.encode_split_names([TRAIN_SPLIT])
    drift_report.set_string_custom_property(POLICY, drift_policy)
    if version is not None:
        drift_report.set_string_custom_property(BASELINE_VERSION, version)
    if baseline is None:
        result, anomalies = DriftResult(NO_BASELINE, version, []), anomalies_pb2.Anomalies()
    else:
        current = tfdv.load_stats_binary(os.path.join(statistics.uri, f'Split-{TRAIN_SPLIT}', 'FeatureStats.pb'))
        schema_file = fileio.listdir(schema.uri)[0]
        result, anomalies = compare(current, baseline, tfdv.load_schema_text(os.path.join(schema.uri, schema_file)),
                                    version)
    tf.io.gfile.makedirs(os.path.join(drift_report.uri, f'Split-{TRAIN_SPLIT}'))
    with tf.io.gfile.GFile(os.path.join(drift_report.uri, f'Split-{TRAIN_SPLIT}', ANOMALIES_FILE), 'wb') as f:
        f.write(anomalies.SerializeToString())
    drift_report.set_string_custom_property(VERDICT, result.verdict)
    drift_report.set_string_custom_property(DRIFTED_FEATURES, ','.join(result.drifted))
    drift_report.set_string_custom_property(DISTANCES, json.dumps([dataclasses.asdict(f) for f in result.features]))
