"""A gate that fails the run when ExampleValidator found anomalies.

ExampleValidator only records anomalies (and a `blessed` property); nothing
downstream reads them, so a TFX pipeline trains on bad data unless something
stops it. This component does, by failing its execution: every runner
(LocalDagRunner, KFP, Vertex) then stops the nodes that depend on it.
"""

import os
from typing import Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

ANOMALIES_FILE = 'SchemaDiff.pb'  # What ExampleValidator writes per split.


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
def AnomaliesGate(anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies]):
    """Raises DataAnomaliesError if any split of `anomalies` is not empty."""
    problems = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        lines = describe(read_split_anomalies(anomalies.uri, split))
        if lines:
            problems[split] = lines
    if problems:
        raise DataAnomaliesError(problems)
