"""The slice gates' plain logic: which slices are judged, and how a gate's verdict reads."""

import dataclasses

import pytest

from components import slice_gates
from components.slice_gates import (MAX_AUC_DROP, MAX_SLICE_AUC_DROP, MAX_SLICE_AUC_GAP, MIN_AUC, MIN_SLICE_AUC,
                                    OVERALL, Gate, SliceCount)
from pipeline.config import Thresholds
from taxi_model import features

pytestmark = pytest.mark.unit

CARD = 'payment_type=Credit Card'


def test_a_slice_is_judged_only_with_enough_examples_of_each_class():
    counts = slice_gates.judge([SliceCount('payment_type', 'Credit Card', 1150, 551),
                                SliceCount('payment_type', 'Cash', 2, 3301),
                                SliceCount('payment_type', 'Unknown', 300, 300)], 300)
    assert [(c.value, c.judged) for c in counts] == [('Cash', False), ('Credit Card', True), ('Unknown', True)]
    assert counts[0].why_not_judged(300) == ('not judged: 2 positive and 3301 negative eval examples, '
                                             'fewer than 300 of each')


def test_a_gate_says_what_it_measured_against_what_and_by_how_much():
    floor = Gate(MIN_SLICE_AUC, CARD, 0.5812, 0.62, False)
    assert floor.margin == pytest.approx(-0.0388)
    assert floor.describe() == f'{CARD} AUC 0.5812: below the slice floor 0.62 by 0.0388'
    gap = Gate(MAX_SLICE_AUC_GAP, CARD, 0.2978, 0.35, True)
    assert gap.margin == pytest.approx(0.0522)
    assert gap.describe() == f'{CARD} AUC 0.2978 below overall: passed the allowed gap 0.35 by 0.0522'
    drop = Gate(MAX_SLICE_AUC_DROP, CARD, -0.05, -0.03, False, baseline=0.66)
    assert drop.describe() == f'{CARD} AUC change vs the baseline -0.0500: below the allowed change -0.03 by 0.0200'
    assert Gate(MAX_SLICE_AUC_DROP, CARD, None, -0.03, None).describe() == (
        f'{CARD} AUC change vs the baseline at least -0.03: not applied (no baseline)')


def test_the_refusal_names_the_failing_slice_first_and_says_nothing_when_all_passed():
    gates = [Gate(MIN_AUC, OVERALL, 0.65, 0.7, False), Gate(MIN_SLICE_AUC, CARD, 0.55, 0.62, False),
             Gate(MAX_AUC_DROP, OVERALL, None, -0.01, None)]
    assert slice_gates.refusal(gates) == (f'{CARD} AUC 0.5500: below the slice floor 0.62 by 0.0700; '
                                          'overall AUC 0.6500: below the floor 0.7 by 0.0500')
    assert slice_gates.refusal([dataclasses.replace(g, passed=True) for g in gates[:2]]) == ''
    assert slice_gates.refusal([], ['payment_type=Credit Card: no metrics for a gated slice']) == (
        'payment_type=Credit Card: no metrics for a gated slice')


def test_gates_and_counts_read_back_as_written():
    gates = [Gate(MIN_SLICE_AUC, CARD, 0.6489, 0.62, True), Gate(MAX_SLICE_AUC_DROP, CARD, None, -0.03, None)]
    counts = [SliceCount('payment_type', 'Credit Card', 1150, 551, True)]
    assert slice_gates.load_gates(slice_gates.dump_gates(gates)) == gates
    assert slice_gates.load_counts(slice_gates.dump_counts(counts)) == counts
    assert slice_gates.load_gates('') == [] and slice_gates.load_counts(None) == []
    assert slice_gates.closest(gates) == gates[0]


def test_the_summary_lists_each_judged_slice_with_its_margins_and_the_rest_with_counts():
    gates = [Gate(MIN_AUC, OVERALL, 0.95, 0.7, True), Gate(MIN_SLICE_AUC, CARD, 0.6489, 0.62, True),
             Gate(MAX_SLICE_AUC_GAP, CARD, 0.2978, 0.35, True), Gate(MAX_SLICE_AUC_DROP, CARD, None, -0.03, None)]
    counts = [SliceCount('payment_type', 'Cash', 2, 3301), SliceCount('payment_type', 'Credit Card', 1150, 551, True)]
    assert slice_gates.summary_lines(gates, counts, 300) == [
        f'Slice gate {CARD} (1,150 positive, 551 negative): AUC 0.6489 >= 0.62 (+0.0289); '
        'gap below overall 0.2978 <= 0.35 (+0.0522); change vs baseline: not applied (no baseline)',
        'Not judged (fewer than 300 eval examples of a class; positive/negative): payment_type=Cash (2/3,301)']


def test_the_config_defaults_are_the_gates_defaults_and_refuse_nonsense():
    thresholds = Thresholds()
    assert (thresholds.min_slice_auc, thresholds.max_slice_auc_gap, thresholds.max_slice_auc_drop,
            thresholds.min_slice_class_examples) == dataclasses.astuple(slice_gates.DEFAULTS)
    with pytest.raises(ValueError, match='within 0..1'):
        Thresholds(min_slice_auc=1.5)
    with pytest.raises(ValueError, match='at least 1'):
        Thresholds(min_slice_class_examples=0)


def test_the_gated_columns_are_sliced_columns_the_model_declares():
    assert features.GATED_SLICE_COLUMNS == ('payment_type',)
    assert set(features.GATED_SLICE_COLUMNS) <= set(features.SLICE_COLUMNS)
