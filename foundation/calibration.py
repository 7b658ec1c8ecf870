"""The calibration a model carries (`model_files.CALIBRATION_FILE`): what its tip probability means on
held-out data, fitted at training time and read back by the monitor, which cannot import the model's code.

It is plain data: the breakpoints of an isotonic regression of the label on the model's probability over
the eval split (pool adjacent violators, each piece's rate under Jeffreys' prior; between breakpoints the
calibrated value is interpolated linearly, outside them clipped, as scikit-learn's IsotonicRegression
predicts), the eval split's label rate and size, bootstrap refits of the same regression (how far the
calibration could be off, fitted on a finite split), its reliability there (expected calibration error
before and after, the after cross-fitted so it is not judged on the rows it was fitted to), and the
reference values of the estimated and realised accuracy and ROC AUC on eval, with the per-example
spreads their sampling errors scale from. It may also carry the training reference for attribution
drift: the mean |attribution| per feature from the model's `explain` signature on a sample of the eval
split.

Here too: the expected metrics calibrated probabilities imply (confidence-based performance estimation,
CBPE, as NannyML defines it, docs/how_it_works/performance_estimation.rst): expected accuracy is the mean
probability that each decision is right, and expected ROC AUC is taken from the expected confusion matrix
at every threshold. Training computes them for the reference values, the monitor for each window
(monitoring/performance_estimation.py). numpy and scikit-learn, which the Trainer has loaded already
(TFX imports it), so fitting costs the Trainer no import.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from sklearn import isotonic

# The model's decision: a big tipper when its probability is at least this.
THRESHOLD = 0.5
# Equal-width probability bins of the expected calibration error (as monitoring/live_metrics.py bins).
ECE_BINS = 10
# Bootstrap refits of the calibration (eval examples drawn with replacement, each piece's rate drawn
# from its posterior): how far the calibration itself could be off, having been fitted on a finite eval
# split, for the estimate's interval.
REPLICATES = 30
FORMAT = 1

Breakpoints = Tuple[Tuple[float, ...], Tuple[float, ...]]


def isotonic_breakpoints(scores: np.ndarray, labels: np.ndarray,
                         rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y): the non-decreasing fit of `labels` on `scores` (scikit-learn's isotonic regression, pool
    adjacent violators) as the breakpoints it keeps; `np.interp(s, x, y)` predicts it, as scikit-learn
    does: linearly between breakpoints, clipped outside.

    Each constant piece's rate, k positives of w, is taken as its posterior under Jeffreys' prior,
    Beta(k + 1/2, w - k + 1/2): its mean, or with `rng` a draw from it. A piece without a positive
    (cash trips: no tip recorded) then says "rarely", not "never": a probability of exactly 0 would
    claim a certainty no finite split gives, and every positive there lowers the AUC by about
    1 / positives, which an estimate at 0 could not foresee."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if not len(scores):
        raise ValueError('no examples to calibrate on')
    fitted = isotonic.IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds='clip').fit(scores, labels)
    x, y = fitted.X_thresholds_, fitted.y_thresholds_
    # Every example lies on a constant piece (the breakpoints are its ends): the pieces are the levels.
    levels, piece = np.unique(np.interp(scores, x, y), return_inverse=True)
    size, positives = np.bincount(piece).astype(np.float64), np.bincount(piece, weights=labels)
    alpha, beta = positives + 0.5, size - positives + 0.5
    rates = alpha / (alpha + beta) if rng is None else rng.beta(alpha, beta)
    # The prior (or the draw) may break the order of neighbouring pieces of different sizes: pooled again.
    rates = isotonic.IsotonicRegression().fit(levels, rates, sample_weight=size).predict(levels)
    return x, np.interp(y, levels, rates)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """The example-weighted gap between mean probability and observed rate, per equal-width bin."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    which = np.clip((probabilities * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, probabilities, bins) - np.bincount(which, labels, bins))
    return float(gap.sum() / max(count.sum(), 1))


