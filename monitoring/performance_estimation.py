"""How good a served version is on a window's traffic before its labels arrive: confidence-based
performance estimation (CBPE), as NannyML does it (docs/how_it_works/performance_estimation.rst,
"Confidence-based Performance Estimation"; its sampling error in docs/how_it_works/estimation_of_standard_error).

The version carries a calibration of its probability, fitted on its eval split (foundation/calibration.py).
Calibrated, a probability p says the example is a positive with probability p, so:

- accuracy at the model's threshold (0.5) is expected to be the mean of p where the model said yes
  and of 1 - p where it said no;
- ROC AUC is taken from the expected confusion matrix at every threshold: each example counts as a
  positive with weight p and as a negative with 1 - p, ranked by the model's own score.

Beside each point estimate, two spreads:

- an interval: labels drawn as Bernoulli(p) many times (SIMULATIONS), p by one of the calibration's
  bootstrap refits in turn (the calibration was fitted on a finite eval split: how far it could be off
  is part of the spread), and the metric realised on each draw; its 2.5% and 97.5% quantiles are where
  the realised value will fall 95% of the time if the calibration holds on this traffic (covariate
  shift keeps it; concept drift, P(label | features) moving, breaks it, which is what comparing with
  the realised value shows);
- NannyML's sampling error: the reference (eval) standard deviation over sqrt(n), for accuracy that
  of "the decision was right" per example, for AUC its standard error on eval scaled the same way.

Once labels arrive, `side_by_side` sets the estimate for the labelled examples next to the realised
value on them. Plain logic: numpy only; the model's scores and labels come from the caller.
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Tuple

import numpy as np

from foundation import calibration as model_calibration

SIMULATIONS = 1000
CONFIDENCE = 0.95
# Label draws per estimate: SIMULATIONS up to SIMULATED_CELLS / SIMULATIONS examples, fewer beyond (a
# window's interval is then narrow, and its quantiles need fewer draws), never under MIN_SIMULATIONS.
SIMULATED_CELLS = 100_000_000
MIN_SIMULATIONS = 200
# Label draws held in memory at once: simulations per chunk times examples.
_CELLS = 20_000_000
ACCURACY, AUC = 'accuracy', 'auc'


@dataclasses.dataclass(frozen=True)
class MetricEstimate:
    metric: str
    # CBPE's point estimate; None for AUC when the calibrated probabilities allow no positive-negative pair.
    value: Optional[float]
    # Where the realised value falls with probability CONFIDENCE if the calibration holds.
    interval: Optional[Tuple[float, float]]
    # NannyML's sampling error: the eval split's per-example spread over sqrt(n).
    sampling_error: Optional[float]
    # The realised value on the eval split, where the model was judged fit to push.
    reference: Optional[float]


@dataclasses.dataclass(frozen=True)
class Estimate:
    examples: int
    # The mean calibrated probability: the label rate expected of this traffic.
    expected_label_rate: float
    accuracy: MetricEstimate
    auc: MetricEstimate

    @property
    def metrics(self) -> Tuple[MetricEstimate, MetricEstimate]:
        return self.accuracy, self.auc

    def record(self) -> dict:
        """As a JSON object (the monitor's findings)."""
        return {'examples': self.examples, 'expected_label_rate': round(self.expected_label_rate, 4),
                **{m.metric: {'estimated': _rounded(m.value), 'interval': _rounded(m.interval),
                              'sampling_error': _rounded(m.sampling_error), 'reference': _rounded(m.reference)}
                   for m in self.metrics}}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A metric's estimate and its realised value on the same labelled examples."""

    metric: str
    estimated: Optional[float]
    interval: Optional[Tuple[float, float]]
    realised: Optional[float]

    @property
    def within(self) -> Optional[bool]:
        if self.realised is None or self.interval is None:
            return None
        return self.interval[0] <= self.realised <= self.interval[1]

    @property
    def below(self) -> bool:
        """The realised value fell below the interval: worse than the calibration allows."""
        return self.realised is not None and self.interval is not None and self.realised < self.interval[0]

    def record(self) -> dict:
        return {'metric': self.metric, 'estimated': _rounded(self.estimated), 'interval': _rounded(self.interval),
                'realised': _rounded(self.realised), 'within': self.within}


def _rounded(value, digits: int = 4):
    if value is None:
        return None
    if isinstance(value, tuple):
        return [round(float(v), digits) for v in value]
    return round(float(value), digits)


def _midranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (starts + (counts + 1) / 2.0)[inverse]


def simulated(scores: np.ndarray, calibration: model_calibration.Calibration, simulations: int = SIMULATIONS,
              seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(accuracy, AUC) realised on `simulations` draws of labels ~ Bernoulli(calibrated probability), the
    draws shared out among the calibration's bootstrap refits (the calibration itself where it has none),
    so the spread holds both the labels' chance and the calibration's own uncertainty. AUC is NaN on a
    draw with a single class."""
    n = len(scores)
    rng = np.random.default_rng(seed)
    said_yes = model_calibration.decisions(scores, calibration.threshold).astype(np.float64)
    ranks = _midranks(scores)
    refits = list(range(len(calibration.replicates))) or [None]
    accuracy, auc = [], []
    chunk = max(1, _CELLS // max(n, 1))
    for i, refit in enumerate(refits):
        calibrated = calibration.apply(scores, refit)
        draws_here = simulations // len(refits) + (i < simulations % len(refits))
        for start in range(0, draws_here, chunk):
            draws = (rng.random((min(chunk, draws_here - start), n)) < calibrated).astype(np.float64)
            positives = draws.sum(axis=1)
            accuracy.append((n - said_yes.sum() - positives + 2 * draws @ said_yes) / n)
            with np.errstate(divide='ignore', invalid='ignore'):
                auc.append((draws @ ranks - positives * (positives + 1) / 2) / (positives * (n - positives)))
    return np.concatenate(accuracy), np.concatenate(auc)


def _interval(values: np.ndarray, confidence: float) -> Optional[Tuple[float, float]]:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def simulations_for(examples: int) -> int:
    return int(min(SIMULATIONS, max(MIN_SIMULATIONS, SIMULATED_CELLS // max(examples, 1))))


def estimate(scores, calibration: model_calibration.Calibration, simulations: Optional[int] = None,
             confidence: float = CONFIDENCE, seed: int = 0) -> Estimate:
    """The estimated accuracy and ROC AUC of the model's `scores` (probabilities it returned, at least
    one); `simulations` label draws for the interval (by default `simulations_for` their number)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(scores):
        raise ValueError('no scores to estimate performance from')
    simulations = simulations or simulations_for(len(scores))
    calibrated = calibration.apply(scores)
    accuracies, aucs = simulated(scores, calibration, simulations, seed)
    reference = calibration.reference
    root = math.sqrt(len(scores))
    expected = model_calibration.expected_accuracy(scores, calibrated, calibration.threshold)
    return Estimate(
        examples=len(scores), expected_label_rate=float(calibrated.mean()),
        accuracy=MetricEstimate(ACCURACY, expected, _interval(accuracies, confidence),
                                reference.accuracy_std / root, reference.realised_accuracy),
        auc=MetricEstimate(AUC, model_calibration.expected_auc(scores, calibrated), _interval(aucs, confidence),
                           None if reference.auc_std is None else reference.auc_std / root, reference.realised_auc))


def realised(scores, labels, threshold: float = model_calibration.THRESHOLD) -> Tuple[float, Optional[float]]:
    """(accuracy, AUC or None with a single class) of `scores` against 0/1 `labels`."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    return (model_calibration.realised_accuracy(scores, labels, threshold),
            model_calibration.realised_auc(scores, labels))


def side_by_side(scores, labels, calibration: model_calibration.Calibration, simulations: Optional[int] = None,
                 confidence: float = CONFIDENCE, seed: int = 0) -> Tuple[Estimate, List[Comparison]]:
    """The estimate for the labelled examples, and per metric the estimate next to the realised value."""
    found = estimate(scores, calibration, simulations, confidence, seed)
    accuracy, auc = realised(scores, labels, calibration.threshold)
    return found, [Comparison(ACCURACY, found.accuracy.value, found.accuracy.interval, accuracy),
                   Comparison(AUC, found.auc.value, found.auc.interval, auc)]


def below_minimum(found: Estimate, min_accuracy: float, min_auc: float) -> List[MetricEstimate]:
    """The metrics whose estimate is below its minimum."""
    minimum = {ACCURACY: min_accuracy, AUC: min_auc}
    return [m for m in found.metrics if m.value is not None and m.value < minimum[m.metric]]
