"""The estimator on a trained taxi model and traffic it never saw: the realised accuracy and AUC fall in
the interval estimated without labels, on clean traffic and on covariate-drifted traffic; traffic whose
labels moved is caught once labels come; and the served rows, read back from the request log, are
explained as the model explains them."""

import os
import random
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas

from foundation import alerts
from foundation import calibration as model_calibration
from foundation.model_files import CALIBRATION_FILE, SCHEMA_FILE
from monitoring import (attribution_drift, before_labels, label_drift, monitor, performance_estimation,
                        request_logs, served_explanations)
from support import shifted_traffic
from serving import feedback
from support.log_times import END, HOUR
from support.samples import as_dicts
from support.served_traffic import LogWriter
from support.small_model import train_and_export, typed_rows
from taxi_model import contract
from taxi_model.features import LABEL

pytestmark = pytest.mark.component

TRAIN, EVAL = 3000, 3000
WINDOWS, WINDOW = 10, 1000


@pytest.fixture(scope='module')
def split(taxi_rows):
    """The sample shuffled, then split: the rows of the file come in runs (a third of them card trips
    in one stretch, two fifths in the next), so an ordered split would hand traffic another mix of
    P(label | features) than eval had, and test the file rather than the estimator."""
    header, rows = taxi_rows
    rows = list(rows)
    random.Random(0).shuffle(rows)
    return header, rows[:TRAIN], rows[TRAIN:TRAIN + EVAL], rows[TRAIN + EVAL:]


@pytest.fixture(scope='module')
def model(split, tmp_path_factory):
    """(SavedModel directory, loaded model, the calibration it carries)."""
    header, train, evaluation, _ = split
    directory = train_and_export(typed_rows(header, train), str(tmp_path_factory.mktemp('estimated')), steps=300,
                                 evaluation_rows=typed_rows(header, evaluation))
    with open(os.path.join(directory, CALIBRATION_FILE)) as f:
        return directory, tf.saved_model.load(directory), model_calibration.Calibration.from_json(f.read())


def _call(loaded, signature, rows):
    inputs = {k: tf.constant(v) for k, v in contract.raw_inputs(rows).items()}
    return {k: v.numpy() for k, v in loaded.signatures[signature](**inputs).items()}


def _labels(rows):
    def column(name):
        return np.array([float(r[name]) if r.get(name) else np.nan for r in rows])
    return contract.labels_from_feedback({LABEL.tips_column: column(LABEL.tips_column)},
                                         {LABEL.fare_column: column(LABEL.fare_column)})


def _windows(kind, split):
    header, _, _, traffic = split
    rows = as_dicts(header, traffic)
    for w in range(WINDOWS):
        if kind == 'clean':
            yield shifted_traffic.clean(rows, WINDOW, seed=w)
        elif kind == 'covariate':
            yield shifted_traffic.covariate_shifted(rows, WINDOW, seed=w)
        else:  # the same passengers tipping half as much: inputs as before, labels not
            yield [dict(r, tips=f'{float(r["tips"]) / 2:.2f}') if r['tips'] else r
                   for r in shifted_traffic.clean(rows, WINDOW, seed=w)]


def _judged(kind, split, model):
    """Per window: (estimate on every row, comparisons on the labelled rows, labels)."""
    _, loaded, calibration = model
    found = []
    for rows in _windows(kind, split):
        scores = np.reshape(_call(loaded, contract.PREDICT_RAW, rows)[contract.PROBABILITIES], -1)
        labels = _labels(rows)
        known = np.isfinite(labels)
        estimate = performance_estimation.estimate(scores, calibration)
        _, comparisons = performance_estimation.side_by_side(scores[known], labels[known], calibration)
        found.append((estimate, comparisons, labels[known]))
    return found


@pytest.fixture(scope='module')
def judged(split, model):
    return {kind: _judged(kind, split, model) for kind in ('clean', 'covariate', 'concept')}


@pytest.mark.parametrize('kind', ['clean', 'covariate'])
def test_the_realised_value_falls_in_the_estimated_interval(judged, kind):
    for metric in ('accuracy', 'auc'):
        inside = [next(c for c in comparisons if c.metric == metric).within for _, comparisons, _ in judged[kind]]
        # A 95% interval: one window in ten outside is chance, more is a broken estimate.
        assert sum(inside) >= WINDOWS - 1, (kind, metric, inside)