def _weighted_auc(scores: np.ndarray, positive: np.ndarray) -> Optional[float]:
    """ROC AUC of `scores` where example i is positive with weight positive[i] and negative with
    1 - positive[i]: pairs ranked right count 1, tied pairs 1/2, an example never paired with itself.
    With 0/1 weights it is the realised AUC; with calibrated probabilities the expected confusion
    matrix's (CBPE). None when there is no pair of a positive and a negative."""
    order = np.argsort(scores, kind='stable')
    scores, positive = scores[order], positive[order]
    negative = 1.0 - positive
    _, starts = np.unique(scores, return_index=True)
    group_positive = np.add.reduceat(positive, starts)
    group_negative = np.add.reduceat(negative, starts)
    group_self = np.add.reduceat(positive * negative, starts)
    negatives_below = np.concatenate([[0.0], np.cumsum(group_negative)[:-1]])
    pairs = positive.sum() * negative.sum() - (positive * negative).sum()
    if pairs <= 0:
        return None
    concordant = (group_positive * negatives_below).sum() + 0.5 * (group_positive * group_negative - group_self).sum()
    return float(concordant / pairs)


def decisions(scores: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    return np.asarray(scores, dtype=np.float64) >= threshold


def expected_accuracy(scores: np.ndarray, calibrated: np.ndarray, threshold: float = THRESHOLD) -> float:
    """CBPE's accuracy: the mean probability that each decision (taken on the model's own score) is right."""
    return float(np.where(decisions(scores, threshold), calibrated, 1.0 - calibrated).mean())


def expected_auc(scores: np.ndarray, calibrated: np.ndarray) -> Optional[float]:
    """CBPE's ROC AUC: the model's scores ranked, each example a positive with its calibrated probability.
    Ranked by the model's own score, not the calibrated one: an isotonic fit ties whole ranges of
    scores, and the realised AUC it is compared with ranks the scores the model returned."""
    return _weighted_auc(np.asarray(scores, dtype=np.float64), np.asarray(calibrated, dtype=np.float64))


def realised_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float = THRESHOLD) -> float:
    return float((decisions(scores, threshold) == (np.asarray(labels) == 1)).mean())


def realised_auc(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    return _weighted_auc(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64))


def auc_standard_error(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """DeLong's standard error of the realised AUC (placement values), None with fewer than two of a class."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    positive, negative = scores[labels == 1], scores[labels == 0]
    if len(positive) < 2 or len(negative) < 2:
        return None
    # How each positive ranks among the negatives, and each negative among the positives (ties 1/2).
    def below(values, among):
        ordered = np.sort(among)
        return (np.searchsorted(ordered, values, 'left') + np.searchsorted(ordered, values, 'right')) / (2 * len(among))
    v10, v01 = below(positive, negative), 1 - below(negative, positive)
    return math.sqrt(max(np.var(v10, ddof=1) / len(positive) + np.var(v01, ddof=1) / len(negative), 0.0))


@dataclasses.dataclass(frozen=True)
class Reference:
    """Estimated (from cross-fitted calibrated probabilities) and realised metrics on the eval split, and
    the spreads the sampling error of a window of n examples scales from (as NannyML's: a reference
    standard deviation over sqrt(n))."""

    estimated_accuracy: float
    realised_accuracy: float
    estimated_auc: Optional[float]
    realised_auc: Optional[float]
    # Per-example standard deviation of "the decision was right" on eval: accuracy's sampling error is it / sqrt(n).
    accuracy_std: float
    # The AUC's standard error on eval times sqrt(eval examples): its sampling error at n is it / sqrt(n).
    auc_std: Optional[float]


@dataclasses.dataclass(frozen=True)
class AttributionReference:
    """Mean |attribution| per feature of the model's explanation signature on a sample of the eval split."""

    signature: str
    # feature -> the signature's output holding its attribution.
    outputs: Dict[str, str]
    mean_abs: Dict[str, float]
    examples: int
    unit: str = 'log-odds'


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The calibration file's content, typed."""

    breakpoints: Breakpoints
    examples: int
    positives: int
    threshold: float
    ece_before: float
    ece_after: float
    reference: Reference
    attributions: Optional[AttributionReference] = None
    # Bootstrap refits (REPLICATES of them): the calibration as another draw of the eval split would have it.
    replicates: Tuple[Breakpoints, ...] = ()
    # Seconds the Trainer spent on all this (what it costs training).
    seconds: Optional[float] = None
    method: str = ('isotonic regression (pool adjacent violators) of the label on the model probability, '
                   'fitted on the eval split')

    @property
    def label_rate(self) -> float:
        return self.positives / self.examples

    def apply(self, scores: np.ndarray, replicate: Optional[int] = None) -> np.ndarray:
        """Calibrated probabilities of the model's `scores` (by a bootstrap refit, with `replicate`)."""
        x, y = self.breakpoints if replicate is None else self.replicates[replicate]
        return np.interp(np.asarray(scores, dtype=np.float64), x, y)

    def to_json(self) -> str:
        document = dataclasses.asdict(self)
        document['breakpoints'] = _breakpoints_record(self.breakpoints)
        document['replicates'] = [_breakpoints_record(r) for r in self.replicates]
        document['label_rate'] = self.label_rate
        document['format'] = FORMAT
        return json.dumps(document, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> 'Calibration':
        document = json.loads(text)
        breakpoints = document['breakpoints']
        attributions = document.get('attributions')
        return cls(breakpoints=_breakpoints(breakpoints),
                   replicates=tuple(_breakpoints(r) for r in document.get('replicates', ())),
                   examples=int(document['examples']), positives=int(document['positives']),
                   threshold=float(document['threshold']), ece_before=float(document['ece_before']),
                   ece_after=float(document['ece_after']), reference=Reference(**document['reference']),
                   attributions=AttributionReference(**attributions) if attributions else None,
                   seconds=document.get('seconds'), method=document.get('method', cls.method))


def _breakpoints_record(breakpoints: Breakpoints) -> Dict[str, List[float]]:
    return {'probability': [float(v) for v in breakpoints[0]], 'calibrated': [float(v) for v in breakpoints[1]]}


def _breakpoints(record: Dict[str, List[float]]) -> Breakpoints:
    return tuple(float(v) for v in record['probability']), tuple(float(v) for v in record['calibrated'])


def _folds(labels: np.ndarray, folds: int, seed: int) -> List[np.ndarray]:
    """Stratified folds: each class shuffled and dealt round-robin."""
    rng = np.random.default_rng(seed)
    which = np.empty(len(labels), dtype=int)
    for value in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == value))
        which[members] = np.arange(len(members)) % folds
    return [np.flatnonzero(which == k) for k in range(folds)]


