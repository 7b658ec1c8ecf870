"""The Evaluator's gates at work: TFMA on a small eval split, scored by tiny SavedModels whose score is a column
of the examples, so each test chooses how good a model is on which slice.

Card trips are where a model must predict a tip; cash trips are all negatives, which a model that tells cash
from card ranks below every card trip, so its overall AUC stays high however it ranks card trips. A model that
ranks card trips badly is refused, its blessing names the slice, and a Pusher pushes nothing.
"""

import json
import os

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs as specs
from tfx.utils import proto_utils

from components import evaluator, slice_gates
from components.artifact_contents import OVERALL, metrics_by_slice
from components.baseline_model import SERVING_SUBDIR
from pipeline import run_report, run_summary
from support import scored_examples
from support.html_tables import read_tables
from taxi_model.features import LABEL

pytestmark = pytest.mark.component

CARD, CASH = 'payment_type=Credit Card', 'payment_type=Cash'
CARD_TRIPS, CASH_TRIPS, CARD_POSITIVE_SHARE = 1000, 600, 0.65


def _examples(root):
    """An Examples artifact with an eval split: card trips (65% big tippers) and cash trips (no tips), each
    with scores: `good` ranks card trips well (AUC ~0.75), `fair` a little worse (~0.68), `weak` barely
    (~0.55); every score puts cash trips below card trips."""
    rng = np.random.RandomState(0)
    labels = (rng.rand(CARD_TRIPS) < CARD_POSITIVE_SHARE).astype(int)
    noise = rng.rand(CARD_TRIPS)
    # A positive's score is shifted by `lift` over uniform noise: AUC = 1 - (1 - lift)^2 / 2.
    card_scores = {name: 0.5 + 0.5 * (lift * labels + noise) / (1 + lift)
                   for name, lift in (('good', 0.3), ('fair', 0.2), ('weak', 0.05))}
    rows = [dict(payment_type=b'Credit Card', fare=10.0, tips=3.0 if label else 1.0, big_tipper=int(label),
                 **{name: float(scores[i]) for name, scores in card_scores.items()})
            for i, label in enumerate(labels)]
    rows += [dict(payment_type=b'Cash', fare=10.0, tips=0.0, big_tipper=0, **{name: 0.4 * rng.rand()
                                                                            for name in card_scores})
             for _ in range(CASH_TRIPS)]
    return scored_examples.eval_split(str(root / 'examples'), rows)


def _model(root, column):
    model = standard_artifacts.Model()
    model.uri = str(root / f'model-{column}')
    model.id = abs(hash(column)) % 1000
    scored_examples.save_scorer(column, os.path.join(model.uri, SERVING_SUBDIR))
    return model


@pytest.fixture(scope='module')
def eval_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('evaluator-gates')
    return root, _examples(root), {name: _model(root, name) for name in ('good', 'fair', 'weak')}


EVAL_CONFIG = tfma.EvalConfig(
    model_specs=[tfma.ModelSpec(label_key=LABEL.name, prediction_key='probabilities')],
    slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['payment_type'])],
    metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name='ExampleCount')])])


def _evaluate(eval_data, name, candidate, baseline=None, **thresholds):
    """Our Executor on the small split: (evaluation, blessing)."""
    root, examples, models = eval_data
    output = root / name
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(output / 'evaluation'), str(output / 'blessing')
    os.makedirs(blessing.uri)
    inputs = {specs.EXAMPLES_KEY: [examples], specs.MODEL_KEY: [models[candidate]]}
    if baseline:
        inputs[specs.BASELINE_MODEL_KEY] = [models[baseline]]
    properties = {specs.EVAL_CONFIG_KEY: json_format.MessageToJson(EVAL_CONFIG), 'min_auc': 0.7,
                  'min_accuracy': 0.0, 'max_auc_drop': 0.01, 'max_eval_examples': 0, **thresholds}
    context = BaseBeamExecutor.Context(beam_pipeline_args=[], tmp_dir=str(output / 'tmp'), unique_id='1')
    evaluator.Executor(context).Do(inputs, {specs.EVALUATION_KEY: [evaluation], specs.BLESSING_KEY: [blessing]},
                                   properties)
    return evaluation, blessing


@pytest.fixture(scope='module')
def weak(eval_data):
    """The evaluation and blessing of the model that ranks card trips barely better than chance."""
    return _evaluate(eval_data, 'weak', 'weak')


def _gates(evaluation):
    return {(g.gate, g.slice): g for g in slice_gates.load_gates(
        evaluation.get_string_custom_property(slice_gates.GATES_PROPERTY))}


