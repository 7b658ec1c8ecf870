"""Two findings that need labels, reported apart because they mean different things.

Label drift: the share of positives in the window's feedback against the label rate of the eval split
the version carries (foundation/calibration.py). A two-proportion z-test (pooled) says whether the
difference is more than chance, Newcombe's interval (hybrid score, from Wilson's intervals of each
rate; Statistics in Medicine 17, 1998, method 10) how large it is; it drifted when the test is
significant at ALPHA and the difference is at least THRESHOLD. A change in the label rate alone is not
a fault of the model: traffic of other passengers (more card payments) has more tippers, and the
estimate (monitoring/performance_estimation.py) expects that from the inputs.

Concept drift: labels no longer follow the features as they did, P(label | features) moved. Without
labels nothing shows it; with them, the realised performance falls below the interval the calibrated
estimate allows, or clearly below the reference (eval) value, while the inputs did not drift (the
caller says whether skew or drift fired: a drop under drifted inputs may be the calibration not
reaching a region training never saw, so it is reported, not called concept drift).
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from monitoring.performance_estimation import Comparison, Estimate

# The label rate drifted when it moved by at least this much (absolute) and the test says so at ALPHA.
THRESHOLD = 0.05
ALPHA = 0.01
Z_95 = 1.959963984540054
# Below the reference by more than this many sampling errors (NannyML draws its bands at 3).
REFERENCE_SIGMAS = 3.0
# Fewer labelled examples than this are reported, not judged.
MIN_EXAMPLES = 100


def _wilson(positives: int, n: int, z: float = Z_95) -> Tuple[float, float]:
    rate = positives / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@dataclasses.dataclass(frozen=True)
class LabelDrift:
    examples: int
    positives: int
    reference_rate: float
    reference_examples: int
    # Window rate minus reference rate, its 95% interval, and the test's two-sided p-value.
    difference: float
    interval: Tuple[float, float]
    p_value: float
    threshold: float
    alpha: float
    drifted: bool

    @property
    def rate(self) -> float:
        return self.positives / self.examples

    def record(self) -> dict:
        return {'labelled_examples': self.examples, 'label_rate': round(self.rate, 4),
                'reference_rate': round(self.reference_rate, 4), 'difference': round(self.difference, 4),
                'ci95': [round(v, 4) for v in self.interval], 'p_value': float(f'{self.p_value:.3g}'),
                'threshold': self.threshold}


def label_drift(labels: Sequence[int], reference_rate: float, reference_examples: int,
                threshold: float = THRESHOLD, alpha: float = ALPHA,
                min_examples: int = MIN_EXAMPLES) -> Optional[LabelDrift]:
    """The window's 0/1 `labels` against the reference rate of `reference_examples` eval examples;
    None with fewer than `min_examples` labels."""
    labels = np.asarray(labels).reshape(-1)
    n, m = len(labels), int(reference_examples)
    if n < min_examples or m < 1:
        return None
    positives = int((labels == 1).sum())
    reference_positives = reference_rate * m
    rate = positives / n
    pooled = (positives + reference_positives) / (n + m)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    difference = rate - reference_rate
    p_value = 1.0 if spread == 0 else math.erfc(abs(difference) / spread / math.sqrt(2))
    low1, high1 = _wilson(positives, n)
    low2, high2 = _wilson(round(reference_positives), m)
    interval = (difference - math.sqrt((rate - low1) ** 2 + (high2 - reference_rate) ** 2),
                difference + math.sqrt((high1 - rate) ** 2 + (reference_rate - low2) ** 2))
    return LabelDrift(n, positives, float(reference_rate), m, difference, interval, p_value, threshold, alpha,
                      p_value < alpha and abs(difference) >= threshold)


@dataclasses.dataclass(frozen=True)
class ConceptDrift:
    # Metrics realised below the interval the calibrated estimate gave for the same examples.
    below_estimate: List[str]
    # Metrics realised more than REFERENCE_SIGMAS sampling errors below their reference (eval) value,
    # where the estimate for the same examples was not.
    below_reference: List[str]
    inputs_drifted: bool
    examples: int

    @property
    def dropped(self) -> List[str]:
        return sorted(set(self.below_estimate) | set(self.below_reference))

    @property
    def signal(self) -> bool:
        """Performance fell with the inputs where they were: the labels moved, not the traffic."""
        return bool(self.dropped) and not self.inputs_drifted

    def record(self) -> dict:
        return {'metrics': self.dropped, 'below_estimate': self.below_estimate,
                'below_reference': self.below_reference, 'inputs_drifted': self.inputs_drifted,
                'labelled_examples': self.examples}


def concept_drift(comparisons: Sequence[Comparison], estimate: Estimate, inputs_drifted: bool,
                  sigmas: float = REFERENCE_SIGMAS, min_examples: int = MIN_EXAMPLES) -> Optional[ConceptDrift]:
    """From the estimate for the labelled examples and its comparisons with the realised values
    (`performance_estimation.side_by_side`); None with fewer than `min_examples` labels."""
    if estimate.examples < min_examples:
        return None
    realised = {c.metric: c.realised for c in comparisons}

    def under_reference(value, metric) -> bool:
        return value is not None and value < metric.reference - sigmas * metric.sampling_error
    # Below the reference where the estimate was not: a drop the inputs do not explain.
    below_reference = [m.metric for m in estimate.metrics
                       if m.reference is not None and m.sampling_error
                       and under_reference(realised.get(m.metric), m) and not under_reference(m.value, m)]
    return ConceptDrift([c.metric for c in comparisons if c.below], below_reference, bool(inputs_drifted),
                        estimate.examples)
