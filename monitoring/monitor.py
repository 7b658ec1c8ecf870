"""One monitoring pass over a window of request logs, per model version.

For each version that answered in the window:
- TFDV statistics of the served features;
- training/serving skew: the skew comparators of the version's schema, served
  data against the training statistics the version carries
  (`assets.extra/training_statistics.pb`), in the schema's SERVING environment;
- drift against the previous window of the same length (drift comparators);

Categorical features are compared by TFDV (L-infinity). Numeric ones are not:
TFDV's numeric Jensen-Shannon divergence rebuckets each side's equal-width
histogram assuming values spread evenly within a bucket, so two samples of one
heavy-tailed distribution with different maxima read as drift (trip_miles did,
on two halves of one resample: docs/decisions.md#numeric-drift-in-the-baselines-quantile-buckets).
Here both sides are counted in the training data's own quantile
buckets (from the statistics the version carries), and two tests are taken
there, each reported on its own: the shape (Jensen-Shannon divergence, base 2,
0 to 1) and, for amounts (no upper bound: fare, miles, seconds), location and
scale (the Wasserstein distance in training IQRs: a units change keeps the
shape; drift.is_measurement). Every test's threshold depends
on the two sides' sample sizes (components/drift_check/drift.py); a check that
cannot run (no traffic in the window before, no training statistics, too few
values of a feature) is said, as `not_checked` records beside the alerts.
- prediction drift: Jensen-Shannon divergence of the prediction's
  distribution against the previous window;
- the outlier rate (the share of examples the model flagged);
- live metrics, once ground truth came back (serving/feedback.py): the
  feedback received in the window, joined by request id and example index
  with the examples it names, whenever they were served (ground truth comes
  later than the window its request was served in: counted by arrival, each
  record counts in exactly one pass), turned into labels by the model's rule,
  against the probability the answering version returned.
Feedback naming no logged example, second records for one example and
examples a reused request id names twice are counted and named, never joined.
Each finding beyond its threshold is an alert that names the version and the features.
"""

import dataclasses
import os
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from components.drift_check import drift as drift_tests
from components.drift_check.drift import FeatureDrift, compare, measured, quantile_buckets
from foundation.model_files import SCHEMA_FILE, TRAINING_STATISTICS_FILE
from foundation import alerts
from monitoring import before_labels, callers, live_metrics, request_logs, served_explanations
from serving import feedback as feedback_lib

SERVING_ENVIRONMENT = 'SERVING'
# The prediction's distribution counts as drifted past this divergence.
PREDICTION_DRIFT_THRESHOLD = 0.1


@dataclasses.dataclass(frozen=True)
class Settings:
    log_dir: str
    model_base_path: str
    end_micros: int
    window_micros: int
    # The model's outputs the monitor reads (the taxi model's, from the CLI).
    prediction_key: str
    outlier_key: str
    # An outlier rate above this is an alert (the model's threshold flags ~1% of training data).
    max_outlier_rate: float = 0.05
    # Ground truth: where feedback is stored, and the model's rule from observed values
    # (name -> array, NaN where not sent) and logged features (`label_features`) to 0/1 labels.
    feedback_dir: Optional[str] = None
    labeler: Optional[Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], np.ndarray]] = None
    label_features: tuple = ()
    # A live metric below its minimum is an alert once this many served examples have labels.
    min_auc: float = 0.7
    min_accuracy: float = 0.6
    min_labelled: int = 100
    # Live metrics only from examples served from then on (a canary's comparison); None: any time.
    served_since_micros: Optional[int] = None
    # Served rows per version explained for attribution drift (monitoring/attribution_drift.py); 0: not
    # checked (a pass then loads each version's SavedModel: about 2 s a version).
    attribution_sample: int = 0
    # When a caller is flagged for abuse or probing (monitoring/callers.py).
    abuse_thresholds: callers.Thresholds = callers.Thresholds()

    @property
    def start_micros(self) -> int:
        return self.end_micros - self.window_micros