def _push(root, model, blessing):
    """TFX's Pusher executor (whose blessing check the pipeline's Pusher keeps) on the candidate: the pushed
    model artifact and what landed in the push destination."""
    pushed, destination = standard_artifacts.PushedModel(), root / 'pushed'
    pushed.uri = str(root / 'pushed_model')
    tfx_pusher_executor.Executor(BaseBeamExecutor.Context(tmp_dir=str(root / 'push-tmp'), unique_id='2')).Do(
        {specs.MODEL_KEY: [model], specs.MODEL_BLESSING_KEY: [blessing]}, {specs.PUSHED_MODEL_KEY: [pushed]},
        {specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(destination))))})
    return pushed, sorted(os.listdir(destination)) if destination.exists() else []


def test_a_model_weak_on_card_trips_is_refused_naming_the_slice_and_nothing_is_pushed(eval_data, weak):
    root, _, models = eval_data
    evaluation, blessing = weak
    assert blessing.get_int_custom_property('blessed') == 0
    gates = _gates(evaluation)
    floor = gates[(slice_gates.MIN_SLICE_AUC, CARD)]
    # The overall figure alone would have blessed it: cash below card carries it.
    assert gates[(slice_gates.MIN_AUC, OVERALL)].passed and gates[(slice_gates.MIN_AUC, OVERALL)].measured > 0.8
    assert floor.passed is False and floor.measured < slice_gates.DEFAULTS.min_auc
    assert floor.margin == pytest.approx(floor.measured - slice_gates.DEFAULTS.min_auc)
    reason = blessing.get_string_custom_property(slice_gates.REASON_PROPERTY)
    assert reason == floor.describe()
    assert reason.startswith(f'{CARD} AUC {floor.measured:.4f}: below the slice floor 0.62 by ')
    # TFMA's own validation result names the slice too.
    failing = tfma.load_validation_result(evaluation.uri).metric_validations_per_slice
    assert [[(k.column, k.bytes_value) for k in v.slice_key.single_slice_keys] for v in failing] == [
        [('payment_type', b'Credit Card')]]
    # Cash trips have no positives: listed with their counts, never judged.
    counts = {c.label: c for c in slice_gates.load_counts(
        evaluation.get_string_custom_property(slice_gates.SLICES_PROPERTY))}
    assert counts[CASH].judged is False and counts[CASH].positives == 0 and counts[CASH].negatives == CASH_TRIPS
    assert counts[CARD].judged and counts[CARD].positives + counts[CARD].negatives == CARD_TRIPS
    assert not any(slice == CASH for _, slice in gates)
    pushed, landed = _push(root / 'weak', models['weak'], blessing)
    assert pushed.get_int_custom_property('pushed') == 0 and landed == []


def test_a_model_good_on_card_trips_is_blessed_with_every_gate_and_its_margin_recorded(eval_data):
    evaluation, blessing = _evaluate(eval_data, 'good', 'good')
    assert blessing.get_int_custom_property('blessed') == 1
    assert not blessing.has_custom_property(slice_gates.REASON_PROPERTY)
    gates = _gates(evaluation)
    assert set(gates) == {(slice_gates.MIN_AUC, OVERALL), (slice_gates.MIN_ACCURACY, OVERALL),
                          (slice_gates.MAX_AUC_DROP, OVERALL), (slice_gates.MIN_SLICE_AUC, CARD),
                          (slice_gates.MAX_SLICE_AUC_GAP, CARD), (slice_gates.MAX_SLICE_AUC_DROP, CARD)}
    metrics = metrics_by_slice(evaluation.uri)
    card_auc, overall_auc = metrics[CARD][0]['auc'], metrics[OVERALL][0]['auc']
    assert gates[(slice_gates.MIN_SLICE_AUC, CARD)].measured == pytest.approx(card_auc)
    # The cross-slice gap is overall minus slice, and its record does not pass for the overall slice.
    assert gates[(slice_gates.MAX_SLICE_AUC_GAP, CARD)].measured == pytest.approx(overall_auc - card_auc)
    assert overall_auc == pytest.approx(evaluation.get_float_custom_property('metric_auc'))
    assert metrics[OVERALL][0]['example_count'] == CARD_TRIPS + CASH_TRIPS
    assert all(g.passed and g.margin > 0 for g in gates.values() if g.gate != slice_gates.MAX_AUC_DROP
               and g.gate != slice_gates.MAX_SLICE_AUC_DROP)
    # No baseline (the first push): the change gates are not applied.
    assert gates[(slice_gates.MAX_SLICE_AUC_DROP, CARD)].passed is None


