"""The model card's slice gates: which slice gated and by how much, from the evaluation as the Evaluator recorded
it (a lineage's data, made up here: the end-to-end card tests read real runs, whose small eval split judges no
slice)."""

import dataclasses
import types

import pytest
from support.html_tables import read_tables

from components import slice_gates
from components.slice_gates import MAX_SLICE_AUC_DROP, MAX_SLICE_AUC_GAP, MIN_AUC, MIN_SLICE_AUC, OVERALL, Gate
from provenance import model_card

pytestmark = pytest.mark.unit

CARD, CASH = 'payment_type=Credit Card', 'payment_type=Cash'


def _metrics(auc, examples, recall=0.8):
    return {'candidate': {'auc': auc, 'binary_accuracy': 0.8, 'example_count': examples, 'precision': 0.7,
                          'recall': recall}, 'baseline': {}}


COUNTS = [slice_gates.SliceCount('payment_type', 'Cash', 2, 3301),
          slice_gates.SliceCount('payment_type', 'Credit Card', 1150, 551, True)]


def _card(gates, blessed=True, refusal=None, counts=COUNTS):
    data = {'version': 7, 'stage': 'candidate', 'pushed': {'at': '2026-12-06 20:00:00', 'destination': '/m/7'},
            'evaluation': {'thresholds': {'min_auc': 0.7, 'min_accuracy': 0.6, 'max_auc_drop': 0.01},
                           'baseline_version': None, 'blessed': blessed,
                           'slices': {OVERALL: _metrics(0.9467, 4966), CARD: _metrics(0.6489, 1701),
                                      CASH: _metrics(0.7969, 3303)},
                           'gates': [g.to_dict() for g in gates],
                           'gated_slices': [dataclasses.asdict(c) for c in counts],
                           'min_slice_class_examples': 300, 'refusal': refusal}}
    card = model_card.card(types.SimpleNamespace(model_base_path='/m'), model_card.load_template(), data=data)
    return card, read_tables(model_card.page(card))


PASSED = [Gate(MIN_AUC, OVERALL, 0.9467, 0.7, True), Gate(MIN_SLICE_AUC, CARD, 0.6489, 0.62, True),
          Gate(MAX_SLICE_AUC_GAP, CARD, 0.2978, 0.35, True), Gate(MAX_SLICE_AUC_DROP, CARD, None, -0.03, None)]


def test_the_card_shows_each_slice_gate_with_its_margin_and_the_closest_one():
    card, tables = _card(PASSED)
    rows = {(row[0], row[1]): row for row in tables['Slice gates it had to pass'][1:]}
    assert set(rows) == {(CARD, MIN_SLICE_AUC), (CARD, MAX_SLICE_AUC_GAP), (CARD, MAX_SLICE_AUC_DROP)}
    assert rows[(CARD, MIN_SLICE_AUC)][3:] == ['0.62', '0.6489', '+0.0289', 'passed']
    assert rows[(CARD, MAX_SLICE_AUC_DROP)][-1] == 'not applied (no baseline)'
    page = model_card.page(card)
    assert f'Closest to refusing it: {CARD} AUC 0.6489: passed the slice floor 0.62 by 0.0289.' in page
    # At a glance, before any table.
    assert f'passed on {CARD} (closest: {CARD} AUC 0.6489: passed the slice floor 0.62 by 0.0289)' in page
    # Cash: thousands of trips but two tips; its AUC is not called a weakness, and it says why.
    assert card.few_of_a_class == [CASH] and CASH not in card.weak
    assert [row for row in tables['Slice gates it had to pass'][1:] if row[0] == CASH] == []
    limitations = {row[0]: row[1] for row in tables['Limitations found in ML Metadata'][1:]}
    assert CASH in limitations['A handful of one class']
    notes = {row[0]: row[-1] for row in tables['Metrics per slice'][1:]}
    assert notes[CASH] == 'no: 2 positive, 3301 negative, fewer than 30 of a class'
    # The card slice is judged as ever (well below overall), and gated.
    assert notes[CARD] == 'yes: AUC 0.298 below overall; gated' and card.weak == [CARD]


def test_a_card_of_a_refused_model_names_the_slice_that_gated_and_by_how_much():
    failed = [PASSED[0], Gate(MIN_SLICE_AUC, CARD, 0.5812, 0.62, False), *PASSED[2:]]
    reason = slice_gates.refusal(failed)
    card, tables = _card(failed, blessed=False, refusal=reason)
    limitations = {row[0]: row[1] for row in tables['Limitations found in ML Metadata'][1:]}
    assert limitations['Not blessed'] == (f'The Evaluator did not bless this version. The Evaluator refused it: '
                                          f'{CARD} AUC 0.5812: below the slice floor 0.62 by 0.0388.')
    rows = {(row[0], row[1]): row for row in tables['Slice gates it had to pass'][1:]}
    assert rows[(CARD, MIN_SLICE_AUC)][-2:] == ['-0.0388', 'FAILED']


def test_a_card_of_an_evaluation_before_the_slice_gates_says_so():
    card, _ = _card([], counts=[])
    page = model_card.page(card)
    assert 'Slice gates it had to pass' not in page
    assert 'not recorded (evaluated before the slice gates)' in page
