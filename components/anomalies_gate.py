"""A gate that fails the run when ExampleValidator found anomalies, or when the
drift check found drift and its policy blocks.

ExampleValidator only records anomalies (and a `blessed` property); nothing
downstream reads them, so a TFX pipeline trains on bad data unless something
stops it. This component does, by failing its execution: every runner
(LocalDagRunner, KFP, Vertex) then stops the nodes that depend on it. The
drift check records its findings and never fails itself, so they stay in ML
Metadata when the gate stops the run.
"""

import os
from typing import Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME as ANOMALIES_FILE  # per split
from tfx.types import artifact_utils

from components import drift_check


class DataAnomaliesError(RuntimeError):
    """The data does not match the curated schema; the message says how."""

    def __init__(self, problems: Dict[str, List[str]]):
        self.problems = problems
        lines = ['Data anomalies found; stopping before Transform and Trainer.']
        for split, split_problems in problems.items():
            lines.append(f'  split {split!r}:')
            lines.extend(f'    - {p}' for p in split_problems)
        lines.append('Fix the data, or, if the change is intended, update schemas/schema.pbtxt '
                     '(see `taxi-pipeline schema-draft`).')
        super().__init__('\n'.join(lines))


class DataDriftError(RuntimeError):
    """The new data drifted from the serving model's training data, and the policy blocks."""

    def __init__(self, baseline_version: str, lines: List[str]):
        self.lines = lines
        super().__init__('\n'.join(
            [f'Data drift against the data serving version {baseline_version} was trained on; the drift policy '
             'blocks, so the run stops before Transform and Trainer.']
            + [f'  - {line}' for line in lines]
            + ['If the change is real and intended, run with --drift-policy warn (the model is then marked as '
               'trained on drifted data), or adjust the drift comparators in schemas/schema.pbtxt.']))


# What the gate raises: data that must not be trained on (the CLI's exit code 2).
GATE_ERRORS = (DataAnomaliesError, DataDriftError)


def describe(anomalies: anomalies_pb2.Anomalies) -> List[str]:
    """One readable line per anomalous feature (and one for dataset-level issues)."""
    lines = []
    for feature_name, info in sorted(anomalies.anomaly_info.items()):
        reasons = '; '.join(r.description or r.short_description for r in info.reason)
        lines.append(f'{feature_name}: {info.short_description or "anomaly"} ({reasons})')
    if anomalies.HasField('dataset_anomaly_info'):
        info = anomalies.dataset_anomaly_info
        reasons = '; '.join(r.description or r.short_description for r in info.reason)
        lines.append(f'<dataset>: {info.short_description or "anomaly"} ({reasons})')
    return lines


def read_split_anomalies(anomalies_uri: str, split: str) -> anomalies_pb2.Anomalies:
    path = os.path.join(anomalies_uri, f'Split-{split}', ANOMALIES_FILE)
    result = anomalies_pb2.Anomalies()
    result.ParseFromString(tf.io.gfile.GFile(path, 'rb').read())
    return result


@tfx.dsl.components.component
def AnomaliesGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    drift_report: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies] = None,
):
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
        result = drift_check.read_result(drift_report.mlmd_artifact)
        policy = drift_report.get_string_custom_property(drift_check.POLICY)
        if result is not None and result.verdict == drift_check.DRIFT and policy == drift_check.BLOCK:
            raise DataDriftError(result.baseline_version, drift_check.describe(result))
