"""How good a served version is on the traffic it answered, once ground truth came back.

Labels (from feedback) against the probabilities the version returned (from
the request log): AUC and accuracy with 95% confidence intervals, and
calibration (mean predicted against observed rate, per predicted-probability
decile and as the expected calibration error). Small samples are stated, not
hidden: a metric judged on fewer examples than the minimum raises no alert,
and AUC none unless each class has MIN_PER_CLASS examples.
"""

import dataclasses
import math
from typing import List, Optional, Tuple

import numpy as np
from scipy import stats
from sklearn import metrics

Z_95 = stats.norm.ppf(0.975)
CALIBRATION_BINS = 10
# Below this many examples of either class, AUC is shown but not judged.
MIN_PER_CLASS = 10


@dataclasses.dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    examples: int
    mean_predicted: float
    observed_rate: float


@dataclasses.dataclass(frozen=True)
class LiveMetrics:
    examples: int
    positives: int
    accuracy: float
    accuracy_ci: Tuple[float, float]
    # None when only one class came back: AUC is undefined then.
    auc: Optional[float]
    auc_ci: Optional[Tuple[float, float]]
    mean_predicted: float
    observed_rate: float
    # Expected calibration error: the example-weighted gap between predicted and observed per bin.
    calibration_error: float
    calibration: List[CalibrationBin]
    # DeLong's standard error of the AUC (None with the AUC): what comparing two versions needs.
    auc_se: Optional[float] = None


def _auc_interval(labels: np.ndarray, scores: np.ndarray) -> Tuple[float, float, Optional[float]]:
    """95% interval and standard error from DeLong's variance of the AUC (Biometrics 44, 1988), by
    midranks (Sun and Xu, 2014). With fewer than two examples of a class the variance is unknown:
    (0, 1, None)."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    m, n = len(positive), len(negative)
    if m < 2 or n < 2:
        return 0.0, 1.0, None
    overall = stats.rankdata(np.concatenate([positive, negative]))
    auc = (overall[:m].sum() - m * (m + 1) / 2) / (m * n)
    # Placement values: how each positive ranks among negatives, and each negative among positives.
    v10 = (overall[:m] - stats.rankdata(positive)) / n
    v01 = 1 - (overall[m:] - stats.rankdata(negative)) / m
    se = math.sqrt(max(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n, 0.0))
    return max(0.0, auc - Z_95 * se), min(1.0, auc + Z_95 * se), se


def _calibration(labels: np.ndarray, scores: np.ndarray) -> List[CalibrationBin]:
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    which = np.clip(np.searchsorted(edges, scores, side='right') - 1, 0, CALIBRATION_BINS - 1)
    bins = []
    for i in range(CALIBRATION_BINS):
        inside = which == i
        if inside.any():
            bins.append(CalibrationBin(float(edges[i]), float(edges[i + 1]), int(inside.sum()),
                                       float(scores[inside].mean()), float(labels[inside].mean())))
    return bins


def compute(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> LiveMetrics:
    """Metrics of probabilities `scores` against 0/1 `labels` (same length, at least one)."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    n, positives = len(labels), int(labels.sum())
    correct = int(((scores >= threshold) == (labels == 1)).sum())
    interval = stats.binomtest(correct, n).proportion_ci(confidence_level=0.95, method='wilson')
    auc = auc_ci = auc_se = None
    if 0 < positives < n:
        auc = float(metrics.roc_auc_score(labels, scores))
        low, high, auc_se = _auc_interval(labels, scores)
        auc_ci = (low, high)
    calibration = _calibration(labels, scores)
    error = sum(b.examples * abs(b.mean_predicted - b.observed_rate) for b in calibration) / n
    return LiveMetrics(n, positives, correct / n, (float(interval.low), float(interval.high)), auc, auc_ci,
                       float(scores.mean()), positives / n, float(error), calibration, auc_se)
