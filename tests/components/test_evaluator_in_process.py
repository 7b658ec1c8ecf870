"""The Evaluator's in-process path against TFMA's executor, side by side on the same artifacts.

Each case runs our Executor twice on the same inputs: as the pipeline runs it (the in-process path where it
mirrors TFMA) and with `evaluation_engine` 'tfma' (TFX's executor: TFMA on Beam, the code path before). The
two must write the same slices and metric keys, the same metric values within `TOLERANCE` (AUC is TFMA's
Riemann sum over the same 10,000-bucket histogram; counts and confusion matrices are equal), the same
validation result and the same blessing (files, `blessed`, `reason`, gates and gated slices).

Cases: a taxi model trained on the sample, on the sample's eval split, alone and against a baseline, with
gates it passes and one it fails; and small scorer models on a chosen split, for a slice with one class, a
threshold on a slice with no examples, and NaN predictions (not mirrored: TFMA's executor runs).
"""

import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs

from components import evaluator, model_evaluation, slice_gates
from components.baseline_model import SERVING_SUBDIR
from pipeline import dag
from support import scored_examples
from support.small_model import train_and_export, typed_rows
from taxi_model.features import LABEL

pytestmark = pytest.mark.component

# Largest difference allowed between a metric of the two paths. Both sum the same counts in float64, so they
# differ only by summation order: far below this.
TOLERANCE = 1e-9
GATES = dict(min_auc=0.5, min_accuracy=0.5, max_auc_drop=0.05, min_slice_auc=0.5, max_slice_auc_gap=0.5,
             max_slice_auc_drop=0.05, min_slice_class_examples=100)


def _model(root, name, export_dir):
    model = standard_artifacts.Model()
    model.uri = str(root / f'model-{name}')
    model.id = abs(hash(name)) % 1000
    shutil.copytree(export_dir, os.path.join(model.uri, SERVING_SUBDIR))
    return model


@pytest.fixture(scope='module')
def taxi_models(tmp_path_factory, taxi_rows):
    """Two taxi models trained in process on the first 3,000 rows of the sample: 'candidate' and a weaker
    'baseline' (fewer steps)."""
    root = tmp_path_factory.mktemp('evaluator-taxi-models')
    header, rows = taxi_rows
    typed = typed_rows(header, rows[:3000])
    return {name: _model(root, name, train_and_export(typed, str(root / f'train-{name}'), steps=steps, seed=seed))
            for name, steps, seed in (('candidate', 200, 0), ('baseline', 40, 1))}


def _run(root, name, examples, candidate, baseline, eval_config, engine, **properties):
    """Our Executor on `examples`: (evaluation, blessing)."""
    output = root / f'{name}-{engine}'
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(output / 'evaluation'), str(output / 'blessing')
    os.makedirs(blessing.uri)
    inputs = {specs.EXAMPLES_KEY: [examples], specs.MODEL_KEY: [candidate]}
    if baseline is not None:
        inputs[specs.BASELINE_MODEL_KEY] = [baseline]
    exec_properties = {specs.EVAL_CONFIG_KEY: json_format.MessageToJson(eval_config), 'max_eval_examples': 0,
                       evaluator.EVALUATION_ENGINE: engine, **GATES, **properties}
    context = BaseBeamExecutor.Context(beam_pipeline_args=[], tmp_dir=str(output / 'tmp'), unique_id='1')
    evaluator.Executor(context).Do(inputs, {specs.EVALUATION_KEY: [evaluation], specs.BLESSING_KEY: [blessing]},
                                   exec_properties)
    return evaluation, blessing


def _side_by_side(root, name, examples, candidate, baseline, eval_config, **properties):
    ours = _run(root, name, examples, candidate, baseline, eval_config, evaluator.AUTO, **properties)
    theirs = _run(root, name, examples, candidate, baseline, eval_config, evaluator.TFMA, **properties)
    return ours, theirs


