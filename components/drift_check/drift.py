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

That divergence sees shape only: a units change that keeps the shape (miles
sent in km, x1.609) moves every value but few of them across a bucket edge, so
trip_miles scored 0.034 against a threshold of 0.1. Amounts (numeric features
whose domain has no upper bound: miles, fare, seconds) get a second test that
sees location and scale: the Wasserstein distance between the two sides'
distribution functions within the baseline's inner deciles, in units of its
interquartile range (`location_scale`). Codes and positions (a bounded domain:
hour, day, month, community area, latitude, longitude) keep the shape test
alone (`is_measurement`). Every test's threshold depends on the two sides'
sample sizes, calibrated on clean draws at run time
(benchmarks/numeric_drift_benchmark.py; docs/decisions.md#numeric-drift-location-scale-and-shape).
"""


import dataclasses
import json
from typing import Dict, List, Mapping, Optional

import numpy as np
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

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
        """The drifted features, each once (a feature can fail more than one test)."""
        return list(dict.fromkeys(f.feature for f in self.features if f.drifted))


@dataclasses.dataclass(frozen=True)
class Buckets:
    """A numeric feature's baseline quantile buckets: upper-inclusive, (edge[i-1], edge[i]], as
    TFDV's are, with the share of baseline examples in each (not 1/N: a value many examples share,
    like 0 miles, collapses several quantiles into one bucket)."""

    inner: np.ndarray
    training: np.ndarray
    # How many baseline values the shares were counted from.
    count: float = 0.0

    @property
    def spread(self) -> float:
        """The baseline's interquartile range (its quantiles at 1/4 and 3/4, linear between the edges); where
        ties make it 0 (a value most examples share), the range of the inner edges."""
        below = np.cumsum(self.training)[:-1]  # the share <= each inner edge
        low, high = np.interp([0.25, 0.75], below, self.inner)
        return float(high - low) if high > low else float(self.inner[-1] - self.inner[0])

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

    def bounds_of(self, histogram: statistics_pb2.Histogram) -> tuple[np.ndarray, np.ndarray]:
        """(lowest, highest) share at or below each inner edge that a sample known only by its QUANTILES
        histogram can have: a bucket of its own that an edge cuts could hold its values on either side."""
        low, high = np.zeros(len(self.inner)), np.zeros(len(self.inner))
        for bucket in histogram.buckets:
            below = self.inner >= bucket.high_value  # the whole bucket (low, high] is at or below the edge
            cut = (self.inner > bucket.low_value) & ~below
            low += bucket.sample_count * below
            high += bucket.sample_count * (below | cut)
        total = max(sum(b.sample_count for b in histogram.buckets), 1e-12)
        return low / total, high / total

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
            edges[feature.path.step[0]] = Buckets(inner, counts / max(counts.sum(), 1), float(counts.sum()))
    return edges


def divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence, base 2, 0 to 1, of two share vectors (each normalised to 1)."""
    if not p.sum() or not q.sum():
        return 0.0
    return float(max(_divergences(p / p.sum(), q / q.sum()), 0.0))


# -- location and scale, and sample sizes ---------------------------------------------------------

LOCATION_SCALE = 'Wasserstein / training IQR (location, scale)'
# A numeric feature's two tests see nothing of a sample but its shares in the baseline's quantile buckets, so
# what they measure between two clean samples of a and b values is known from the baseline's shares alone:
# NULL_DRAWS pairs of samples drawn from them (multinomial, fixed seed), and its NULL_QUANTILE there. A test's
# threshold is MARGIN times that (for Jensen-Shannon at least the schema's): calibrated per feature and per
# sample size, at run time. MARGIN covers what the draws do not (real traffic is not a multinomial, TFDV's
# quantile sketch): benchmarks/numeric_drift_benchmark.py measures it on clean resamples of the taxi sample
# (docs/decisions.md#numeric-drift-location-scale-and-shape).
NULL_DRAWS = 4000
NULL_QUANTILE = 0.999
MARGIN = 1.3
# Categorical features: TFDV's L-infinity, against the larger of the schema's threshold and this / sqrt(n),
# n = a*b/(a+b), which clean resamples of that size stay under (the same benchmark).
L_INFINITY_ALLOWANCE = 2.5
# Fewer values than this on either side of a feature's comparison: its tests do not run, and say so.
MIN_VALUES = 100
_JSD_MEASURE = 'Jensen-Shannon divergence'