def _as_tuples(breakpoints) -> Breakpoints:
    return tuple(float(v) for v in breakpoints[0]), tuple(float(v) for v in breakpoints[1])


def fit(scores: Sequence[float], labels: Sequence[int], threshold: float = THRESHOLD, folds: int = 2,
        seed: int = 0, attributions: Optional[AttributionReference] = None,
        replicates: int = REPLICATES) -> Calibration:
    """The calibration of the model's `scores` on held-out 0/1 `labels` (the eval split).

    The reliability after calibration and the estimated reference metrics come from cross-fitted
    probabilities (each fold calibrated by a fit on the others), as NannyML judges whether calibrating
    helps: judged on the rows it was fitted to, isotonic regression would look perfect."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(int)
    if len(scores) != len(labels) or not len(scores):
        raise ValueError(f'{len(scores)} scores and {len(labels)} labels: need as many, and some')
    held_out = np.empty(len(scores))
    for part in _folds(labels, folds, seed):
        rest = np.setdiff1d(np.arange(len(scores)), part)
        x, y = isotonic_breakpoints(scores[rest], labels[rest]) if len(rest) else isotonic_breakpoints(scores, labels)
        held_out[part] = np.interp(scores[part], x, y)
    right = decisions(scores, threshold) == (labels == 1)
    se = auc_standard_error(scores, labels)
    reference = Reference(
        estimated_accuracy=expected_accuracy(scores, held_out, threshold),
        realised_accuracy=float(right.mean()),
        estimated_auc=expected_auc(scores, held_out), realised_auc=realised_auc(scores, labels),
        accuracy_std=float(right.std()), auc_std=None if se is None else se * math.sqrt(len(scores)))
    rng = np.random.default_rng(seed)
    refits = []
    for _ in range(replicates):
        drawn = rng.integers(0, len(scores), len(scores))
        refits.append(_as_tuples(isotonic_breakpoints(scores[drawn], labels[drawn], rng)))
    return Calibration(breakpoints=_as_tuples(isotonic_breakpoints(scores, labels)), replicates=tuple(refits),
                       examples=len(scores), positives=int(labels.sum()), threshold=threshold,
                       ece_before=expected_calibration_error(scores, labels),
                       ece_after=expected_calibration_error(held_out, labels), reference=reference,
                       attributions=attributions)