def _metrics(evaluation_uri):
    """{slice key: {metric key: value}} of TFMA's metrics file, keys as serialized protos."""
    result = {}
    for record in tfma.load_metrics(evaluation_uri):
        values = {}
        for kv in record.metric_keys_and_values:
            kind = kv.value.WhichOneof('type')
            matrices = kv.value.confusion_matrix_at_thresholds.matrices
            values[kv.key.SerializeToString(deterministic=True)] = (
                kv.value.double_value.value if kind == 'double_value'
                else [(m.threshold, m.true_positives, m.false_positives, m.true_negatives, m.false_negatives,
                       m.precision, m.recall, m.false_positive_rate, m.false_omission_rate, m.f1, m.accuracy)
                      for m in matrices] if kind == 'confusion_matrix_at_thresholds'
                else kind)
        result[record.slice_key.SerializeToString(deterministic=True)] = values
    return result


def _close(a, b):
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOLERANCE
    return a == b


def _largest_difference(ours, theirs):
    largest = 0.0
    for slice_key, values in theirs.items():
        for key, value in values.items():
            if isinstance(value, float) and math.isfinite(value):
                largest = max(largest, abs(value - ours[slice_key][key]))
    return largest


def _validation(evaluation_uri):
    result = tfma.load_validation_result(evaluation_uri)
    failures = sorted(
        (per_slice.slice_key.SerializeToString(deterministic=True), f.metric_key.SerializeToString(deterministic=True),
         round(f.metric_value.double_value.value, 9), f.metric_threshold.SerializeToString(deterministic=True))
        for per_slice in result.metric_validations_per_slice for f in per_slice.failures)
    details = sorted((d.slicing_spec.SerializeToString(deterministic=True), d.num_matching_slices)
                     for d in result.validation_details.slicing_details)
    return (result.validation_ok, failures, details, sorted(s.SerializeToString() for s in result.missing_slices),
            result.rubber_stamp, result.missing_thresholds)


def _assert_same(ours, theirs, examples_evaluated=None):
    (evaluation, blessing), (tfma_evaluation, tfma_blessing) = ours, theirs
    assert evaluation.get_string_custom_property(evaluator.PATH_PROPERTY) == evaluator.IN_PROCESS
    assert tfma_evaluation.get_string_custom_property(evaluator.PATH_PROPERTY) == evaluator.TFMA
    mine, reference = _metrics(evaluation.uri), _metrics(tfma_evaluation.uri)
    assert set(mine) == set(reference)
    for slice_key in reference:
        assert set(mine[slice_key]) == set(reference[slice_key]), slice_key
        for key, value in reference[slice_key].items():
            assert _close(mine[slice_key][key], value), (slice_key, key, mine[slice_key][key], value)
    assert _validation(evaluation.uri) == _validation(tfma_evaluation.uri)
    # What tfma.load_eval_result reads: the same slices, plots and config.
    result, reference_result = tfma.load_eval_result(evaluation.uri), tfma.load_eval_result(tfma_evaluation.uri)
    assert sorted(map(str, (s for s, _ in result.slicing_metrics))) == sorted(
        map(str, (s for s, _ in reference_result.slicing_metrics)))
    assert sorted(map(str, (s for s, _ in result.plots))) == sorted(map(str, (s for s, _ in reference_result.plots)))
    assert result.config == reference_result.config
    assert sorted(os.listdir(blessing.uri)) == sorted(os.listdir(tfma_blessing.uri))
    for name in ('blessed', 'current_model_id', 'baseline_model_id'):
        assert blessing.get_int_custom_property(name) == tfma_blessing.get_int_custom_property(name), name
    for name in ('current_model_uri', 'baseline_model_uri', slice_gates.REASON_PROPERTY):
        assert blessing.get_string_custom_property(name) == tfma_blessing.get_string_custom_property(name), name
    assert evaluation.get_string_custom_property(slice_gates.SLICES_PROPERTY) == (
        tfma_evaluation.get_string_custom_property(slice_gates.SLICES_PROPERTY))
    gates = slice_gates.load_gates(evaluation.get_string_custom_property(slice_gates.GATES_PROPERTY))
    tfma_gates = slice_gates.load_gates(tfma_evaluation.get_string_custom_property(slice_gates.GATES_PROPERTY))
    assert [(g.gate, g.slice, g.passed) for g in gates] == [(g.gate, g.slice, g.passed) for g in tfma_gates]
    assert _close([(g.measured, g.baseline) for g in gates], [(g.measured, g.baseline) for g in tfma_gates])
    for name, value in tfma_evaluation.mlmd_artifact.custom_properties.items():
        if name.startswith(evaluator.METRIC_PREFIX):
            assert abs(evaluation.get_float_custom_property(name) - value.double_value) <= TOLERANCE, name
    if examples_evaluated is not None:
        assert evaluation.get_int_custom_property('evaluated_examples') == examples_evaluated
    return _largest_difference(mine, reference)


