"""Attribution drift: whether the model leans on its features as it did in training.

The version carries the mean |attribution| per feature of its `explain` signature on a sample of its
eval split (foundation/calibration.py). A pass explains a sample of the window's served rows (the
request log holds the features as served) with the same signature, in batch, and compares feature by
feature: the change is |served - reference| / reference, the relative change of the feature's mean
|attribution|, a feature whose attributions normally amount to almost nothing judged against a floor
(FLOOR of the total mean |attribution|) rather than its own tiny mean, which would make noise look
large. A feature drifted when its change exceeds THRESHOLD.

THRESHOLD was set on clean traffic (docs/monitoring.md#attribution-drift): samples of SAMPLE rows of
undrifted traffic explained and compared with the reference, over many resamples; the largest change
any feature showed is well under it. Inputs drift often moves attributions (fares tripled make fare
count for more); attributions can also move when no input's distribution did, through the features'
joint distribution, which per-feature skew and drift do not see. Plain logic: the explanation comes
from the caller, as a function of a batch of rows.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional, TypeVar

import numpy as np

from foundation.calibration import AttributionReference

# Served rows explained per pass and version, and the fewest worth a verdict.
SAMPLE = 500
MIN_SAMPLE = 200
THRESHOLD = 0.5
FLOOR = 0.02

Batch = TypeVar('Batch')


@dataclasses.dataclass(frozen=True)
class FeatureAttribution:
    feature: str
    reference: float
    served: float
    change: float
    drifted: bool


@dataclasses.dataclass(frozen=True)
class AttributionDrift:
    examples: int
    threshold: float
    features: List[FeatureAttribution]

    @property
    def drifted(self) -> List[FeatureAttribution]:
        return [f for f in self.features if f.drifted]

    def record(self) -> dict:
        return {'explained_examples': self.examples, 'threshold': self.threshold,
                'changes': {f.feature: round(f.change, 4) for f in self.features},
                'mean_abs': {f.feature: round(f.served, 4) for f in self.features}}


def sample_indexes(rows: int, size: int = SAMPLE, seed: int = 0) -> np.ndarray:
    """Which of `rows` served rows to explain: all of them, or `size` drawn without replacement, in order."""
    if rows <= size:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size, replace=False))


def mean_abs(attributions: Mapping[str, np.ndarray]) -> Dict[str, float]:
    return {name: float(np.mean(np.abs(np.asarray(values, dtype=np.float64)))) for name, values in attributions.items()}


def compare(served: Mapping[str, float], examples: int, reference: AttributionReference,
            threshold: float = THRESHOLD, floor: float = FLOOR) -> AttributionDrift:
    """Served mean |attribution| per feature (over `examples` rows) against the reference."""
    total = sum(reference.mean_abs.values())
    features = []
    for name in sorted(reference.mean_abs):
        if name not in served:
            continue
        expected = reference.mean_abs[name]
        change = abs(served[name] - expected) / max(expected, floor * total, 1e-12)
        features.append(FeatureAttribution(name, expected, served[name], change, change > threshold))
    return AttributionDrift(examples, threshold, features)


def measure(batch: Batch, rows: int, explain: Callable[[Batch], Mapping[str, np.ndarray]],
            reference: AttributionReference, threshold: float = THRESHOLD,
            min_sample: int = MIN_SAMPLE) -> Optional[AttributionDrift]:
    """`explain(batch)` (per feature, one attribution per row of the batch, `rows` of them) against the
    reference; None when the batch has fewer than `min_sample` rows."""
    if rows < min_sample:
        return None
    attributions = explain(batch)
    return compare(mean_abs({name: attributions[name] for name in reference.mean_abs if name in attributions}),
                   rows, reference, threshold)