def test_the_gap_below_overall_is_a_gate_of_its_own_that_takes_tfmas_blessing_away(eval_data):
    evaluation, blessing = _evaluate(eval_data, 'gap', 'good', min_slice_auc=0.0, max_slice_auc_gap=0.1)
    gates = _gates(evaluation)
    gap = gates[(slice_gates.MAX_SLICE_AUC_GAP, CARD)]
    # TFMA passed every threshold it was given (0.47's cross-slice threshold fails every model, so it gets none),
    # and the Evaluator refused the model as TFX's executor refuses one.
    assert tfma.load_validation_result(evaluation.uri).validation_ok
    assert blessing.get_int_custom_property('blessed') == 0
    assert os.listdir(blessing.uri) == ['NOT_BLESSED']
    assert gap.passed is False and gap.measured > 0.1 and gap.margin == pytest.approx(0.1 - gap.measured)
    assert blessing.get_string_custom_property(slice_gates.REASON_PROPERTY) == (
        f'{CARD} AUC {gap.measured:.4f} below overall: above the allowed gap 0.1 by {gap.measured - 0.1:.4f}')


def test_a_model_that_regresses_on_card_trips_against_the_baseline_is_refused(eval_data):
    evaluation, blessing = _evaluate(eval_data, 'regress', 'fair', baseline='good', min_slice_auc=0.6,
                                     max_slice_auc_gap=0.5)
    gates = _gates(evaluation)
    drop = gates[(slice_gates.MAX_SLICE_AUC_DROP, CARD)]
    assert blessing.get_int_custom_property('blessed') == 0
    assert gates[(slice_gates.MIN_SLICE_AUC, CARD)].passed
    assert drop.passed is False and drop.measured < -slice_gates.DEFAULTS.max_auc_drop
    metrics = metrics_by_slice(evaluation.uri)
    assert drop.baseline == pytest.approx(metrics[CARD][1]['auc'])
    assert drop.measured == pytest.approx(metrics[CARD][0]['auc'] - metrics[CARD][1]['auc'])
    reason = blessing.get_string_custom_property(slice_gates.REASON_PROPERTY)
    assert reason.startswith(f'{CARD} AUC change vs the baseline {drop.measured:.4f}: below the allowed change '
                             f'-0.03 by ')


def test_a_slice_with_too_few_examples_of_a_class_is_not_judged(eval_data):
    evaluation, blessing = _evaluate(eval_data, 'few', 'weak', min_slice_class_examples=CARD_TRIPS)
    assert blessing.get_int_custom_property('blessed') == 1
    assert {slice for _, slice in _gates(evaluation)} == {OVERALL}
    counts = json.loads(evaluation.get_string_custom_property(slice_gates.SLICES_PROPERTY))
    assert [c['judged'] for c in counts] == [False, False]


def test_the_run_summary_and_report_show_the_slice_that_gated_and_by_how_much(weak):
    evaluation, blessing = weak
    floor = _gates(evaluation)[(slice_gates.MIN_SLICE_AUC, CARD)]
    summary = run_summary.RunSummary('run-1', [], 1.0, blessed=False,
                                     outputs={'Evaluator': {'evaluation': evaluation.uri}})
    run_summary.read_gates(summary, evaluation.mlmd_artifact, blessing.mlmd_artifact)
    lines = summary.render().splitlines()
    assert f'Blessed: no ({floor.describe()})' in lines
    assert any(line.startswith(f'Slice gate {CARD} (') and f'AUC {floor.measured:.4f} >= 0.62 ({floor.margin:+.4f}) '
               'FAILED' in line for line in lines)
    assert f'Not judged (fewer than 300 eval examples of a class; positive/negative): {CASH} (0/{CASH_TRIPS})' in lines
    page = run_report.render(summary)
    assert f'Refused: {floor.describe()}' in page
    tables = read_tables(page)
    gates = tables['Gates']
    # The failed gate first: its slice, the bound, what was measured and by how much it fell short.
    assert gates[1] == [CARD, slice_gates.MIN_SLICE_AUC, f'{CARD} AUC at least', '0.62', f'{floor.measured:.4f}',
                        f'{floor.margin:+.4f}', 'FAILED']
    assert [row[0] for row in tables[
        'Gated slices not judged (fewer than 300 eval examples of a class)'][1:]] == [CASH]
    # The per-slice metrics stay under the evaluation's heading.
    assert {row[0] for row in tables['Evaluation: NOT blessed'][1:]} >= {OVERALL, CARD, CASH}