def _eval_count(examples):
    files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], 'eval'), '*'))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP'))


def test_the_taxi_model_on_the_sample_gets_tfmas_metrics_and_blessing(tmp_path, taxi_examples, taxi_models):
    ours, theirs = _side_by_side(tmp_path, 'sample', taxi_examples, taxi_models['candidate'], None, dag.eval_config())
    assert ours[1].get_int_custom_property('blessed') == 1
    _assert_same(ours, theirs, _eval_count(taxi_examples))
    # Every slice of SLICE_COLUMNS, and the ROC's confusion matrices the run views draw.
    assert len(_metrics(ours[0].uri)) > 20


def test_against_a_baseline_the_differences_and_change_thresholds_match(tmp_path, taxi_examples, taxi_models):
    ours, theirs = _side_by_side(tmp_path, 'baseline', taxi_examples, taxi_models['candidate'],
                                 taxi_models['baseline'], dag.eval_config())
    _assert_same(ours, theirs)
    keys = [tfma.metrics.MetricKey.from_proto(kv.key) for m in tfma.load_metrics(ours[0].uri)
            for kv in m.metric_keys_and_values]
    assert {k.model_name for k in keys} == {'candidate', 'baseline'} and any(k.is_diff for k in keys)


def test_a_failing_threshold_refuses_the_model_on_both_paths_for_the_same_reason(tmp_path, taxi_examples,
                                                                                  taxi_models):
    ours, theirs = _side_by_side(tmp_path, 'failing', taxi_examples, taxi_models['candidate'],
                                 taxi_models['baseline'], dag.eval_config(), min_auc=0.999, max_auc_drop=0.0)
    assert ours[1].get_int_custom_property('blessed') == 0
    assert os.listdir(ours[1].uri) == ['NOT_BLESSED']
    _assert_same(ours, theirs)
    assert ours[1].get_string_custom_property(slice_gates.REASON_PROPERTY).count('overall AUC') >= 1


# Small scorers: the probability is a column of the example, so each case chooses the predictions.
CARD_TRIPS, CASH_TRIPS = 800, 300


def _scored_examples(root):
    """An eval split of card trips (both classes) and cash trips (no tips), hours 0-23, with score columns:
    `good` (informative), `flat` (every prediction 0.5), `nan` (NaN for every tenth trip)."""
    rng = np.random.RandomState(1)
    rows = []
    for i in range(CARD_TRIPS + CASH_TRIPS):
        card = i < CARD_TRIPS
        label = int(card and rng.rand() < 0.6)
        good = float(np.clip(0.35 * label + 0.65 * rng.rand(), 0, 1))
        rows.append({'payment_type': b'Credit Card' if card else b'Cash', 'trip_start_hour': int(rng.randint(24)),
                     LABEL.name: label, 'good': good if card else 0.3 * good, 'flat': 0.5,
                     'nan': float('nan') if i % 10 == 0 else good})
    return scored_examples.eval_split(str(root / 'examples'), rows)


@pytest.fixture(scope='module')
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp('evaluator-scorers')
    models = {}
    for column in ('good', 'flat', 'nan'):
        export = str(root / f'export-{column}')
        scored_examples.save_scorer(column, export)
        models[column] = _model(root, column, export)
    return root, _scored_examples(root), models


def _scorer_config(*extra_specs):
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key=LABEL.name, prediction_key='probabilities')],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['payment_type']),
                       tfma.SlicingSpec(feature_keys=['payment_type', 'trip_start_hour'])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name='ExampleCount'), tfma.MetricConfig(class_name='Precision'),
            tfma.MetricConfig(class_name='Recall'),
            tfma.MetricConfig(class_name='ConfusionMatrixAtThresholds', config='{"thresholds": [0.25, 0.5, 0.75]}')
        ])] + list(extra_specs))


