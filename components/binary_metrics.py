"""Binary classification metrics per group, vectorised, defined as TFMA 0.47 defines them.

The Evaluator's own path (components/model_evaluation.py) computes from these the metrics TFMA would, over
the whole eval split at once; plain numpy on plain arrays, no TensorFlow or TFMA. Each definition follows
TFMA's code (tensorflow_model_analysis/metrics/), so the numbers agree with TFMA's up to float summation order:

- confusion matrices at given thresholds (ConfusionMatrixAtThresholds, and Precision, Recall and
  BinaryAccuracy at their threshold, 0.5 by default): TFMA's BinaryConfusionMatrices combiner, where an
  example is predicted positive when its prediction is strictly above the threshold, a NaN prediction never
  is, and a label l counts l as a positive and 1 - l as a negative (fractional labels);
- AUC: TFMA's Riemann sum. Predictions go into a calibration histogram of 10,000 buckets
  (calibration_histogram: bucket int(p * 10000) + 1, below 0 bucket 0, from 1 up bucket 10,001), which is
  rebinned onto 10,000 thresholds (-1e-7, 1/9999, ..., 9998/9999, 1 + 1e-7: binary_confusion_matrices.
  _interpolated_thresholds, `rebin`), whose cumulative counts are the confusion matrices; the ROC curve's
  area is the sum of trapezoids between consecutive thresholds (confusion_matrix_metrics.AUC,
  summation 'interpolation'), NaN terms left out (np.nansum), so a group with one class scores 0.
"""

from __future__ import annotations

import dataclasses
from typing import List, Sequence

import numpy as np

# TFMA's defaults: calibration_histogram.DEFAULT_NUM_BUCKETS, binary_confusion_matrices._EPSILON.
NUM_BUCKETS = 10000
EPSILON = 1e-7


def _interpolated_thresholds(num_thresholds: int) -> List[float]:
    """TFMA's binary_confusion_matrices._interpolated_thresholds, computed the same way (same floats)."""
    inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    return [-EPSILON] + inner + [1.0 + EPSILON]


AUC_THRESHOLDS = _interpolated_thresholds(NUM_BUCKETS)


def _bucket_offsets() -> np.ndarray:
    """For each of the histogram's NUM_BUCKETS + 2 buckets, the threshold bucket `rebin` puts it in."""
    rebin_thresholds = np.array([t + EPSILON if t != 0 else t for t in AUC_THRESHOLDS])
    ids = np.arange(NUM_BUCKETS + 2)
    left = (ids - 1) / NUM_BUCKETS * (1.0 - 0.0) + 0.0
    left[0], left[-1] = -np.inf, np.inf
    offsets = np.searchsorted(rebin_thresholds, left, side='right') - 1
    return np.clip(offsets, 0, len(AUC_THRESHOLDS) - 1)


_OFFSETS = _bucket_offsets()


@dataclasses.dataclass(frozen=True)
class Matrices:
    """Confusion matrices of `groups` groups at `thresholds`: tp, tn, fp, fn each of shape (groups, thresholds)."""

    thresholds: List[float]
    tp: np.ndarray
    tn: np.ndarray
    fp: np.ndarray
    fn: np.ndarray


def _sums(groups: np.ndarray, num_groups: int, cells: np.ndarray, num_cells: int, weights: np.ndarray) -> np.ndarray:
    return np.bincount(groups * num_cells + cells, weights=weights,
                       minlength=num_groups * num_cells).reshape(num_groups, num_cells)


