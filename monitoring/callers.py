"""Who is probing the model: per-caller findings over a window of the request log.

Every logged example names its caller (serving/request_log.py: the token's name, else the
client's address). Per caller, over the window:

- **volume**: requests and examples, and their rates over the window;
- **outlier share**: the share of its examples the model flagged (the outlier key), against the
  rest of the crowd;
- **near-duplicate share**: the share of its successive queries (in the order it sent them)
  within `duplicate_distance` of the one before;
- **boundary probing**, after PRADA (Juuti et al., "PRADA: Protecting against DNN Model Stealing
  Attacks", EuroS&P 2019): for each new query, the minimum distance to the caller's earlier
  queries of the same predicted class (its growing set); a benign caller's queries are drawn from
  the world, and those distances come out roughly normal; an extraction attack's queries are made
  from each other (small steps along a line, perturbations of one feature), and they do not. The
  Shapiro-Wilk statistic W of the distances below `shapiro_delta` flags the caller;
- **near the decision threshold**: the share of its predictions within `boundary_margin` of
  `decision_threshold`, against the rest of the crowd (one-sided binomial test): someone
  searching for the boundary sits on it far more than callers who just send trips.

Distances: each feature contributes its own term, and a query's distance to another is their
mean. A numeric feature counts the absolute difference in units of its spread over the whole
window's traffic (the interquartile range, each caller weighted alike: robust to the probes
themselves), capped at `MAX_TERM` (one spread: a feature counts at most as much as a categorical
mismatch, so one absurd value does not swamp the rest, and the distances a crowd's queries are
apart stay light-tailed); a categorical one counts 0 for the same value and 1 for another. A
value missing on one side only counts 1, on both 0.

Plain logic over the Arrow table `monitoring/request_logs.py` reads; it knows no model: the
feature columns and the prediction and outlier keys are parameters (`feature_columns` derives
the features from a version's schema). The reasons, what they measure and their limits:
docs/monitoring.md, "Abuse and probing".
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation import alerts
from monitoring import request_logs

# Why a caller is flagged.
PROBING = 'probing'                # PRADA: its query distances are not normal
NEAR_DUPLICATES = 'near_duplicates'
NEAR_THRESHOLD = 'near_threshold'
OUTLIERS = 'outliers'
REASONS = (PROBING, NEAR_DUPLICATES, NEAR_THRESHOLD, OUTLIERS)
# A numeric feature's term in a distance is at most this many spreads.
MAX_TERM = 1.0


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """When a caller is flagged; docs/monitoring.md ("Abuse and probing") says how they were chosen."""

    # Fewer queries than this in the window: too little to judge a caller by its distances or shares.
    min_queries: int = 50
    # PRADA runs on a caller's latest this many queries (its cost grows with their square).
    max_queries: int = 1000
    # Shapiro-Wilk W of the caller's minimum distances below this: probing.
    shapiro_delta: float = 0.85
    # Successive queries at most this far apart (mean normalised term) are near-duplicates ...
    duplicate_distance: float = 0.02
    # ... and a caller with at least this share of them is flagged.
    max_duplicate_share: float = 0.5
    # Predictions within `boundary_margin` of `decision_threshold` are "on the boundary".
    decision_threshold: float = 0.5
    boundary_margin: float = 0.05
    # A share (on the boundary, or flagged as outliers) is the caller's own when it is this many times
    # the rest of the crowd's, and the binomial test's p-value is below `significance`.
    share_ratio: float = 3.0
    significance: float = 1e-6
    # An outlier share below this is never flagged, however small the crowd's.
    min_outlier_share: float = 0.2


@dataclasses.dataclass(frozen=True)
class Features:
    """Which columns of the log are the model's input features, and how they are compared."""

    numeric: Tuple[str, ...] = ()
    categorical: Tuple[str, ...] = ()

    def __post_init__(self):
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f'features both numeric and categorical: {sorted(both)}')


@dataclasses.dataclass(frozen=True)
class CallerFinding:
    caller: str
    requests: int
    examples: int
    # Per second, over the window.
    request_rate: float
    example_rate: float
    # None where the log has no such column or the caller too few queries to judge.
    outlier_share: Optional[float]
    crowd_outlier_share: Optional[float]
    near_duplicate_share: Optional[float]
    # PRADA's Shapiro-Wilk statistic, and how many distances it was taken over.
    shapiro_w: Optional[float]
    distances: int
    near_threshold_share: Optional[float]
    crowd_near_threshold_share: Optional[float]
    reasons: Tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    def alert(self, model_version: Optional[int] = None) -> alerts.Alert:
        """The ABUSE alert naming this caller and why (what was measured, rounded)."""
        details = {'caller': self.caller, 'reasons': list(self.reasons), 'requests': self.requests,
                   'examples': self.examples, 'request_rate': _round(self.request_rate)}
        for name in ('outlier_share', 'crowd_outlier_share', 'near_duplicate_share', 'shapiro_w',
                     'near_threshold_share', 'crowd_near_threshold_share'):
            value = getattr(self, name)
            if value is not None:
                details[name] = _round(value)
        return alerts.Alert(alerts.ABUSE, model_version, details)