@dataclasses.dataclass
class VersionReport:
    version: int
    examples: int
    previous_examples: int
    # None when the version served nothing in the window (it is here for feedback on older answers).
    serving_statistics: Optional[statistics_pb2.DatasetFeatureStatisticsList]
    training_statistics: Optional[statistics_pb2.DatasetFeatureStatisticsList]
    skew: List[FeatureDrift]
    drift: List[FeatureDrift]
    prediction_drift: Optional[FeatureDrift]
    outlier_rate: Optional[float]
    live: Optional[live_metrics.LiveMetrics] = None
    # Feedback joined to this window's examples whose label could not be derived.
    unlabelable: int = 0
    alerts: List[Dict] = dataclasses.field(default_factory=list)
    # Numeric features: share of training and of served examples per training quantile bucket.
    buckets: Dict[str, Dict[str, tuple]] = dataclasses.field(default_factory=dict)
    # Checks that could not run, and why (alerts.NotChecked records): not alerts, but said beside them.
    not_checked: List[Dict] = dataclasses.field(default_factory=list)
    # From the calibration the version carries (monitoring/before_labels.py): estimated accuracy and AUC, and
    # with labels label drift and concept drift, attribution drift; None when it carries none.
    estimation: Optional[before_labels.Findings] = None

    @property
    def not_checked_text(self) -> str:
        """The checks that could not run, for the version's summary line ('' if every one ran)."""
        return ''.join(f'; {alerts.NotChecked.from_record(n).text()}' for n in self.not_checked)


def _load_version(model_base_path: str, version: int):
    """(schema, training statistics or None) a pushed version carries."""
    directory = os.path.join(model_base_path, str(version))
    schema_path = os.path.join(directory, SCHEMA_FILE)
    if not tf.io.gfile.exists(schema_path):
        return None, None
    schema = tfdv.load_schema_text(schema_path)
    stats_path = os.path.join(directory, TRAINING_STATISTICS_FILE)
    return schema, tfdv.load_stats_binary(stats_path) if tf.io.gfile.exists(stats_path) else None


def _statistics(table: pa.Table, schema: schema_pb2.Schema) -> statistics_pb2.DatasetFeatureStatisticsList:
    names = [f.name for f in schema.feature if f.name in table.column_names]
    batch = pa.RecordBatch.from_arrays([table.column(n).combine_chunks() for n in names], names)
    return stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions(schema=schema))


def _values(table: pa.Table, name: str) -> np.ndarray:
    values = pc.list_flatten(table.column(name).combine_chunks()).to_numpy(zero_copy_only=False)
    return values[np.isfinite(values)] if values.dtype.kind == 'f' else values


JSD_IN_TRAINING_BUCKETS = 'Jensen-Shannon divergence (training quantile buckets)'


def _compared(schema, comparator: str) -> List[schema_pb2.Feature]:
    """The features served requests carry that have a `comparator` (skew or drift)."""
    return [f for f in schema.feature
            if f.HasField(comparator) and SERVING_ENVIRONMENT not in f.not_in_environment]


def _numeric_comparisons(comparator: str, schema, edges, current: pa.Table, reference):
    """({feature: its tests}, {feature: why not checked}) of each numeric feature with a `comparator` (skew or
    drift), both sides counted in the training quantile buckets. `reference` is a table (the previous window)
    or None (the training data)."""
    found, not_checked = {}, {}
    for feature in _compared(schema, comparator):
        name, measure = feature.name, getattr(feature, comparator)
        if name not in edges:
            continue
        buckets = edges[name]
        served = _values(current, name) if name in current.column_names else np.zeros(0)
        if reference is None:
            expected, reference_count = buckets.training, buckets.count
        else:
            values = _values(reference, name) if name in reference.column_names else np.zeros(0)
            expected, reference_count = buckets.shares(values), len(values)
        why = drift_tests.too_few(reference_count, len(served))
        if why:
            not_checked[name] = why
            continue
        jsd = measure.jensen_shannon_divergence.threshold if measure.HasField('jensen_shannon_divergence') else None
        found[name] = drift_tests.numeric_tests(name, buckets, expected, buckets.shares(served), reference_count,
                                                len(served), jsd, drift_tests.is_measurement(feature),
                                                JSD_IN_TRAINING_BUCKETS)
    return found, not_checked


