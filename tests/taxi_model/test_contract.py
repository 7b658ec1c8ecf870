"""The serving contract: rows become requests the exported model reads as intended."""

import math

import numpy as np
import pytest
import tensorflow as tf

from taxi_model import contract
from taxi_model.features import FEATURES, LABEL

pytestmark = pytest.mark.e2e


ROW = {'trip_miles': '1.5', 'fare': '7.25', 'trip_seconds': '480', 'pickup_latitude': '41.9',
       'pickup_longitude': '-87.6', 'dropoff_latitude': '41.88', 'dropoff_longitude': '-87.63',
       'trip_start_hour': '14', 'trip_start_day': '3', 'trip_start_month': '6', 'pickup_community_area': '8',
       'dropoff_community_area': '32', 'payment_type': 'Cash', 'company': 'Flash Cab', 'tips': '2.0'}


def test_raw_inputs_carry_every_feature_in_its_type_and_never_the_label():
    inputs = contract.raw_inputs([ROW, ROW])
    assert set(inputs) == {f.name for f in FEATURES}
    assert LABEL.tips_column not in inputs
    for f in FEATURES:
        assert len(inputs[f.name]) == 2
        dtype = tf.string if inputs[f.name].dtype == object else tf.as_dtype(inputs[f.name].dtype)
        assert dtype.name == f.raw_type.tf_dtype, f.name


@pytest.mark.parametrize('name', ['trip_miles', 'trip_seconds', 'company'])
def test_a_missing_value_becomes_its_types_marker(name):
    instance = contract.to_raw_instance({**ROW, name: ''})
    marker = contract.MISSING[next(f.raw_type for f in FEATURES if f.name == name)]
    value = instance[name]
    assert (math.isnan(value) and math.isnan(marker)) if isinstance(marker, float) else value == marker


def test_a_missing_value_is_left_out_of_the_tf_example():
    example = contract.to_tf_example({**ROW, 'company': ''})
    assert 'company' not in example.features.feature
    assert example.features.feature['fare'].float_list.value == pytest.approx([7.25])


@pytest.mark.parametrize('convert', [contract.to_raw_instance, contract.to_tf_example])
def test_a_value_of_the_wrong_type_names_its_column(convert):
    with pytest.raises(ValueError, match='trip_seconds'):
        convert({**ROW, 'trip_seconds': 'eight minutes'})


def test_unknown_signature_is_refused():
    with pytest.raises(ValueError, match='serving_raw'):
        contract.inputs_for('explain_everything', [ROW])


def test_both_predict_signatures_of_the_pushed_model_agree_on_missing_values(first_run):
    """serving_raw's markers mean exactly what a left-out value means to serving_default."""
    model = tf.saved_model.load(first_run[1].pushed_to)
    # One optional column of each type the raw signature marks: float, int, string.
    card = {**ROW, 'payment_type': 'Credit Card'}  # card trips tip: probabilities far from 0 and 1
    rows = [card, {**card, 'pickup_latitude': '', 'trip_seconds': '', 'company': '', 'dropoff_community_area': ''}]
    outputs = {signature: contract.probabilities(model.signatures[signature](
        **{k: tf.constant(v) for k, v in contract.inputs_for(signature, rows).items()}))
        for signature in (contract.PREDICT_RAW, contract.PREDICT_EXAMPLES)}
    assert all(0.01 < p < 0.99 for p in outputs[contract.PREDICT_EXAMPLES])
    np.testing.assert_allclose(outputs[contract.PREDICT_RAW], outputs[contract.PREDICT_EXAMPLES], rtol=1e-5)