def _round(value: float) -> float:
    return round(float(value), 4)


# -- reading the table -----------------------------------------------------------------------------------

def feature_columns(schema, environment: Optional[str] = 'SERVING') -> Features:
    """The features a version's schema (tensorflow_metadata Schema) says clients send: BYTES ones
    categorical, INT and FLOAT numeric; those not in `environment` (a label) left out."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    numeric, categorical = [], []
    for feature in schema.feature:
        if environment and not _in_environment(feature, schema, environment):
            continue
        (categorical if feature.type == schema_pb2.BYTES else numeric).append(feature.name)
    return Features(tuple(numeric), tuple(categorical))


def _in_environment(feature, schema, environment: str) -> bool:
    """As TFDV reads a schema's environments: a feature's own list decides, else the defaults (all
    environments when there are none), less the environments it is excluded from."""
    if feature.in_environment:
        return environment in feature.in_environment
    if environment in feature.not_in_environment:
        return False
    return not schema.default_environment or environment in schema.default_environment


def _firsts(table: pa.Table, name: str, numeric: bool) -> np.ndarray:
    """The first value of each row of a list column: float (NaN where none) or object (None where none)."""
    n = table.num_rows
    if name not in table.column_names:
        return np.full(n, np.nan) if numeric else np.full(n, None, dtype=object)
    column = table.column(name).combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    has = lengths > 0
    if numeric:
        out = np.full(n, np.nan)
        out[has] = flat[starts[has]].astype(float)
    else:
        out = np.full(n, None, dtype=object)
        out[has] = flat[starts[has]]
    return out


@dataclasses.dataclass
class _Rows:
    callers: np.ndarray      # object, one per example
    request_ids: np.ndarray  # object
    served: np.ndarray       # float: when it was served (micros)
    index: np.ndarray        # float: its place in its request
    numeric: np.ndarray      # float [n, numeric features], NaN where missing
    categorical: np.ndarray  # int [n, categorical features], one code per value (missing has its own)
    prediction: np.ndarray   # float, NaN where none
    outlier: np.ndarray      # float 0/1, NaN where none


def _read(tables: Sequence[pa.Table], features: Features, prediction_key: str, outlier_key: Optional[str]) -> _Rows:
    tables = [t for t in tables if t.num_rows]
    callers = [request_logs.callers(t) for t in tables]
    ids = [request_logs.scalars(t.column(request_logs.REQUEST_ID), b'') if request_logs.REQUEST_ID in t.column_names
           else np.full(t.num_rows, b'', dtype=object) for t in tables]
    served = [_firsts(t, request_logs.TIMESTAMP, True) for t in tables]
    index = [np.nan_to_num(_firsts(t, request_logs.EXAMPLE_INDEX, True)) for t in tables]
    numeric = [np.column_stack([_firsts(t, name, True) for name in features.numeric])
               if features.numeric else np.zeros((t.num_rows, 0)) for t in tables]
    raw = [[_firsts(t, name, False) for name in features.categorical] for t in tables]
    codes = np.zeros((sum(t.num_rows for t in tables), len(features.categorical)), np.int64)
    for j in range(len(features.categorical)):
        values = np.concatenate([r[j] for r in raw]) if raw else np.array([], dtype=object)
        # None sorts apart from every value: its own code.
        keys = np.array([b'\x00missing' if v is None else (v if isinstance(v, bytes) else str(v).encode())
                         for v in values], dtype=object)
        codes[:, j] = np.unique(keys, return_inverse=True)[1].reshape(-1) if len(keys) else []
    prediction = [_firsts(t, prediction_key, True) for t in tables]
    outlier = [_firsts(t, outlier_key, True) if outlier_key else np.full(t.num_rows, np.nan) for t in tables]

    def joined(parts, empty):
        return np.concatenate(parts) if parts else empty
    n_numeric = len(features.numeric)
    return _Rows(joined(callers, np.array([], dtype=object)), joined(ids, np.array([], dtype=object)),
                 joined(served, np.array([])), joined(index, np.array([])),
                 joined(numeric, np.zeros((0, n_numeric))), codes, joined(prediction, np.array([])),
                 joined(outlier, np.array([])))


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, quantiles) -> np.ndarray:
    order = np.argsort(values, kind='stable')
    values, weights = values[order], weights[order]
    cumulative = (np.cumsum(weights) - 0.5 * weights) / np.sum(weights)
    return np.interp(quantiles, cumulative, values)


def _spreads(numeric: np.ndarray, callers: np.ndarray) -> np.ndarray:
    """Each numeric feature's spread over the window: its interquartile range, every caller's
    queries weighted alike (so that one caller sending most of the traffic, a prober or a flood,
    does not set the scale everyone is measured in); where that is 0 (a feature most queries share
    one value of), its standard deviation; else 1."""
    _, caller_index, counts = np.unique(callers.astype(str), return_inverse=True, return_counts=True)
    weights = 1.0 / counts[caller_index.reshape(-1)]
    spreads = np.ones(numeric.shape[1])
    for j in range(numeric.shape[1]):
        present = np.isfinite(numeric[:, j])
        values = numeric[present, j]
        if not len(values):
            continue
        q1, q3 = _weighted_quantiles(values, weights[present], [0.25, 0.75])
        spread = q3 - q1 if q3 > q1 else float(np.std(values))
        spreads[j] = spread if spread > 0 and math.isfinite(spread) else 1.0
    return spreads


# -- distances ---------------------------------------------------------------------------------------------

def _terms(a_numeric, b_numeric, a_codes, b_codes) -> np.ndarray:
    """Sum of per-feature terms between rows of a and rows of b (broadcast)."""
    with np.errstate(invalid='ignore'):
        diff = np.abs(a_numeric - b_numeric)
    missing_a, missing_b = np.isnan(a_numeric), np.isnan(b_numeric)
    diff = np.where(missing_a | missing_b, (missing_a != missing_b).astype(float), np.minimum(diff, MAX_TERM))
    return diff.sum(axis=-1) + (a_codes != b_codes).sum(axis=-1)


def successive_distances(numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The distance of each query to the one before (n - 1 values); numeric already in spreads."""
    width = numeric.shape[1] + codes.shape[1]
    if len(numeric) < 2 or not width:
        return np.zeros(max(len(numeric) - 1, 0))
    return _terms(numeric[1:], numeric[:-1], codes[1:], codes[:-1]) / width