def _judged(comparator: str, schema, tfdv_findings: List[FeatureDrift], numeric: Dict, not_checked: Dict,
            reference_counts: Dict, counts: Dict) -> List[FeatureDrift]:
    """Every feature's findings: ours for numeric ones (`numeric`), TFDV's for the others (categorical ones
    against the threshold for their sample sizes). A feature with a comparator and no finding is added to
    `not_checked`, with why."""
    found = [f for tests in numeric.values() for f in tests]
    for f in tfdv_findings:
        if f.feature in numeric or f.feature in not_checked:
            continue
        why = drift_tests.too_few(reference_counts.get(f.feature, 0), counts.get(f.feature, 0))
        if why:
            not_checked[f.feature] = why
        else:
            found.append(drift_tests.categorical_test(f, reference_counts[f.feature], counts[f.feature])
                         if f.measure == 'L-infinity' else f)
    judged = {f.feature for f in found}
    for feature in _compared(schema, comparator):
        if feature.name not in judged and feature.name not in not_checked:
            not_checked[feature.name] = drift_tests.too_few(reference_counts.get(feature.name, 0),
                                                            counts.get(feature.name, 0)) or 'not measured'
    return sorted(found, key=lambda f: (f.feature, f.measure))


def _bucket_shares(edges: Dict, window: pa.Table) -> Dict[str, Dict[str, tuple]]:
    """Per numeric feature: {bucket label: (training share, served share)} over the training quantile buckets."""
    shares = {}
    for name, buckets in edges.items():
        if name in window.column_names:
            served = buckets.shares(_values(window, name))
            shares[name] = {label: (float(t), float(s))
                            for label, t, s in zip(buckets.labels(), buckets.training, served)}
    return shares


def _skew(training, serving, schema, edges, window: pa.Table):
    """(findings, {feature: why not checked}): the served window against the training statistics."""
    anomalies = tfdv.validate_statistics(training, schema, environment=SERVING_ENVIRONMENT,
                                         serving_statistics=serving)
    numeric, not_checked = _numeric_comparisons('skew_comparator', schema, edges, window, None)
    found = _judged('skew_comparator', schema, measured(anomalies, 'skew_measurements'), numeric, not_checked,
                    drift_tests.value_counts(training), drift_tests.value_counts(serving))
    return found, not_checked


def _drift(serving, schema, edges, window: pa.Table, previous: pa.Table):
    """(findings, {feature: why not checked}): the window against the one before. Numeric features in the
    training quantile buckets from both windows' values; without training statistics, in the previous
    window's buckets from both windows' statistics (drift.compare)."""
    before = _statistics(previous, schema)
    found, _ = compare(serving, before, _without_count(schema))
    numeric, not_checked = _numeric_comparisons('drift_comparator', schema, edges, window, previous)
    from_statistics = {}
    for f in found.features:
        if f.feature not in numeric and f.feature not in not_checked:
            from_statistics.setdefault(f.feature, []).append(f)
    found = _judged('drift_comparator', schema, [], {**from_statistics, **numeric}, not_checked,
                    drift_tests.value_counts(before), drift_tests.value_counts(serving))
    return found, not_checked


def _not_checked(version: int, check: str, reasons: Dict[str, str]) -> List[Dict]:
    """alerts.NotChecked records of one check: a record per reason, naming its features."""
    by_reason = {}
    for feature, why in sorted(reasons.items()):
        by_reason.setdefault(why, []).append(feature)
    return [alerts.NotChecked(check, version, why, tuple(features)).record() for why, features in by_reason.items()]


def _without_count(schema: schema_pb2.Schema) -> schema_pb2.Schema:
    """Traffic volume varies by hour: windows are compared on distributions only."""
    copy = schema_pb2.Schema()
    copy.CopyFrom(schema)
    copy.ClearField('dataset_constraints')
    return copy


def _prediction_schema(key: str) -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    feature = schema.feature.add(name=key, type=schema_pb2.FLOAT)
    feature.drift_comparator.jensen_shannon_divergence.threshold = PREDICTION_DRIFT_THRESHOLD
    return schema


@dataclasses.dataclass(frozen=True)
class Unmonitored:
    """A version that answered but carries no schema (exported before versions carried one):
    nothing to judge its traffic by, so it is named, never silently left out."""

    version: int
    examples: int

    @property
    def alert(self) -> Dict:
        return alerts.Alert(alerts.UNMONITORED, self.version, {
            'examples': self.examples,
            'reason': f'the version carries no {SCHEMA_FILE}; push a version exported by the current pipeline'}).record()


@dataclasses.dataclass(frozen=True)
class FeedbackCheck:
    """The feedback received in the window, as the pass found it."""

    records: int
    # Feedback naming a request id and example that no logged request has.
    unknown: List[feedback_lib.Feedback]
    # Second (and later) records for an example: the first one counts.
    duplicates: List[feedback_lib.Feedback]
    # Logged examples a record matched beyond the first (a client reused a request id): not counted.
    reused: int = 0