def test_covariate_drift_lowers_the_estimate_before_any_label(judged, model):
    _, _, calibration = model
    clean = [estimate for estimate, _, _ in judged['clean']]
    shifted = [estimate for estimate, _, _ in judged['covariate']]
    # More card trips, where whether a tip comes is hard to tell: AUC and accuracy fall, and the label
    # rate the calibration expects rises with the cards.
    assert np.median([e.auc.value for e in shifted]) < min(e.auc.interval[0] for e in clean)
    assert np.median([e.accuracy.value for e in shifted]) < min(e.accuracy.interval[0] for e in clean)
    assert np.median([e.expected_label_rate for e in shifted]) > calibration.label_rate + 0.1
    for estimate in clean:
        assert abs(estimate.expected_label_rate - calibration.label_rate) < 0.05


def test_labels_that_moved_fall_below_the_interval_drift_and_are_concept_drift(judged, model):
    _, _, calibration = model
    for estimate, comparisons, labels in judged['concept']:
        accuracy = next(c for c in comparisons if c.metric == 'accuracy')
        assert accuracy.below, accuracy
        found = label_drift.concept_drift(comparisons, estimate, inputs_drifted=False)
        assert found.signal and 'accuracy' in found.dropped
        assert label_drift.label_drift(labels, calibration.label_rate, calibration.examples).drifted
    clean = judged['clean']
    # The realised value is outside a 95% interval now and then by chance: once in ten windows at most.
    assert sum(label_drift.concept_drift(c, e, inputs_drifted=False).signal for e, c, _ in clean) <= 1
    assert not any(label_drift.label_drift(labels, calibration.label_rate, calibration.examples).drifted
                   for _, _, labels in clean)


def test_the_covariate_shift_moves_the_label_rate_and_label_drift_says_so_apart(judged, model):
    _, _, calibration = model
    shifted = judged['covariate']
    assert all(label_drift.label_drift(labels, calibration.label_rate, calibration.examples).drifted
               for _, _, labels in shifted)
    # The estimate foresaw the drop: not concept drift, even were the inputs not known to drift.
    assert sum(label_drift.concept_drift(c, e, inputs_drifted=False).signal for e, c, _ in shifted) <= 1


def test_served_rows_read_back_from_the_request_log_are_explained_as_the_model_explains_them(split, model,
                                                                                               tmp_path):
    _, loaded, calibration = model
    header, _, _, traffic = split
    rows = as_dicts(header, traffic[:300])
    rows[0] = dict(rows[0], fare='', payment_type='', trip_start_hour='')  # missing values are left out of the log
    window, version_dir = _logged_window(split, model, tmp_path, rows, 'logs')
    explain = served_explanations.explainer(version_dir, calibration.attributions)
    from_log = explain(window)
    direct = _call(loaded, contract.EXPLAIN, rows)
    for feature, key in calibration.attributions.outputs.items():
        np.testing.assert_allclose(from_log[feature], direct[key], rtol=1e-5, atol=1e-5)


def _logged_window(split, model, tmp_path, rows, name):
    """`rows` as the server logs them, read back as the monitor reads a window: (table, version)."""
    directory, _, _ = model
    base = os.path.join(str(tmp_path), 'models')
    os.makedirs(base, exist_ok=True)
    os.symlink(directory, os.path.join(base, '1'))
    LogWriter(base, 1).write(str(tmp_path / name), rows, END - 1000, 'request')
    schema = tfdv.load_schema_text(schemas.CURATED_SCHEMA)
    tables, _, _ = request_logs.read_by_version(
        str(tmp_path / name), lambda v: request_logs.reading_schema(schema, {contract.PROBABILITIES: schema_pb2.FLOAT}),
        END - 10_000, END)
    return tables[1], os.path.join(base, '1')


