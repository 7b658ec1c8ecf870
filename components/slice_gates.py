"""The Evaluator's gates on slices, as plain values: which slices are judged, and each gate's verdict read back.

Overall AUC hides where the model is weak: on the taxi sample every cash trip records no tip, so "is it cash"
alone ranks most of the eval split, and the overall AUC (~0.95) says little about card trips (~0.65), where the
model has to predict a tip. So besides the overall gates (components/evaluator.py), every value of the slice
columns the model declares as gated (`taxi_model.features.GATED_SLICE_COLUMNS`) that has enough eval examples of
each class is held to three gates:

- `min_slice_auc`: an absolute floor on the slice's AUC (TFMA: a PerSliceMetricThreshold);
- `max_slice_auc_gap`: how far the slice's AUC may fall below the overall AUC. Checked by the Evaluator on
  TFMA's metrics: TFMA 0.47's CrossSliceMetricThreshold, made for this, fails every model (its validator
  reports each checked cross-slice spec as missing), so a gap too wide takes away TFMA's blessing;
- `max_slice_auc_drop`: how far the slice's AUC may fall below the baseline's on the same slice (TFMA: a
  change threshold on the PerSliceMetricThreshold; skipped on the first push, as the overall one is).

A slice with fewer than `min_slice_class_examples` eval examples of either class is not judged: its AUC is
noise (cash trips have a handful of tips among thousands), and it is listed with its counts instead.

TFMA's validation result decides, but for the gap; this module only says what was asked of which slice
and reads the verdict back into `Gate` records: measured value, bound, passed, and by how much.
Imports no TFX or TFMA: the run summary, reports and model card read gates through here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Dict, Iterable, List, Optional, Sequence

OVERALL = 'overall'
# The gates' names: the Evaluator's exec properties (and the config's Thresholds fields) that set them.
MIN_AUC, MIN_ACCURACY, MAX_AUC_DROP = 'min_auc', 'min_accuracy', 'max_auc_drop'
MIN_SLICE_AUC, MAX_SLICE_AUC_GAP, MAX_SLICE_AUC_DROP = 'min_slice_auc', 'max_slice_auc_gap', 'max_slice_auc_drop'
MIN_SLICE_CLASS_EXAMPLES = 'min_slice_class_examples'
# Properties of the evaluation artifact the Evaluator writes (JSON), and of its blessing (one line).
GATES_PROPERTY, SLICES_PROPERTY, REASON_PROPERTY = 'gates', 'gated_slices', 'reason'


@dataclasses.dataclass(frozen=True)
class SliceThresholds:
    """The per-slice gates' values. The pipeline config takes its defaults from here
    (pipeline/config.py Thresholds); docs/pipeline.md#slice-gates says why these values."""

    # Card trips on the sample: fare alone ranks them at 0.58, boosted trees on card trips alone at 0.62-0.63,
    # the model at 0.646 before the fare steps and 0.657 after (docs/pipeline.md#slice-gates).
    min_auc: float = 0.62
    # The gap is structural here (overall counts every cash trip as an easy negative): 0.30 on the sample.
    max_auc_gap: float = 0.35
    # About two standard errors of one card-trip AUC on the sample (0.014), 15 times the spread between seeds.
    max_auc_drop: float = 0.03
    # At 300 examples of the smaller class a slice's AUC has a standard error of about 0.02.
    min_class_examples: int = 300

    def __post_init__(self):
        if not 0 <= self.min_auc <= 1 or not 0 <= self.max_auc_gap <= 1 or not 0 <= self.max_auc_drop <= 1:
            raise ValueError('slice AUC floor, gap and drop must be within 0..1')
        if self.min_class_examples < 1:
            raise ValueError('min_class_examples must be at least 1')


DEFAULTS = SliceThresholds()


@dataclasses.dataclass(frozen=True)
class SliceCount:
    """A gated column's value in the evaluated examples, with its examples of each class."""

    column: str
    value: str
    positives: int
    negatives: int
    judged: bool = False

    @property
    def label(self) -> str:
        return slice_label(self.column, self.value)

    def why_not_judged(self, minimum: int) -> str:
        return (f'not judged: {self.positives} positive and {self.negatives} negative eval examples, '
                f'fewer than {minimum} of each')


def slice_label(column: str, value: str) -> str:
    """As the reports name a slice: 'payment_type=Credit Card'."""
    return f'{column}={value}'


def judge(counts: Iterable[SliceCount], minimum: int) -> List[SliceCount]:
    """The counts, each marked judged when it has at least `minimum` examples of each class; by column, value."""
    return sorted((dataclasses.replace(c, judged=min(c.positives, c.negatives) >= minimum) for c in counts),
                  key=lambda c: (c.column, c.value))