def matrices_at(groups: np.ndarray, num_groups: int, labels: np.ndarray, predictions: np.ndarray,
                weights: np.ndarray, thresholds: Sequence[float]) -> Matrices:
    """Confusion matrices per group at `thresholds` (TFMA's non-histogram combiner): predicted positive when
    prediction > threshold. `groups` holds each example's group in [0, num_groups); labels in [0, 1]."""
    positive, negative = weights * labels, weights * (1.0 - labels)
    shape = (num_groups, len(thresholds))
    tp, fp, fn, tn = (np.zeros(shape) for _ in range(4))
    for i, threshold in enumerate(thresholds):
        above = predictions > threshold
        tp[:, i] = np.bincount(groups, weights=np.where(above, positive, 0.0), minlength=num_groups)
        fp[:, i] = np.bincount(groups, weights=np.where(above, negative, 0.0), minlength=num_groups)
        fn[:, i] = np.bincount(groups, weights=np.where(above, 0.0, positive), minlength=num_groups)
        tn[:, i] = np.bincount(groups, weights=np.where(above, 0.0, negative), minlength=num_groups)
    return Matrices(list(thresholds), tp, tn, fp, fn)


def histogram_buckets(predictions: np.ndarray) -> np.ndarray:
    """Each prediction's calibration-histogram bucket, as TFMA's combiner computes it (float64)."""
    index = (predictions.astype(np.float64) - 0.0) / 1.0 * NUM_BUCKETS + 1
    with np.errstate(invalid='ignore'):
        return np.where(index < 0, 0, np.where(index >= NUM_BUCKETS + 1, NUM_BUCKETS + 1,
                                               np.trunc(np.nan_to_num(index)))).astype(np.int64)


def auc_matrices(groups: np.ndarray, num_groups: int, labels: np.ndarray, predictions: np.ndarray,
                 weights: np.ndarray) -> Matrices:
    """Confusion matrices per group at TFMA's 10,000 AUC thresholds, through its histogram and rebinning.
    Predictions must not be NaN (TFMA's histogram cannot bucket them)."""
    offsets = _OFFSETS[histogram_buckets(predictions)]
    n = len(AUC_THRESHOLDS)
    positives = _sums(groups, num_groups, offsets, n, weights * labels)
    examples = _sums(groups, num_groups, offsets, n, weights)
    negatives = examples - positives
    # tp[i]: positives in buckets i.. ; fn[i]: positives in buckets ..i-1 (TFMA's
    # _histogram_to_binary_confusion_matrices); the last threshold (1 + epsilon) has none above it.
    tp = np.cumsum(positives[:, ::-1], axis=1)[:, ::-1]
    fp = np.cumsum(negatives[:, ::-1], axis=1)[:, ::-1]
    fn = np.concatenate([np.zeros((num_groups, 1)), np.cumsum(positives, axis=1)[:, :-1]], axis=1)
    tn = np.concatenate([np.zeros((num_groups, 1)), np.cumsum(negatives, axis=1)[:, :-1]], axis=1)
    last = np.array(AUC_THRESHOLDS) >= 1.0 + EPSILON
    fn[:, last], tn[:, last] = tp[:, :1], fp[:, :1]
    tp[:, last], fp[:, last] = 0.0, 0.0
    return Matrices(list(AUC_THRESHOLDS), tp, tn, fp, fn)


def roc_auc(matrices: Matrices) -> np.ndarray:
    """Area under the ROC curve per group: TFMA's AUC with summation 'interpolation'."""
    with np.errstate(invalid='ignore', divide='ignore'):
        recall = matrices.tp / (matrices.tp + matrices.fn)
        fp_rate = matrices.fp / (matrices.fp + matrices.tn)
    heights = (recall[:, :-1] + recall[:, 1:]) / 2.0
    return np.nansum((fp_rate[:, :-1] - fp_rate[:, 1:]) * heights, axis=1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """TFMA's _divide_only_positive_denominator: NaN unless the denominator is positive."""
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def precision(m: Matrices) -> np.ndarray:
    return _ratio(m.tp, m.tp + m.fp)


def recall(m: Matrices) -> np.ndarray:
    return _ratio(m.tp, m.tp + m.fn)


def binary_accuracy(m: Matrices) -> np.ndarray:
    return _ratio(m.tp + m.tn, m.tp + m.fp + m.tn + m.fn)