def pairwise_distances(numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[n, n] distances between queries, built a feature at a time (memory n² floats, not n² × features)."""
    n = len(numeric)
    width = numeric.shape[1] + codes.shape[1]
    total = np.zeros((n, n), np.float32)
    for j in range(numeric.shape[1]):
        column = numeric[:, j].astype(np.float32)
        missing = np.isnan(column)
        column = np.where(missing, np.float32(0), column)
        term = np.abs(column[:, None] - column[None, :])
        np.minimum(term, np.float32(MAX_TERM), out=term)
        if missing.any():  # as `_terms`: missing on one side 1, on both 0
            present = ~missing
            term *= present[:, None] & present[None, :]
            term += missing[:, None] != missing[None, :]
        total += term
    for j in range(codes.shape[1]):
        total += codes[:, j][:, None] != codes[:, j][None, :]
    return total / max(width, 1)


def prada_distances(distances: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """PRADA's set D (Juuti et al. 2019, Algorithm 1) for queries in the order sent, given their
    pairwise `distances` and predicted `classes`: each query's minimum distance to its class's
    growing set; a query joins that set when its distance exceeds the class's threshold, which
    rises to the mean less the standard deviation of the set's own distances."""
    grown: Dict[int, List[int]] = {}
    kept: Dict[int, List[float]] = {}
    thresholds: Dict[int, float] = {}
    found = []
    for i, c in enumerate(classes.tolist()):
        members = grown.get(c)
        if not members:
            grown[c], kept[c], thresholds[c] = [i], [], 0.0
            continue
        nearest = float(distances[i, members].min())
        found.append(nearest)
        if nearest > thresholds[c]:
            members.append(i)
            kept[c].append(nearest)
            thresholds[c] = max(thresholds[c], float(np.mean(kept[c]) - np.std(kept[c])))
    return np.array(found)


def shapiro_w(values: np.ndarray) -> float:
    """Shapiro-Wilk W; 0 for values that are (nearly) all equal, where W is undefined: no crowd's
    queries sit at one distance from each other, a machine's steps do."""
    from scipy import stats
    if len(values) < 3:
        return float('nan')
    scale = max(float(np.median(np.abs(values))), 1e-12)
    if float(np.ptp(values)) <= 1e-6 * scale or float(np.ptp(values)) == 0.0:
        return 0.0
    with warnings.catch_warnings():  # above 5000 values scipy warns its p-value is approximate; W is not used as one
        warnings.simplefilter('ignore')
        return float(stats.shapiro(values).statistic)


def _binomial_excess(count: int, n: int, crowd_share: Optional[float], ratio: float, significance: float,
                     floor: float = 0.0) -> bool:
    """Whether `count` of `n` is far above `crowd_share`: `ratio` times it (and at least `floor`),
    and improbable under it (one-sided binomial test)."""
    from scipy import stats
    if crowd_share is None or not n:
        return False
    share = count / n
    if share < max(ratio * crowd_share, floor) or share == 0:
        return False
    if crowd_share <= 0:
        return True  # the crowd never does it; the caller does, at least `floor` of the time
    return bool(stats.binomtest(count, n, min(crowd_share, 1.0), alternative='greater').pvalue < significance)


# -- the assessment ------------------------------------------------------------------------------------------

def assess(tables: Union[pa.Table, Sequence[pa.Table]], features: Features, prediction_key: str,
           outlier_key: Optional[str] = None, window_seconds: Optional[float] = None,
           thresholds: Thresholds = Thresholds()) -> List[CallerFinding]:
    """One finding per caller in the window's logged examples (`tables`: one, or one per version,
    as `request_logs.read_by_version` gives them), flagged ones first, then by examples.

    `window_seconds` turns counts into rates (default: the span the examples were served over)."""
    if isinstance(tables, pa.Table):
        tables = [tables]
    rows = _read(tables, features, prediction_key, outlier_key)
    n = len(rows.callers)
    if not n:
        return []
    if window_seconds is None:
        window_seconds = float(np.nanmax(rows.served) - np.nanmin(rows.served)) / 1e6 if n > 1 else 0.0
    window_seconds = max(window_seconds, 1e-9)
    # Features with no value in the window (columns a client never sends) say nothing.
    keep = ~np.all(np.isnan(rows.numeric), axis=0) if rows.numeric.size else np.zeros(0, bool)
    numeric = rows.numeric[:, keep] / _spreads(rows.numeric[:, keep], rows.callers) if keep.any() \
        else np.zeros((n, 0))
    codes = rows.categorical

    near_boundary = np.abs(rows.prediction - thresholds.decision_threshold) <= thresholds.boundary_margin
    has_prediction = np.isfinite(rows.prediction)
    has_outlier = np.isfinite(rows.outlier)
    totals = {'boundary': (int(np.sum(near_boundary & has_prediction)), int(np.sum(has_prediction))),
              'outlier': (int(np.nansum(rows.outlier[has_outlier])), int(np.sum(has_outlier)))}

    findings = []
    for caller in sorted(set(rows.callers.tolist())):
        mine = np.flatnonzero(rows.callers == caller)
        mine = mine[np.lexsort((rows.index[mine], rows.served[mine]))]  # as sent: by time, then within a request
        findings.append(_assess_one(caller, mine, rows, numeric, codes, near_boundary, has_prediction, has_outlier,
                                    totals, window_seconds, thresholds))
    return sorted(findings, key=lambda f: (not f.flagged, -f.examples, f.caller))


def _crowd_share(total: Tuple[int, int], own_count: int, own_n: int) -> Optional[float]:
    """The share among everyone else (None when no one else sent any)."""
    count, n = total[0] - own_count, total[1] - own_n
    return count / n if n > 0 else None


def _assess_one(caller, mine, rows, numeric, codes, near_boundary, has_prediction, has_outlier, totals,
                window_seconds, t: Thresholds) -> CallerFinding:
    examples = len(mine)
    requests = len(set(rows.request_ids[mine].tolist()))
    enough = examples >= t.min_queries
    reasons = []

    # Outliers, against everyone else.
    flags = rows.outlier[mine][has_outlier[mine]]
    outlier_share = crowd_outliers = None
    if len(flags):
        outlier_share = float(np.mean(flags))
        crowd_outliers = _crowd_share(totals['outlier'], int(np.sum(flags)), len(flags))
        if enough and _binomial_excess(int(np.sum(flags)), len(flags), crowd_outliers, t.share_ratio, t.significance,
                                       t.min_outlier_share):
            reasons.append(OUTLIERS)

    # Near-duplicates: each query against the one before.
    successive = successive_distances(numeric[mine], codes[mine])
    duplicate_share = float(np.mean(successive <= t.duplicate_distance)) if len(successive) else None
    if enough and duplicate_share is not None and duplicate_share >= t.max_duplicate_share:
        reasons.append(NEAR_DUPLICATES)

    # PRADA on the latest queries.
    w, count = None, 0
    if enough:
        latest = mine[-t.max_queries:]
        predictions = rows.prediction[latest]
        classes = np.where(np.isfinite(predictions), (predictions >= t.decision_threshold).astype(int), -1)
        found = prada_distances(pairwise_distances(numeric[latest], codes[latest]), classes)
        count = len(found)
        if count >= t.min_queries:
            w = shapiro_w(found)
            if w < t.shapiro_delta:
                reasons.append(PROBING)

    # On the decision boundary, against everyone else.
    predicted = has_prediction[mine]
    near_share = crowd_near = None
    if predicted.any():
        on_boundary = int(np.sum(near_boundary[mine] & predicted))
        near_share = on_boundary / int(predicted.sum())
        crowd_near = _crowd_share(totals['boundary'], on_boundary, int(predicted.sum()))
        if enough and _binomial_excess(on_boundary, int(predicted.sum()), crowd_near, t.share_ratio, t.significance):
            reasons.append(NEAR_THRESHOLD)

    return CallerFinding(caller, requests, examples, requests / window_seconds, examples / window_seconds,
                         outlier_share, crowd_outliers, duplicate_share, w, count, near_share, crowd_near,
                         tuple(r for r in REASONS if r in reasons))


# -- what the monitor does with them -------------------------------------------------------------------------

def abuse_alerts(findings: Sequence[CallerFinding], model_version: Optional[int] = None) -> List[Dict]:
    """The flagged callers' alerts, as recorded (alerts.Alert.record())."""
    return [f.alert(model_version).record() for f in findings if f.flagged]


def add_gauges(registry, findings: Sequence[CallerFinding], max_named: int = 20) -> None:
    """The findings as Prometheus gauges in `registry` (prometheus_client):

    - taxi_monitor_callers, taxi_monitor_abusive_callers: counts, unlabelled;
    - taxi_monitor_caller_flagged{caller, reason}: 1 per reason of a flagged caller;
    - taxi_monitor_caller_request_rate{caller}, ..._example_rate, ..._outlier_share,
      ..._near_duplicate_share, ..._shapiro_w, ..._near_threshold_share: per named caller.

    Callers are named in labels only for the flagged ones and then the busiest, `max_named` in
    all: a caller may be a client address, and every address would otherwise be a new series."""
    import prometheus_client as prom
    prom.Gauge('taxi_monitor_callers', 'Callers in the window', registry=registry).set(len(findings))
    prom.Gauge('taxi_monitor_abusive_callers', 'Callers flagged as probing or abusing the model',
               registry=registry).set(sum(f.flagged for f in findings))
    flagged = prom.Gauge('taxi_monitor_caller_flagged', 'A flagged caller, by reason', ['caller', 'reason'],
                         registry=registry)
    per_caller = {name: prom.Gauge(f'taxi_monitor_caller_{name}', text, ['caller'], registry=registry)
                  for name, text in (('request_rate', 'Requests per second over the window'),
                                     ('example_rate', 'Examples per second over the window'),
                                     ('outlier_share', 'Share of the caller\'s examples flagged as outliers'),
                                     ('near_duplicate_share', 'Share of successive queries that are near-duplicates'),
                                     ('shapiro_w', 'Shapiro-Wilk W of the caller\'s PRADA distances'),
                                     ('near_threshold_share', 'Share of predictions near the decision threshold'))}
    named = sorted(findings, key=lambda f: (not f.flagged, -f.request_rate, f.caller))[:max_named]
    for finding in named:
        for reason in finding.reasons:
            flagged.labels(finding.caller, reason).set(1)
        for name, gauge in per_caller.items():
            value = getattr(finding, name)
            if value is not None and math.isfinite(value):
                gauge.labels(finding.caller).set(value)


def describe(finding: CallerFinding) -> str:
    """One line for the monitor's output."""
    parts = [f'{finding.requests} requests, {finding.examples} examples ({finding.request_rate:.3g} req/s)']
    for label, value in (('outliers', finding.outlier_share), ('near-duplicates', finding.near_duplicate_share),
                         ('near the threshold', finding.near_threshold_share)):
        if value is not None:
            parts.append(f'{label} {value:.1%}')
    if finding.shapiro_w is not None:
        parts.append(f'PRADA W {finding.shapiro_w:.3f} over {finding.distances}')
    verdict = f': {", ".join(finding.reasons)}' if finding.reasons else ''
    return f'caller {finding.caller or "(unknown)"}: ' + ', '.join(parts) + verdict