def test_a_pass_judges_a_logged_window_before_and_after_its_labels(split, model, tmp_path):
    header, _, _, traffic = split
    rows = shifted_traffic.covariate_shifted(as_dicts(header, traffic), WINDOW, seed=99)
    window, version_dir = _logged_window(split, model, tmp_path, rows, 'shifted')
    calibration = before_labels.read_calibration(version_dir)
    assert calibration == model[2]
    scores = request_logs.scalars(window.column(contract.PROBABILITIES), np.nan).astype(float)
    before = before_labels.judge(calibration, scores)
    assert before.estimate.examples == WINDOW and before.label_drift is None and before.concept_drift is None
    # Minimums between clean traffic's estimate and this traffic's: the drop alerts before any label.
    raised = before.alerts(7, min_accuracy=0.6, min_auc=before.estimate.auc.value + 0.02)
    assert [(a['alert'], a['metric']) for a in raised] == [(alerts.ESTIMATED_PERFORMANCE, 'auc')]
    labels = _labels(rows)
    known = np.isfinite(labels)
    after = before_labels.judge(calibration, scores, scores[known], labels[known], inputs_drifted=True)
    kinds = {a['alert'] for a in after.alerts(7, min_accuracy=0.6, min_auc=0.5)}
    assert kinds == {alerts.LABEL_DRIFT}
    assert {c.metric for c in after.comparisons} == {'accuracy', 'auc'}
    assert after.record()['label_drift']['label_rate'] > calibration.label_rate + 0.1


def test_attribution_drift_on_a_logged_clean_window_is_quiet(split, model, tmp_path):
    header, _, _, traffic = split
    rows = shifted_traffic.clean(as_dicts(header, traffic), attribution_drift.SAMPLE, seed=5)
    window, version_dir = _logged_window(split, model, tmp_path, rows, 'clean')
    calibration = before_labels.read_calibration(version_dir)
    explain = served_explanations.explainer(version_dir, calibration.attributions)
    scores = request_logs.scalars(window.column(contract.PROBABILITIES), np.nan).astype(float)
    found = before_labels.judge(calibration, scores, window=window, explain=explain)
    assert found.attribution_drift.examples == attribution_drift.SAMPLE
    assert found.attribution_drift.drifted == []
    assert found.alerts(7, min_accuracy=0.6, min_auc=0.7) == []


def test_the_monitoring_pass_estimates_each_version_and_alerts_before_and_after_labels(split, model, tmp_path):
    header, _, _, traffic = split
    directory, _, _ = model
    # The pipeline's Trainer puts the schema beside the model; the monitor judges only versions that carry one.
    os.makedirs(os.path.join(directory, 'assets.extra'), exist_ok=True)
    shutil.copy(schemas.CURATED_SCHEMA, os.path.join(directory, SCHEMA_FILE))
    base = tmp_path / 'models'
    base.mkdir()
    os.symlink(directory, base / '1')
    rows = shifted_traffic.covariate_shifted(as_dicts(header, traffic), WINDOW, seed=7)
    LogWriter(str(base), 1).write(str(tmp_path / 'logs'), rows, END - 1000, 'shifted')

    def settings(feedback_dir=None):
        return monitor.Settings(str(tmp_path / 'logs'), str(base), END, HOUR, contract.PROBABILITIES,
                                contract.IS_OUTLIER, feedback_dir=feedback_dir, labeler=contract.labels_from_feedback,
                                label_features=contract.FEEDBACK_FEATURES, min_auc=0.9)
    before = monitor.monitor(settings())
    report, = before.reports
    assert report.estimation.estimate.examples == WINDOW and report.estimation.label_drift is None
    assert report.estimation.estimate.auc.value < 0.9
    assert {a['alert'] for a in report.alerts} == {alerts.ESTIMATED_PERFORMANCE}

    store = feedback.FeedbackStore(str(tmp_path / 'feedback'))
    store.append(feedback.parse_all([{'request_id': 'shifted', 'example': i, 'tips': float(r['tips'])}
                                     for i, r in enumerate(rows) if r['tips']]), source='test')
    after = monitor.monitor(settings(str(tmp_path / 'feedback')))
    report, = after.reports
    kinds = {a['alert'] for a in report.alerts}
    assert {alerts.ESTIMATED_PERFORMANCE, alerts.LIVE_METRIC, alerts.LABEL_DRIFT} <= kinds
    assert report.estimation.labelled.examples == report.live.examples
    assert {c.metric for c in report.estimation.comparisons} == {'accuracy', 'auc'}