@dataclasses.dataclass(frozen=True)
class Pass:
    """One monitoring pass: a report per version that answered in the window, the versions
    that answered but could not be judged, and what was found in the feedback store."""

    reports: List[VersionReport]
    unmonitored: List[Unmonitored]
    feedback: Optional[FeedbackCheck] = None
    # Every caller that called in the window (monitoring/callers.py): a caller is judged across versions.
    callers: List = dataclasses.field(default_factory=list)

    @property
    def alerts(self) -> List[Dict]:
        return ([a for r in self.reports for a in r.alerts] + [u.alert for u in self.unmonitored]
                + callers.abuse_alerts(self.callers))

    @property
    def not_checked(self) -> List[Dict]:
        """The checks that could not run (alerts.NotChecked records): said beside the alerts, not alerts."""
        return [n for r in self.reports for n in r.not_checked]


@dataclasses.dataclass
class _Joined:
    """Feedback received in the window joined to the examples it names, per answering version."""

    records: Dict[int, List] = dataclasses.field(default_factory=dict)
    rows: Dict[int, List[int]] = dataclasses.field(default_factory=dict)
    unknown: List = dataclasses.field(default_factory=list)
    # Logged examples a record matched beyond the first (a client reused a request id).
    reused: int = 0


def _join(fresh: Dict, logged: Optional[pa.Table], served_since: Optional[int] = None) -> _Joined:
    """Each fresh record with the first logged example (by time) it names; unknown if none. Examples
    served before `served_since` are not joined (their feedback is left out, and not counted unknown)."""
    joined = _Joined()
    if logged is not None and logged.num_rows:
        ids = request_logs.scalars(logged.column(request_logs.REQUEST_ID), b'')
        indexes = request_logs.scalars(logged.column(request_logs.EXAMPLE_INDEX))
        versions = request_logs.scalars(logged.column(request_logs.MODEL_VERSION))
        served = request_logs.scalars(logged.column(request_logs.TIMESTAMP))
        taken = set()
        for row in np.argsort(served, kind='stable'):
            key = (ids[row].decode(), int(indexes[row]))
            if key not in fresh:
                continue
            if key in taken:
                joined.reused += 1
                continue
            taken.add(key)
            if served_since is not None and served[row] < served_since:
                continue
            version = int(versions[row])
            joined.records.setdefault(version, []).append(fresh[key])
            joined.rows.setdefault(version, []).append(int(row))
        joined.unknown = [record for key, record in fresh.items() if key not in taken]
    else:
        joined.unknown = list(fresh.values())
    return joined


def _labelled(records: List, rows: List[int], logged: pa.Table, settings: Settings):
    """(labels, served scores) of the examples feedback named whose label and score are known, and how
    many it named whose label or score is unknown, of one version."""
    names = sorted({name for r in records for name in r.observed})
    observed = {name: np.array([r.observed.get(name, np.nan) for r in records], dtype=float) for name in names}
    examples = logged.take(pa.array(rows))
    features = {name: _firsts(examples, name) for name in settings.label_features}
    labels = settings.labeler(observed, features)
    # Examples answered by classify/regress have no probability to judge.
    scores = _firsts(examples, settings.prediction_key)
    usable = np.isfinite(labels) & np.isfinite(scores)
    return labels[usable], scores[usable], int((~usable).sum())


def _live(records: List, rows: List[int], logged: pa.Table, settings: Settings):
    """(live metrics or None, feedback whose label or served score is unknown) of one version."""
    labels, scores, unusable = _labelled(records, rows, logged, settings)
    return (live_metrics.compute(labels, scores) if len(labels) else None), unusable