@dataclasses.dataclass(frozen=True)
class Gate:
    """One gate as applied: `measured` against `bound` (a lower bound, or an upper one for the gap)."""

    gate: str
    slice: str
    measured: Optional[float]
    bound: float
    # None: not applied (no baseline to compare with, the first push).
    passed: Optional[bool]
    # The baseline's value of a change gate, for the reader.
    baseline: Optional[float] = None

    @property
    def upper(self) -> bool:
        return self.gate == MAX_SLICE_AUC_GAP

    @property
    def margin(self) -> Optional[float]:
        """How far on the right side of the bound (negative: how far on the wrong side)."""
        if self.measured is None or not math.isfinite(self.measured):
            return None
        return self.bound - self.measured if self.upper else self.measured - self.bound

    @property
    def rule(self) -> str:
        where = 'overall' if self.slice == OVERALL else self.slice
        return {MIN_AUC: f'{where} AUC at least',
                MIN_ACCURACY: f'{where} accuracy at least',
                MAX_AUC_DROP: f'{where} AUC change vs the baseline at least',
                MIN_SLICE_AUC: f'{where} AUC at least',
                MAX_SLICE_AUC_GAP: f'overall AUC minus {where} AUC at most',
                MAX_SLICE_AUC_DROP: f'{where} AUC change vs the baseline at least'}.get(self.gate, self.gate)

    def describe(self) -> str:
        """One line: what was measured, against what, and by how much it passed or failed."""
        measured = 'not measured' if self.measured is None else f'{self.measured:.4f}'
        if self.passed is None:
            return f'{self.rule} {self.bound:g}: not applied (no baseline)'
        margin = self.margin
        by = '' if margin is None else f' by {abs(margin):.4f}'
        what = {MIN_AUC: f'overall AUC {measured}', MIN_ACCURACY: f'overall accuracy {measured}',
                MAX_AUC_DROP: f'overall AUC change vs the baseline {measured}',
                MIN_SLICE_AUC: f'{self.slice} AUC {measured}',
                MAX_SLICE_AUC_GAP: f'{self.slice} AUC {measured} below overall',
                MAX_SLICE_AUC_DROP: f'{self.slice} AUC change vs the baseline {measured}'}.get(self.gate, measured)
        bound = {MIN_AUC: 'the floor', MIN_ACCURACY: 'the floor', MAX_AUC_DROP: 'the allowed change',
                 MIN_SLICE_AUC: 'the slice floor', MAX_SLICE_AUC_GAP: 'the allowed gap',
                 MAX_SLICE_AUC_DROP: 'the allowed change'}.get(self.gate, 'the bound')
        if self.passed:
            return f'{what}: passed {bound} {self.bound:g}{by}'
        side = 'above' if self.upper else 'below'
        return f'{what}: {side} {bound} {self.bound:g}{by}'

    def to_dict(self) -> Dict:
        return {**dataclasses.asdict(self), 'rule': self.rule, 'margin': self.margin}


def gate_from(data: Dict) -> Gate:
    return Gate(**{f.name: data.get(f.name) for f in dataclasses.fields(Gate)})


def refusal(gates: Sequence[Gate], other_failures: Sequence[str] = ()) -> str:
    """The one line that says why a model was not blessed: each failed gate, slice gates first."""
    failed = sorted((g for g in gates if g.passed is False), key=lambda g: g.slice == OVERALL)
    return '; '.join([g.describe() for g in failed] + list(other_failures))


def closest(gates: Sequence[Gate]) -> Optional[Gate]:
    """The slice gate that passed by the least (what would refuse the next model first)."""
    slice_gates = [g for g in gates if g.slice != OVERALL and g.passed and g.margin is not None]
    return min(slice_gates, key=lambda g: g.margin, default=None)


def dump_gates(gates: Sequence[Gate]) -> str:
    return json.dumps([g.to_dict() for g in gates], sort_keys=True)


def load_gates(text: Optional[str]) -> List[Gate]:
    return [gate_from(item) for item in json.loads(text)] if text else []


def dump_counts(counts: Sequence[SliceCount]) -> str:
    return json.dumps([dataclasses.asdict(c) for c in counts], sort_keys=True)


def load_counts(text: Optional[str]) -> List[SliceCount]:
    return [SliceCount(**item) for item in json.loads(text)] if text else []


def brief(gate: Gate) -> str:
    """A gate in a few words, for a line that lists a slice's gates: 'AUC 0.6489 >= 0.62 (+0.0289)'."""
    if gate.passed is None:
        return {MAX_AUC_DROP: 'change vs baseline', MAX_SLICE_AUC_DROP: 'change vs baseline'}.get(
            gate.gate, gate.gate) + ': not applied (no baseline)'
    measured = '-' if gate.measured is None else f'{gate.measured:.4f}'
    margin = '' if gate.margin is None else f' ({gate.margin:+.4f})'
    text = {MIN_AUC: f'AUC {measured} >= {gate.bound:g}', MIN_ACCURACY: f'accuracy {measured} >= {gate.bound:g}',
            MAX_AUC_DROP: f'change vs baseline {measured} >= {gate.bound:g}',
            MIN_SLICE_AUC: f'AUC {measured} >= {gate.bound:g}',
            MAX_SLICE_AUC_GAP: f'gap below overall {measured} <= {gate.bound:g}',
            MAX_SLICE_AUC_DROP: f'change vs baseline {measured} >= {gate.bound:g}'}.get(gate.gate, measured)
    return text + margin + ('' if gate.passed else ' FAILED')


def summary_lines(gates: Sequence[Gate], counts: Sequence[SliceCount], minimum: Optional[int]) -> List[str]:
    """The slice gates of a run in a few lines: each judged slice's gates with their margins, then the slices
    of the gated columns that were not judged, with their counts."""
    lines = []
    by_slice: Dict[str, List[Gate]] = {}
    for gate in gates:
        if gate.slice != OVERALL:
            by_slice.setdefault(gate.slice, []).append(gate)
    for found in counts:
        if found.judged:
            lines.append(f'Slice gate {found.label} ({found.positives:,} positive, {found.negatives:,} negative): '
                         + '; '.join(brief(g) for g in by_slice.get(found.label, [])))
    unjudged = [f'{c.label} ({c.positives:,}/{c.negatives:,})' for c in counts if not c.judged]
    if unjudged:
        lines.append(f'Not judged (fewer than {minimum if minimum is not None else "?"} eval examples of a class; '
                     f'positive/negative): ' + ', '.join(unjudged))
    return lines
