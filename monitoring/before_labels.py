"""What a monitoring pass says of a version's window before its labels arrive, and what the labels
then add, from the calibration the version carries (`assets.extra/calibration.json`):

- the estimated accuracy and AUC of everything it served in the window (performance_estimation.py);
- once feedback came: the estimate for the labelled examples next to the realised values, label drift
  and concept drift (label_drift.py);
- attribution drift on a sample of the served rows, through the version's explanation signature
  (attribution_drift.py, served_explanations.py).

One call per version (`judge`) and the alerts of its findings (`Findings.alerts`), so the monitor
wires it in after its live metrics. A version that carries no calibration (exported before versions
carried one) is not judged here, and says so (`read_calibration` returns None).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np
import pyarrow as pa
import tensorflow as tf

from foundation import alerts
from foundation.calibration import Calibration
from foundation.model_files import CALIBRATION_FILE
from monitoring import attribution_drift, label_drift, performance_estimation

# The fewest served examples an estimate is judged on (as live metrics' --min-labelled).
MIN_EXAMPLES = 100


def read_calibration(version_dir: str) -> Optional[Calibration]:
    """The calibration a pushed version carries, or None if it carries none."""
    path = os.path.join(version_dir, CALIBRATION_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return Calibration.from_json(f.read())


@dataclasses.dataclass(frozen=True)
class Findings:
    # Of every example served in the window with a probability; None without any.
    estimate: Optional[performance_estimation.Estimate]
    # Once labels came: the estimate for the labelled examples next to what they realised.
    labelled: Optional[performance_estimation.Estimate] = None
    comparisons: List[performance_estimation.Comparison] = dataclasses.field(default_factory=list)
    label_drift: Optional[label_drift.LabelDrift] = None
    concept_drift: Optional[label_drift.ConceptDrift] = None
    attribution_drift: Optional[attribution_drift.AttributionDrift] = None

    def record(self) -> Dict:
        """As JSON (the pass's findings)."""
        return {'estimate': self.estimate.record() if self.estimate else None,
                'labelled': [c.record() for c in self.comparisons],
                'label_drift': self.label_drift.record() if self.label_drift else None,
                'concept_drift': self.concept_drift.record() if self.concept_drift else None,
                'attribution_drift': self.attribution_drift.record() if self.attribution_drift else None}

    def alerts(self, version: int, min_accuracy: float, min_auc: float,
               min_examples: int = MIN_EXAMPLES) -> List[Dict]:
        """The findings beyond their thresholds, as recorded alerts (alerts.Alert.record())."""
        found = []
        if self.estimate is not None and self.estimate.examples >= min_examples:
            minimum = {performance_estimation.ACCURACY: min_accuracy, performance_estimation.AUC: min_auc}
            for metric in performance_estimation.below_minimum(self.estimate, min_accuracy, min_auc):
                found.append(alerts.Alert(alerts.ESTIMATED_PERFORMANCE, version, {
                    'metric': metric.metric, 'estimated': round(metric.value, 4),
                    'ci95': [round(v, 4) for v in metric.interval] if metric.interval else None,
                    'minimum': minimum[metric.metric], 'examples': self.estimate.examples}))
        if self.label_drift is not None and self.label_drift.drifted:
            found.append(alerts.Alert(alerts.LABEL_DRIFT, version, self.label_drift.record()))
        if self.concept_drift is not None and self.concept_drift.signal:
            found.append(alerts.Alert(alerts.CONCEPT_DRIFT, version, {
                **self.concept_drift.record(), 'comparisons': [c.record() for c in self.comparisons]}))
        if self.attribution_drift is not None and self.attribution_drift.drifted:
            drifted = self.attribution_drift.drifted
            found.append(alerts.Alert(alerts.ATTRIBUTION_DRIFT, version, {
                'features': [f.feature for f in drifted], 'changes': {f.feature: round(f.change, 4) for f in drifted},
                'threshold': self.attribution_drift.threshold,
                'explained_examples': self.attribution_drift.examples}))
        return [a.record() for a in found]


def judge(calibration: Calibration, scores: np.ndarray, labelled_scores: Optional[np.ndarray] = None,
          labels: Optional[np.ndarray] = None, inputs_drifted: bool = False, window: Optional[pa.Table] = None,
          explain: Optional[Callable[[pa.Table], Mapping[str, np.ndarray]]] = None,
          sample: int = attribution_drift.SAMPLE) -> Findings:
    """A version's findings: `scores`, the probabilities it returned in the window (NaN where a row has
    none: classify and regress answers); `labelled_scores` and `labels`, the examples feedback named and
    their 0/1 labels; `inputs_drifted`, whether skew or drift fired; `window` (its served rows) and
    `explain` (served_explanations.explainer) for attribution drift."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    scores = scores[np.isfinite(scores)]
    estimate = performance_estimation.estimate(scores, calibration) if len(scores) else None
    labelled, comparisons, labels_moved, concept = None, [], None, None
    if labels is not None and len(labels):
        labelled, comparisons = performance_estimation.side_by_side(labelled_scores, labels, calibration)
        labels_moved = label_drift.label_drift(labels, calibration.label_rate, calibration.examples)
        concept = label_drift.concept_drift(comparisons, labelled, inputs_drifted)
    attributions = None
    if window is not None and explain is not None and calibration.attributions is not None and window.num_rows:
        rows = attribution_drift.sample_indexes(window.num_rows, sample)
        batch = window.take(pa.array(rows))
        attributions = attribution_drift.measure(batch, batch.num_rows, explain, calibration.attributions)
    return Findings(estimate, labelled, comparisons, labels_moved, concept, attributions)