def _before_labels(version: int, window: pa.Table, joined: '_Joined', logged: Optional[pa.Table],
                   report: 'VersionReport', settings: Settings) -> Optional[before_labels.Findings]:
    """What the version's calibration says of its window (None if it carries none): the estimate, with
    the feedback's labels label and concept drift (the inputs drifted if skew or drift fired), and
    attribution drift on `settings.attribution_sample` served rows."""
    directory = os.path.join(settings.model_base_path, str(version))
    calibration = before_labels.read_calibration(directory)
    if calibration is None or not window.num_rows:
        return None
    labels = scores = None
    if version in joined.records:
        labels, scores, _ = _labelled(joined.records[version], joined.rows[version], logged, settings)
    explain = None
    if settings.attribution_sample and calibration.attributions is not None:
        explain = served_explanations.explainer(directory, calibration.attributions)
    return before_labels.judge(calibration, _firsts(window, settings.prediction_key), scores, labels,
                               inputs_drifted=any(f.drifted for f in report.skew + report.drift), window=window,
                               explain=explain, sample=settings.attribution_sample)


def _firsts(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column's value per row, NaN where the row has none."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return np.array([v[0] if v else np.nan for v in table.column(name).to_pylist()], dtype=float)


def _fresh_feedback(settings: Settings):
    """(first record per example received in the window, later records received in it)."""
    if not settings.feedback_dir or not tf.io.gfile.isdir(settings.feedback_dir):
        return {}, []
    first, duplicates = feedback_lib.read(settings.feedback_dir)

    def fresh(record):
        return settings.start_micros <= record.received_micros < settings.end_micros
    return {key: r for key, r in first.items() if fresh(r)}, [r for r in duplicates if fresh(r)]


def monitor(settings: Settings) -> Pass:
    """Reports, one per version that answered in the window (or the one before) or whose
    answers got feedback in it, the versions that answered but could not be judged, and
    the state of the feedback received in the window."""
    reports = []
    fresh, duplicates = _fresh_feedback(settings)
    previous_start = settings.start_micros - settings.window_micros
    outputs = {settings.prediction_key: schema_pb2.FLOAT, settings.outlier_key: schema_pb2.INT}
    # Each version is read and judged with its own schema: the one it was trained with.
    carried = {}

    def reading_schema_of(version):
        carried[version] = _load_version(settings.model_base_path, version)
        schema = carried[version][0]
        return request_logs.reading_schema(schema, outputs) if schema is not None else None

    tables, skipped, logged = request_logs.read_by_version(
        settings.log_dir, reading_schema_of, previous_start, settings.end_micros,
        wanted_ids=frozenset(key[0].encode() for key in fresh),
        wanted_columns={settings.prediction_key: schema_pb2.FLOAT,
                        **{name: schema_pb2.FLOAT for name in settings.label_features}})
    joined = _join(fresh, logged, settings.served_since_micros) if settings.labeler else _Joined()
    by_version = {version: (*carried[version], request_logs.between(table, settings.start_micros, settings.end_micros),
                            request_logs.between(table, previous_start, settings.start_micros))
                  for version, table in tables.items()}
    for version in sorted(set(by_version) | set(joined.records)):
        live, unlabelable = (_live(joined.records[version], joined.rows[version], logged, settings)
                             if version in joined.records else (None, 0))
        if version not in by_version:  # feedback only: its answers were served before the window
            report = VersionReport(version, 0, 0, None, None, [], [], None, None, live, unlabelable)
            report.alerts = _alerts(report, settings)
            reports.append(report)
            continue
        schema, training, window, previous = by_version[version]
        if not window.num_rows and live is None:
            continue
        serving = _statistics(window, schema) if window.num_rows else None
        edges = quantile_buckets(training) if training is not None else {}
        skew, drift, not_checked = _skew_and_drift(version, schema, training, serving, edges, window, previous)
        prediction_drift = None
        prediction_schema = _prediction_schema(settings.prediction_key)
        if previous.num_rows and window.num_rows:
            current_predictions = _statistics(window, prediction_schema)
            previous_predictions = _statistics(previous, prediction_schema)
            found, _ = compare(current_predictions, previous_predictions, prediction_schema,
                               location_and_scale=False)
            prediction_drift = next(iter(found.features), None)
            if prediction_drift is None:
                not_checked.append(alerts.NotChecked(alerts.PREDICTION_DRIFT, version, drift_tests.too_few(
                    previous.num_rows, window.num_rows) or 'not measured').record())
        outliers = pc.list_flatten(window.column(settings.outlier_key).combine_chunks())
        outlier_rate = pc.mean(outliers).as_py() if len(outliers) else None
        report = VersionReport(version, window.num_rows, previous.num_rows, serving,
                               training, skew, drift, prediction_drift, outlier_rate, live, unlabelable)
        report.estimation = _before_labels(version, window, joined, logged, report, settings)
        report.alerts = _alerts(report, settings)
        report.not_checked = not_checked
        report.buckets = _bucket_shares(edges, window) if window.num_rows else {}
        reports.append(report)
    check = None
    if settings.feedback_dir:
        check = FeedbackCheck(len(fresh) + len(duplicates), joined.unknown, duplicates, joined.reused)
    return Pass(reports, [Unmonitored(version, count) for version, count in sorted(skipped.items())], check,
                _callers(by_version, settings))


def _callers(by_version: Dict, settings: Settings) -> List:
    """Each caller's behaviour in the window, over every version it called (features from the newest schema)."""
    windows = [window for _, _, window, _ in by_version.values() if window.num_rows]
    if not windows:
        return []
    newest = max(version for version, (_, _, window, _) in by_version.items() if window.num_rows)
    return callers.assess(windows, callers.feature_columns(by_version[newest][0]), settings.prediction_key,
                          settings.outlier_key, window_seconds=settings.window_micros / 1e6,
                          thresholds=settings.abuse_thresholds)


def _skew_and_drift(version: int, schema, training, serving, edges, window: pa.Table, previous: pa.Table):
    """(skew findings, drift findings, alerts.NotChecked records) of a version's window: skew against the
    training statistics it carries, drift against the window before; what could not be checked, and why."""
    skew, drift, not_checked = [], [], []
    if not window.num_rows:
        return skew, drift, not_checked
    if training is None:
        not_checked.append(alerts.NotChecked(alerts.SKEW, version, 'the version carries no training statistics '
                                             f'({TRAINING_STATISTICS_FILE})').record())
    else:
        skew, reasons = _skew(training, serving, schema, edges, window)
        not_checked += _not_checked(version, alerts.SKEW, reasons)
    if not previous.num_rows:
        not_checked += [alerts.NotChecked(check, version, 'no traffic in the previous window').record()
                        for check in (alerts.DRIFT, alerts.PREDICTION_DRIFT)]
    else:
        drift, reasons = _drift(serving, schema, edges, window, previous)
        not_checked += _not_checked(version, alerts.DRIFT, reasons)
    return skew, drift, not_checked


def _alerts(report: VersionReport, settings: Settings) -> List[Dict]:
    """The version's alerts, as recorded (alerts.Alert.record())."""
    found = []
    for kind, findings in ((alerts.SKEW, report.skew), (alerts.DRIFT, report.drift)):
        drifted = [f for f in findings if f.drifted]
        if drifted:
            # Each feature once, and per feature which tests fired: distances and thresholds by test.
            distances, thresholds = {}, {}
            for f in drifted:
                distances.setdefault(f.feature, {})[drift_tests.test_name(f.measure)] = round(f.value, 4)
                thresholds.setdefault(f.feature, {})[drift_tests.test_name(f.measure)] = float(f.threshold)
            found.append(alerts.Alert(kind, report.version, {'features': list(distances), 'distances': distances,
                                                             'thresholds': thresholds}))
    if report.prediction_drift is not None and report.prediction_drift.drifted:
        found.append(alerts.Alert(alerts.PREDICTION_DRIFT, report.version,
                                  {'distance': round(report.prediction_drift.value, 4)}))
    live = report.live
    if live is not None and live.examples >= settings.min_labelled:
        for metric, value, interval, minimum in (('auc', live.auc, live.auc_ci, settings.min_auc),
                                                 ('accuracy', live.accuracy, live.accuracy_ci, settings.min_accuracy)):
            if metric == 'auc' and min(live.positives, live.examples - live.positives) < live_metrics.MIN_PER_CLASS:
                continue
            if value is not None and value < minimum:
                found.append(alerts.Alert(alerts.LIVE_METRIC, report.version, {
                    'metric': metric, 'value': round(value, 4), 'ci95': [round(x, 4) for x in interval],
                    'minimum': minimum, 'labelled_examples': live.examples}))
    if report.outlier_rate is not None and report.outlier_rate > settings.max_outlier_rate:
        found.append(alerts.Alert(alerts.OUTLIER_RATE, report.version, {
            'outlier_rate': round(report.outlier_rate, 4), 'allowed': settings.max_outlier_rate}))
    estimated = (report.estimation.alerts(report.version, settings.min_accuracy, settings.min_auc,
                                          settings.min_labelled) if report.estimation else [])
    return [a.record() for a in found] + estimated
