"""Drift measurement and its records, importing no TFX: the drift check's executor and the monitor share it.

TFDV's drift comparators measure, except the numeric Jensen-Shannon divergence,
which is not TFDV's own: TFDV rebuckets each side's equal-width histogram as if
values spread evenly inside a bucket, so two samples of one heavy-tailed
distribution with different maxima read as drift (trip_miles did, on spans whose
miles had not changed). Both sides are counted instead in the baseline's own
quantile buckets: the baseline's share per bucket from its QUANTILES
histogram, the new span's from its QUANTILES histogram (its distribution
function at each baseline boundary, linear within one of its own quantile
buckets, which are narrow where the data is dense).
"""


import dataclasses
import json
from typing import Dict, List, Mapping, Optional

import numpy as np
from scipy.spatial import distance
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

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


@dataclasses.dataclass(frozen=True)
class Buckets:
    """A numeric feature's baseline quantile buckets: upper-inclusive, (edge[i-1], edge[i]], as
    TFDV's are, with the share of baseline examples in each (not 1/N: a value many examples share,
    like 0 miles, collapses several quantiles into one bucket)."""

    inner: np.ndarray
    training: np.ndarray

    def shares(self, values: np.ndarray) -> np.ndarray:
        """Shares of raw values per bucket."""
        counts = np.bincount(np.searchsorted(self.inner, values, side='left'), minlength=len(self.inner) + 1)
        return counts / max(counts.sum(), 1)

    def shares_of(self, histogram: statistics_pb2.Histogram) -> np.ndarray:
        """Shares per bucket of a sample known only by its QUANTILES histogram."""
        below = np.zeros(len(self.inner))  # examples <= each inner edge
        for bucket in histogram.buckets:
            low, high, count = bucket.low_value, bucket.high_value, bucket.sample_count
            if high <= low:
                below += count * (self.inner >= high)
            else:
                below += count * np.clip((self.inner - low) / (high - low), 0.0, 1.0)
        total = sum(b.sample_count for b in histogram.buckets)
        cumulative = np.concatenate([[0.0], np.minimum(below / max(total, 1e-12), 1.0), [1.0]])
        return np.maximum(np.diff(cumulative), 0.0)

    def labels(self) -> List[str]:
        edges = [f'{e:.4g}' for e in self.inner]
        return ([f'<= {edges[0]}'] + [f'{low}..{high}' for low, high in zip(edges, edges[1:])]
                + [f'> {edges[-1]}'])


def _quantiles(feature) -> Optional[statistics_pb2.Histogram]:
    if not feature.HasField('num_stats'):
        return None
    return next((h for h in feature.num_stats.histograms if h.type == statistics_pb2.Histogram.QUANTILES), None)


def quantile_buckets(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> Dict[str, Buckets]:
    """Per numeric feature, the quantile buckets of the data the statistics describe."""
    edges = {}
    for feature in statistics.datasets[0].features:
        histogram = _quantiles(feature)
        if histogram is not None and len(histogram.buckets) > 1:
            inner = np.unique([b.high_value for b in histogram.buckets[:-1]])
            counts = np.zeros(len(inner) + 1)
            for bucket in histogram.buckets:
                counts[np.searchsorted(inner, bucket.high_value, side='left')] += bucket.sample_count
            edges[feature.path.step[0]] = Buckets(inner, counts / max(counts.sum(), 1))
    return edges


def divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence, base 2, 0 to 1 (scipy returns its square root, the distance)."""
    return float(distance.jensenshannon(p, q, base=2) ** 2) if p.sum() and q.sum() else 0.0


_JSD_HIGH = anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH


def _numeric_divergences(current, baseline, schema, anomalies: anomalies_pb2.Anomalies) -> None:
    """Replaces TFDV's numeric Jensen-Shannon divergences in `anomalies` with ours, and its verdicts."""
    buckets = quantile_buckets(baseline)
    histograms = {f.path.step[0]: _quantiles(f) for f in current.datasets[0].features if f.path.step}
    thresholds = {f.name: f.drift_comparator.jensen_shannon_divergence.threshold for f in schema.feature
                  if f.drift_comparator.HasField('jensen_shannon_divergence')}
    for info in anomalies.drift_skew_info:
        name = '.'.join(info.path.step)
        if name not in thresholds or name not in buckets or histograms.get(name) is None:
            continue
        for measurement in info.drift_measurements:
            if measurement.type != anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE:
                continue
            value = divergence(buckets[name].training, buckets[name].shares_of(histograms[name]))
            measurement.value = value
            reasons = anomalies.anomaly_info[name].reason if name in anomalies.anomaly_info else None
            flagged = any(r.type == _JSD_HIGH for r in reasons) if reasons is not None else False
            if value > thresholds[name] and not flagged:
                anomalies.anomaly_info[name].path.step.extend(info.path.step)
                anomalies.anomaly_info[name].severity = anomalies_pb2.AnomalyInfo.ERROR
                anomalies.anomaly_info[name].reason.add(
                    type=_JSD_HIGH, short_description='High approximate Jensen-Shannon divergence between '
                    'current and previous', description=f'The approximate Jensen-Shannon divergence between '
                    f'current and previous is {value:.4g} (in the previous data\'s quantile buckets; up to six '
                    f'significant digits), above the threshold {thresholds[name]:g}.')
            elif value <= thresholds[name] and flagged:
                kept = [r for r in reasons if r.type != _JSD_HIGH]
                if kept:
                    del anomalies.anomaly_info[name].reason[:]
                    anomalies.anomaly_info[name].reason.extend(kept)
                else:
                    del anomalies.anomaly_info[name]


def compare(current: statistics_pb2.DatasetFeatureStatisticsList,
            baseline: statistics_pb2.DatasetFeatureStatisticsList, schema,
            baseline_version: Optional[str] = None) -> tuple[DriftResult, anomalies_pb2.Anomalies]:
    """TFDV's drift comparators over two statistics (numeric divergences in the baseline's quantile
    buckets): the result, and the drift findings as anomalies."""
    # TFDV (and tfx_bsl under it) loads here, not with the module: readers of the records (run
    # summaries, reports, the gate) need none of it.
    import tensorflow_data_validation as tfdv
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=baseline)
    _numeric_divergences(current, baseline, schema, anomalies)
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
    return result_from({key: value.string_value for key, value in artifact.custom_properties.items()})


def result_from(properties: Mapping[str, str]) -> Optional[DriftResult]:
    """The result from the report's custom properties as text: how a Kubeflow task must read them,
    since TFX's entry point rebuilds every custom property of an input as a JSON struct, not a string."""
    verdict = properties.get(VERDICT)
    if not verdict:
        return None
    distances = json.loads(properties.get(DISTANCES) or '[]')
    return DriftResult(verdict, properties.get(BASELINE_VERSION) or None, [FeatureDrift(**d) for d in distances])