def is_measurement(feature: schema_pb2.Feature) -> bool:
    """A numeric feature whose domain has no upper bound: an amount (miles, dollars, seconds), which a units
    change rescales into values that still look plausible, so its location and scale are tested. A bounded
    one is a code (hour 0-23, day, month, community area) or a position (latitude, longitude): rescaled, its
    values leave the domain, which the shape test sees (x1.6 on a latitude reads 0.6-0.8 against 0.1). A
    location/scale test there would measure distances in the city's interquartile range, where the airport,
    seven of them west of downtown, makes a change of a few points in its share of pickups read as far as
    a units change on trip_miles."""
    domain = feature.float_domain if feature.type == schema_pb2.FLOAT else \
        feature.int_domain if feature.type == schema_pb2.INT else None
    if domain is None:
        return False
    field = 'float_domain' if feature.type == schema_pb2.FLOAT else 'int_domain'
    return not (feature.HasField(field) and domain.HasField('max'))


def location_scale(buckets: Buckets, expected: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The Wasserstein-1 distance between samples known by their shares in the baseline's quantile buckets
    (one sample per row of `expected`/`current`, or a single one), within the baseline's inner edges, in units
    of the baseline's interquartile range.

    W1 is the area between the two distribution functions. Both are known exactly at the edges (the share up
    to each) and taken as linear between them, so the area is a sum of trapezoids: np.clip of raw values to
    the first and last edge and scipy's wasserstein_distance give the same, up to the trapezoids. Within the
    inner edges (the baseline's first to last decile): beyond them one trip of 5,000 miles would move it, as
    the shape test leaves the tails to its outer buckets. A shift by d inside the range reads about
    0.8 d / IQR; data moved wholly out of the range, (last - first edge) / IQR.
    """
    gaps = np.abs(np.cumsum(current, axis=-1)[..., :-1] - np.cumsum(expected, axis=-1)[..., :-1])
    return _area(buckets, gaps)


def _area(buckets: Buckets, gaps: np.ndarray) -> np.ndarray:
    """The area of the gaps between two distribution functions at the inner edges, as trapezoids, in IQRs."""
    spread = buckets.spread
    if len(buckets.inner) < 2 or spread <= 0:
        return np.zeros(gaps.shape[:-1])
    widths = np.diff(buckets.inner)
    return np.sum(widths * (gaps[..., 1:] + gaps[..., :-1]) / 2, axis=-1) / spread


def proven_location_scale(buckets: Buckets, histogram: statistics_pb2.Histogram) -> float:
    """`location_scale` between the baseline and a sample known only by its QUANTILES histogram, at least:
    where a baseline edge falls inside one of the sample's buckets, the sample's share up to it is anywhere
    between the bucket's ends, and the gap counted is the one no placement of its values closes. Linear
    interpolation there reads a cluster (the airport's longitude, say) sitting at one end of a bucket as
    spread over it, and a resample of the baseline as drift."""
    low, high = buckets.bounds_of(histogram)
    expected = np.cumsum(buckets.training)[:-1]
    return float(_area(buckets, np.maximum(np.maximum(low - expected, expected - high), 0.0)))


def _divergences(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """`divergence` of each row of p against the same row of q."""
    m = (p + q) / 2
    with np.errstate(divide='ignore', invalid='ignore'):
        terms = np.where(p > 0, p * np.log2(p / m), 0.0) + np.where(q > 0, q * np.log2(q / m), 0.0)
    return np.sum(terms, axis=-1) / 2


def effective_size(a: float, b: float) -> float:
    return a * b / (a + b) if a > 0 and b > 0 else 0.0


def clean_limits(buckets: Buckets, a: float, b: float) -> tuple[float, float]:
    """(Jensen-Shannon divergence, location/scale distance): the NULL_QUANTILE of each between two clean
    samples of `a` and `b` values, drawn from the baseline's shares (the same draws for the same question)."""
    key = (buckets.inner.tobytes(), buckets.training.tobytes(), round(a), round(b))
    if key not in _LIMITS:
        if len(_LIMITS) >= 1024:
            _LIMITS.clear()
        _LIMITS[key] = _draw_limits(buckets, a, b)
    return _LIMITS[key]


_LIMITS: Dict[tuple, tuple[float, float]] = {}


def _draw_limits(buckets: Buckets, a: float, b: float) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    shares = buckets.training / buckets.training.sum()
    first = rng.multinomial(max(int(round(a)), 1), shares, size=NULL_DRAWS) / max(round(a), 1)
    second = rng.multinomial(max(int(round(b)), 1), shares, size=NULL_DRAWS) / max(round(b), 1)
    return (float(np.quantile(_divergences(first, second), NULL_QUANTILE)),
            float(np.quantile(location_scale(buckets, first, second), NULL_QUANTILE)))


def test_name(measure: str) -> str:
    """A finding's test in a word: 'shape' (Jensen-Shannon divergence), 'location/scale' (Wasserstein),
    'L-infinity' (a categorical feature's shares), or the measure itself."""
    if measure.startswith(_JSD_MEASURE):
        return 'shape'
    return 'location/scale' if measure == LOCATION_SCALE else measure


def too_few(a: float, b: float) -> Optional[str]:
    """Why a comparison of `a` and `b` values cannot tell a shift from noise, or None."""
    few = min(a, b)
    return f'{int(few)} value(s), fewer than {MIN_VALUES}' if few < MIN_VALUES else None


def numeric_tests(name: str, buckets: Buckets, expected: np.ndarray, current: np.ndarray, a: float, b: float,
                  jsd_threshold: Optional[float], location_and_scale: bool, jsd_measure: str = _JSD_MEASURE,
                  location: Optional[float] = None) -> List[FeatureDrift]:
    """A numeric feature's tests between two samples of `a` and `b` values known by their shares in the
    baseline's buckets: the shape (Jensen-Shannon divergence, if the schema gives a threshold) and, for a
    measurement, the location/scale test (`location` if given, else from the shares); each against its
    threshold for these sample sizes."""
    jsd_limit, location_limit = clean_limits(buckets, a, b)
    found = []
    if jsd_threshold is not None:
        value, threshold = divergence(expected, current), max(jsd_threshold, MARGIN * jsd_limit)
        found.append(FeatureDrift(name, jsd_measure, value, f'{threshold:.3g}', bool(value > threshold)))
    if location_and_scale:
        value = float(location_scale(buckets, expected, current)) if location is None else location
        threshold = MARGIN * location_limit
        found.append(FeatureDrift(name, LOCATION_SCALE, value, f'{threshold:.3g}', bool(value > threshold)))
    return found


def categorical_test(finding: FeatureDrift, a: float, b: float) -> FeatureDrift:
    """TFDV's L-infinity finding against its threshold for samples of `a` and `b` values."""
    threshold = max(float(finding.threshold), L_INFINITY_ALLOWANCE / np.sqrt(max(effective_size(a, b), 1.0)))
    return dataclasses.replace(finding, threshold=f'{threshold:.3g}', drifted=bool(finding.value > threshold))


def value_counts(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> Dict[str, float]:
    """Per feature, how many examples have a value."""
    found = {}
    for feature in statistics.datasets[0].features if statistics.datasets else ():
        common = feature.num_stats.common_stats if feature.HasField('num_stats') else \
            feature.string_stats.common_stats if feature.HasField('string_stats') else None
        if common is not None and feature.path.step:
            found[feature.path.step[0]] = float(common.num_non_missing)
    return found


_JSD_HIGH = anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
# The anomaly each test's drift is recorded as. TFDV has no type for a Wasserstein distance; the nearest says
# what it is: a normalised absolute difference (of distribution functions). The description names the test.
_REASONS = {'Jensen-Shannon divergence': _JSD_HIGH,
            'L-infinity': anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
            LOCATION_SCALE: anomalies_pb2.AnomalyInfo.COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH}
_DESCRIPTIONS = {
    'Jensen-Shannon divergence': ('High approximate Jensen-Shannon divergence between current and previous',
                                  'The approximate Jensen-Shannon divergence between current and previous is {value} '
                                  '(in the previous data\'s quantile buckets), above the threshold {threshold}.'),
    'L-infinity': ('High Linfty distance between current and previous',
                   'The Linfty distance between current and previous is {value}, above the threshold {threshold}.'),
    LOCATION_SCALE: ('High Wasserstein distance (location, scale) between current and previous',
                     'The Wasserstein distance between current and previous within the previous data\'s inner '
                     'deciles, in units of its interquartile range, is {value}, above the threshold {threshold}.'),
}


def _numeric_divergences(current, baseline, anomalies: anomalies_pb2.Anomalies) -> None:
    """Replaces TFDV's numeric Jensen-Shannon divergences in `anomalies` with ours (verdicts: `_record`)."""
    buckets = quantile_buckets(baseline)
    histograms = {f.path.step[0]: _quantiles(f) for f in current.datasets[0].features if f.path.step}
    for info in anomalies.drift_skew_info:
        name = '.'.join(info.path.step)
        if name not in buckets or histograms.get(name) is None:
            continue
        for measurement in info.drift_measurements:
            if measurement.type == anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE:
                measurement.value = divergence(buckets[name].training, buckets[name].shares_of(histograms[name]))


def _numeric_drift(current, baseline, schema, location_and_scale: bool) -> Dict[str, List[FeatureDrift]]:
    """Per numeric feature with a drift comparator: its tests, from the two statistics alone (the baseline's
    quantile buckets, the current data's shares in them from its QUANTILES histogram)."""
    buckets = quantile_buckets(baseline)
    histograms = {f.path.step[0]: _quantiles(f) for f in current.datasets[0].features if f.path.step}
    before, after = value_counts(baseline), value_counts(current)
    found = {}
    for feature in schema.feature:
        name, comparator = feature.name, feature.drift_comparator
        if not feature.HasField('drift_comparator') or name not in buckets or histograms.get(name) is None \
                or too_few(before.get(name, 0), after.get(name, 0)):
            continue
        jsd = comparator.jensen_shannon_divergence.threshold \
            if comparator.HasField('jensen_shannon_divergence') else None
        found[name] = numeric_tests(name, buckets[name], buckets[name].training,
                                    buckets[name].shares_of(histograms[name]), before[name], after[name], jsd,
                                    location_and_scale and is_measurement(feature),
                                    location=proven_location_scale(buckets[name], histograms[name]))
    return found


def _record(anomalies: anomalies_pb2.Anomalies, findings: List[FeatureDrift]) -> None:
    """The comparator reasons of `anomalies` as `findings` judged them: TFDV judged by the schema's threshold
    alone and on its own numeric divergence."""
    ours = set(_REASONS.values())
    for name in list(anomalies.anomaly_info):
        info = anomalies.anomaly_info[name]
        kept = [r for r in info.reason if r.type not in ours]
        if len(kept) == len(info.reason):
            continue
        if kept:
            del info.reason[:]
            info.reason.extend(kept)
        else:
            del anomalies.anomaly_info[name]
    for finding in findings:
        kind = next((k for k in _REASONS if finding.measure.startswith(k)), None)
        if not finding.drifted or kind is None:
            continue
        info = anomalies.anomaly_info[finding.feature]
        if not info.path.step:
            info.path.step.extend(finding.feature.split('.'))
        info.severity = anomalies_pb2.AnomalyInfo.ERROR
        short, long = _DESCRIPTIONS[kind]
        info.reason.add(type=_REASONS[kind], short_description=short,
                        description=long.format(value=f'{finding.value:.4g}', threshold=finding.threshold))


def compare(current: statistics_pb2.DatasetFeatureStatisticsList,
            baseline: statistics_pb2.DatasetFeatureStatisticsList, schema,
            baseline_version: Optional[str] = None,
            location_and_scale: bool = True) -> tuple[DriftResult, anomalies_pb2.Anomalies]:
    """TFDV's drift comparators over two statistics (numeric divergences in the baseline's quantile
    buckets) and, unless `location_and_scale` is off (the monitor, which has raw values, runs its own),
    the location/scale test of every measurement, each against its threshold for the two sides' sample
    sizes: the result, and the drift findings as anomalies. A feature with fewer than MIN_VALUES values
    on a side is not judged (a span has thousands)."""
    # TFDV (and tfx_bsl under it) loads here, not with the module: readers of the records (run
    # summaries, reports, the gate) need none of it.
    import tensorflow_data_validation as tfdv
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=baseline)
    _numeric_divergences(current, baseline, anomalies)
    numeric = _numeric_drift(current, baseline, schema, location_and_scale)
    after, before = value_counts(current), value_counts(baseline)
    features = [f for found in numeric.values() for f in found]
    for f in measured(anomalies, 'drift_measurements'):
        if f.feature in numeric or too_few(before.get(f.feature, 0), after.get(f.feature, 0)):
            continue
        features.append(categorical_test(f, before[f.feature], after[f.feature]) if f.measure == 'L-infinity'
                        else f)
    features.sort(key=lambda f: (f.feature, f.measure))
    _record(anomalies, features)
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
