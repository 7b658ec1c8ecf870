"""Drift of a new span against the data the serving model was trained on.

TFDV compares the new span's training-split statistics with those the
latest pushed version carries (`assets.extra/training_statistics.pb`, put
there by our Trainer), using the curated schema's drift comparators:
L-infinity distance for categorical features, Jensen-Shannon divergence for
numeric ones (TFDV's L-infinity reports nothing on numeric features), and an
example-count comparator. The baseline comes from the push destination, as
the Evaluator's does, so no Resolver is needed and every runner can run it.

The result is recorded in ML Metadata on the output artifact (an
ExampleAnomalies with the drift findings, per split): the verdict, the policy,
the version compared against and every measured distance with its threshold.
The policy decides what drift does: `warn` lets the run go on (our Trainer
copies the verdict onto the candidate model, so a release process can demand
an approval); `block` makes the AnomaliesGate stop the run before Transform.
"""


import dataclasses
import json
import os
from typing import List, Optional

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME as ANOMALIES_FILE  # per split
from tfx.types import artifact_utils

from components.baseline_model import latest_pushed_version
from components.trainer import TRAIN_SPLIT, TRAINING_STATISTICS_FILE

# pipeline.config.DRIFT_POLICIES restates them: the CLI's parser must not load TFDV to list them.
WARN, BLOCK = POLICIES = ('warn', 'block')
# Verdicts, as recorded in ML Metadata.
NO_BASELINE, NO_DRIFT, DRIFT = 'no baseline', 'no drift', 'drift'
# The row standing for the example-count comparator among the features.
EXAMPLE_COUNT = '<example count>'
# Custom properties of the drift report artifact (and, for the first three, of the candidate model).
VERDICT, DRIFTED_FEATURES, BASELINE_VERSION, POLICY, DISTANCES = (
    'drift_verdict', 'drift_features', 'drift_baseline_version', 'drift_policy', 'drift_distances')
_MEASURES = {anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: 'L-infinity',
             anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: 'Jensen-Shannon divergence',
             anomalies_pb2.DriftSkewInfo.Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE: 'normalized absolute difference'}
_COUNT_REASONS = (anomalies_pb2.AnomalyInfo.COMPARATOR_LOW_NUM_EXAMPLES,
                  anomalies_pb2.AnomalyInfo.COMPARATOR_HIGH_NUM_EXAMPLES)


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    """One comparator's measurement: how far the new data is from the baseline, and the limit."""

    feature: str
    measure: str
    value: float
    # For the example count: the allowed ratio range "min-max"; else the distance threshold.
    threshold: str
    drifted: bool


@dataclasses.dataclass(frozen=True)
class DriftResult:
    verdict: str
    baseline_version: Optional[str]
    features: List[FeatureDrift]

    @property
    def drifted(self) -> List[str]:
        return [f.feature for f in self.features if f.drifted]


def compare(current: statistics_pb2.DatasetFeatureStatisticsList,
            baseline: statistics_pb2.DatasetFeatureStatisticsList, schema,
            baseline_version: Optional[str] = None) -> tuple[DriftResult, anomalies_pb2.Anomalies]:
    """TFDV's drift comparators over two statistics: the result, and the drift findings as anomalies."""
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=baseline)
    features = measured(anomalies, 'drift_measurements')
    comparator = schema.dataset_constraints.num_examples_drift_comparator
    if schema.dataset_constraints.HasField('num_examples_drift_comparator'):
        ratio = current.datasets[0].num_examples / max(baseline.datasets[0].num_examples, 1)
        count_drift = any(r.type in _COUNT_REASONS for r in anomalies.dataset_anomaly_info.reason)
        features.append(FeatureDrift(EXAMPLE_COUNT, 'ratio to the baseline', ratio,
                                     f'{comparator.min_fraction_threshold:g}-{comparator.max_fraction_threshold:g}',
                                     count_drift))
    result = DriftResult(DRIFT if any(f.drifted for f in features) else NO_DRIFT, baseline_version, features)
    return result, _drift_only(anomalies)


def measured(anomalies: anomalies_pb2.Anomalies, kind: str) -> List[FeatureDrift]:
    """TFDV's `drift_measurements` or `skew_measurements` of every compared feature, against their thresholds."""
    return [FeatureDrift('.'.join(info.path.step), _MEASURES.get(m.type, 'distance'), m.value, f'{m.threshold:g}',
                         m.value > m.threshold)
            for info in anomalies.drift_skew_info for m in getattr(info, kind)]


