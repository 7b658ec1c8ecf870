"""What the Trainer exports besides the model: TF Serving's warm-up records, the
declared missing-value markers (both read back as a server reads them), and
what the version learned from: training statistics, schema, explanation baseline."""

import json
import os

import tensorflow_data_validation as tfdv

import schemas
import pytest

from foundation.calibration import Calibration
from foundation.model_files import CALIBRATION_FILE, SCHEMA_FILE, TRAINING_STATISTICS_FILE
from serving.servable import read_missing_values, read_signature_defs, read_warmup_requests
from taxi_model import contract
from taxi_model.features import FEATURES

pytestmark = pytest.mark.e2e


def test_pushed_model_carries_warmup_requests_for_every_client_signature(first_run):
    pushed = first_run[1].pushed_to
    replayed = sorted(getattr(log, log.WhichOneof('log_type')).request.model_spec.signature_name
                      for log in read_warmup_requests(pushed))
    assert replayed == sorted(contract.CLIENT_SIGNATURES)


def test_signatures_carry_tf_servings_method_names(first_run):
    signature_defs = read_signature_defs(first_run[1].pushed_to)
    for name, method in contract.CLIENT_SIGNATURES.items():
        assert signature_defs[name].method_name == method, name


def test_missing_value_markers_are_declared_for_every_raw_input(first_run):
    pushed = first_run[1].pushed_to
    declared = read_missing_values(pushed)
    signature_defs = read_signature_defs(pushed)
    assert set(declared) == {contract.PREDICT_RAW, contract.EXPLAIN}
    for signature in declared:
        assert set(declared[signature]) == set(signature_defs[signature].inputs)
    with open(os.path.join(pushed, contract.MISSING_VALUES_FILE)) as f:
        assert json.load(f) == declared


def test_pushed_version_carries_the_statistics_and_schema_it_was_trained_with(first_run):
    _, result, _ = first_run
    pushed = result.pushed_to
    carried = tfdv.load_stats_binary(os.path.join(pushed, TRAINING_STATISTICS_FILE))
    produced = tfdv.load_stats_binary(os.path.join(result.outputs['StatisticsGen']['statistics'], 'Split-train',
                                                   'FeatureStats.pb'))
    assert carried == produced
    assert tfdv.load_schema_text(os.path.join(pushed, SCHEMA_FILE)) == tfdv.load_schema_text(schemas.CURATED_SCHEMA)


def test_explanation_states_the_baseline_and_the_outlier_threshold(first_run):
    with open(os.path.join(first_run[1].pushed_to, contract.EXPLANATION_FILE)) as f:
        explanation = json.load(f)
    assert set(explanation['baseline']['features']) == {f.name for f in FEATURES}
    assert 0 <= explanation['baseline_probability'] <= 1
    assert explanation['outliers']['threshold'] > 0


def test_pushed_version_carries_its_calibration_on_the_whole_eval_split(first_run):
    _, result, _ = first_run
    with open(os.path.join(result.pushed_to, CALIBRATION_FILE)) as f:
        carried = Calibration.from_json(f.read())
    assert carried.examples == result.rows['eval']
    assert 0 < carried.label_rate < 1
    # The realised AUC on eval is the one the Evaluator measured (TFMA's, on its thresholds: close, not equal).
    assert carried.reference.realised_auc == pytest.approx(result.metrics['auc'], abs=0.01)
    assert set(carried.attributions.mean_abs) == {f.name for f in FEATURES}
    assert carried.seconds > 0