def test_a_slice_with_one_class_scores_as_tfma_scores_it(tmp_path, scored):
    _, examples, models = scored
    ours, theirs = _side_by_side(tmp_path, 'one-class', examples, models['good'], models['flat'], _scorer_config())
    _assert_same(ours, theirs)
    cash = [m for m in tfma.load_metrics(ours[0].uri) if [(k.column, k.bytes_value) for k in
                                                         m.slice_key.single_slice_keys] == [('payment_type', b'Cash')]]
    values = {kv.key.name: kv.value.double_value.value for kv in cash[0].metric_keys_and_values
              if kv.key.model_name == 'candidate' and not kv.key.is_diff and kv.value.HasField('double_value')}
    # No positives: TFMA's Riemann sum leaves out every NaN term (AUC 0), recall has no denominator.
    assert values['auc'] == 0 and math.isnan(values['recall']) and values['example_count'] == CASH_TRIPS


def test_a_threshold_on_a_slice_without_examples_fails_validation_on_both_paths(tmp_path, scored):
    _, examples, models = scored
    nowhere = tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name='AUC', per_slice_thresholds=[
        tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec(feature_values={'payment_type': 'Bitcoin'})],
                                     threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
                                         lower_bound={'value': 0.5})))])])
    ours, theirs = _side_by_side(tmp_path, 'empty-slice', examples, models['good'], None, _scorer_config(nowhere))
    _assert_same(ours, theirs)
    validation = tfma.load_validation_result(ours[0].uri)
    assert not validation.validation_ok and validation.missing_slices
    assert ours[1].get_int_custom_property('blessed') == 0


def test_nan_predictions_are_left_to_tfmas_executor(tmp_path, scored):
    _, examples, models = scored
    outcomes = []
    for engine in (evaluator.AUTO, evaluator.TFMA):
        try:
            evaluation, _ = _run(tmp_path, 'nan', examples, models['nan'], None, _scorer_config(), engine)
            outcomes.append((evaluation.get_string_custom_property(evaluator.PATH_PROPERTY),
                             evaluation.get_string_custom_property(evaluator.PATH_REASON_PROPERTY)))
        except Exception as e:  # TFMA's histogram cannot bucket NaN: whatever it does, both paths do
            outcomes.append((type(e), None))
    assert outcomes[0][0] == outcomes[1][0]
    if outcomes[0][0] == evaluator.TFMA:
        assert 'NaN' in outcomes[0][1]


def test_the_whole_split_is_judged_where_tfma_would_sample_it(tmp_path, scored):
    _, examples, models = scored
    evaluation, _ = _run(tmp_path, 'whole', examples, models['good'], None, _scorer_config(), evaluator.AUTO,
                         max_eval_examples=100)
    sampled, _ = _run(tmp_path, 'whole', examples, models['good'], None, _scorer_config(), evaluator.TFMA,
                      max_eval_examples=100)
    assert evaluation.get_int_custom_property('evaluated_examples') == CARD_TRIPS + CASH_TRIPS
    assert sampled.get_int_custom_property('evaluated_examples') <= 100
    assert sampled.get_int_custom_property('eval_examples') == CARD_TRIPS + CASH_TRIPS
    assert 'evaluation_engine is tfma' == sampled.get_string_custom_property(evaluator.PATH_REASON_PROPERTY)


def test_the_vectorised_counts_are_the_per_example_loops(tmp_path):
    """The gated slices' counts and the slicer's distinct values, vectorised, against the loops they replaced."""
    rng = np.random.RandomState(2)
    payments = np.array([b'Cash', b'Credit Card', b'', 'Carte bleue \u00e9'.encode()], dtype=object)[
        rng.randint(0, 4, 1000)]
    unique, inverse = model_evaluation.factorize(payments)
    expected_unique, expected_inverse = np.unique(payments, return_inverse=True)
    assert unique.tolist() == expected_unique.tolist() and inverse.tolist() == expected_inverse.tolist()
    labels, hours = rng.randint(0, 2, 1000), rng.randint(0, 24, 1000)
    rows = np.flatnonzero(rng.rand(1000) < 0.7)
    counts = evaluator.count_slices(labels, {'payment_type': (rows, payments[rows]),
                                             'trip_start_hour': (rows, hours[rows])})
    expected = {}
    for row in rows:
        for column, raw in (('payment_type', payments[row]), ('trip_start_hour', hours[row])):
            value = raw.decode() if isinstance(raw, bytes) else str(raw)
            expected.setdefault((column, value), [0, 0])[0 if labels[row] else 1] += 1
    assert {(c.column, c.value): [c.positives, c.negatives] for c in counts} == expected