def _drift_only(anomalies: anomalies_pb2.Anomalies) -> anomalies_pb2.Anomalies:
    """The comparator findings of `anomalies`; schema anomalies are ExampleValidator's to report."""
    kept = anomalies_pb2.Anomalies()
    kept.drift_skew_info.extend(anomalies.drift_skew_info)
    for name, info in anomalies.anomaly_info.items():
        reasons = [r for r in info.reason if anomalies_pb2.AnomalyInfo.Type.Name(r.type).startswith('COMPARATOR_')]
        if reasons:
            kept.anomaly_info[name].CopyFrom(info)
            del kept.anomaly_info[name].reason[:]
            kept.anomaly_info[name].reason.extend(reasons)
    reasons = [r for r in anomalies.dataset_anomaly_info.reason if r.type in _COUNT_REASONS]
    if reasons:
        kept.dataset_anomaly_info.reason.extend(reasons)
    return kept


def describe(result: DriftResult) -> List[str]:
    """One line per drifted feature: its distance against its threshold."""
    return [f'{f.feature}: {f.measure} {f.value:.4g} (allowed: {"ratio " if f.feature == EXAMPLE_COUNT else "<= "}'
            f'{f.threshold})' for f in result.features if f.drifted]


def read_result(artifact) -> Optional[DriftResult]:
    """The result a DriftCheck recorded on its artifact (ML Metadata custom properties)."""
    verdict = artifact.custom_properties.get(VERDICT)
    if verdict is None:
        return None
    distances = json.loads(artifact.custom_properties[DISTANCES].string_value or '[]')
    version = artifact.custom_properties.get(BASELINE_VERSION)
    return DriftResult(verdict.string_value, version.string_value if version else None,
                       [FeatureDrift(**d) for d in distances])


def _load_baseline(serving_model_dir: str):
    """(version, training statistics) of the latest pushed version, or (version or None, None)."""
    version = latest_pushed_version(serving_model_dir)
    if version is None:
        return None, None
    path = os.path.join(serving_model_dir, version, TRAINING_STATISTICS_FILE)
    if not tf.io.gfile.exists(path):  # a version exported before models carried their statistics
        return version, None
    return version, tfdv.load_stats_binary(path)


@tfx.dsl.components.component
def DriftCheck(
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    serving_model_dir: tfx.dsl.components.Parameter[str],
    drift_policy: tfx.dsl.components.Parameter[str],
    drift_report: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
):
    """Compares the new span's training split with the serving version's training data."""
    if drift_policy not in POLICIES:
        raise ValueError(f'drift_policy must be one of {", ".join(POLICIES)}, not {drift_policy!r}')
    version, baseline = _load_baseline(serving_model_dir)
    drift_report.split_names = artifact_utils.encode_split_names([TRAIN_SPLIT])
    drift_report.set_string_custom_property(POLICY, drift_policy)
    if version is not None:
        drift_report.set_string_custom_property(BASELINE_VERSION, version)
    if baseline is None:
        result, anomalies = DriftResult(NO_BASELINE, version, []), anomalies_pb2.Anomalies()
    else:
        current = tfdv.load_stats_binary(os.path.join(statistics.uri, f'Split-{TRAIN_SPLIT}', 'FeatureStats.pb'))
        schema_file = tfx.dsl.io.fileio.listdir(schema.uri)[0]
        result, anomalies = compare(current, baseline, tfdv.load_schema_text(os.path.join(schema.uri, schema_file)),
                                    version)
    tf.io.gfile.makedirs(os.path.join(drift_report.uri, f'Split-{TRAIN_SPLIT}'))
    with tf.io.gfile.GFile(os.path.join(drift_report.uri, f'Split-{TRAIN_SPLIT}', ANOMALIES_FILE), 'wb') as f:
        f.write(anomalies.SerializeToString())
    drift_report.set_string_custom_property(VERDICT, result.verdict)
    drift_report.set_string_custom_property(DRIFTED_FEATURES, ','.join(result.drifted))
    drift_report.set_string_custom_property(DISTANCES, json.dumps([dataclasses.asdict(f) for f in result.features]))
