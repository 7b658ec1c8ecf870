"""The calibration an exported model carries, checked against the model itself: what it says of the
eval split (size, label rate, realised accuracy and AUC) is what the exported signatures give on those
rows, and its attribution reference is what `explain` says of them."""

import json
import os
import random

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics

from foundation import calibration as model_calibration
from foundation.model_files import CALIBRATION_FILE
from support.samples import as_dicts
from support.small_model import train_and_export, typed_rows
from taxi_model import contract
from taxi_model.export import ATTRIBUTION_SAMPLE
from taxi_model.features import FEATURES

pytestmark = pytest.mark.component


@pytest.fixture(scope='module')
def exported(taxi_rows, tmp_path_factory):
    header, rows = taxi_rows
    rows = list(rows)
    random.Random(1).shuffle(rows)
    train, evaluation = rows[:2000], rows[2000:3500]
    directory = train_and_export(typed_rows(header, train), str(tmp_path_factory.mktemp('calibrated')), steps=200,
                                 evaluation_rows=typed_rows(header, evaluation))
    return directory, as_dicts(header, evaluation)


def _call(directory, signature, rows):
    loaded = tf.saved_model.load(directory)
    inputs = {k: tf.constant(v) for k, v in contract.raw_inputs(rows).items()}
    return {k: v.numpy() for k, v in loaded.signatures[signature](**inputs).items()}


def _training_labels(rows):
    """The training transform's rule, in float32 as it computes it: a tip over a fifth of the fare; no
    fare, or no tip, is no big tip."""
    fifth = np.float32(0.2)
    return np.array([int(bool(r['fare']) and np.float32(r['tips'] or 0) > fifth * np.float32(r['fare']))
                     for r in rows])


def test_the_model_carries_what_its_eval_split_says(exported):
    directory, evaluation = exported
    with open(os.path.join(directory, CALIBRATION_FILE)) as f:
        document = json.load(f)
    carried = model_calibration.Calibration.from_json(json.dumps(document))
    labels = _training_labels(evaluation)
    scores = np.reshape(_call(directory, contract.PREDICT_RAW, evaluation)[contract.PROBABILITIES], -1)
    assert carried.examples == len(evaluation) and carried.positives == labels.sum()
    assert document['label_rate'] == pytest.approx(labels.mean())
    assert carried.reference.realised_auc == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-4)
    assert carried.reference.realised_accuracy == pytest.approx(np.mean((scores >= 0.5) == (labels == 1)), abs=1e-3)
    # Calibrated probabilities on the rows it was fitted to average to their label rate.
    assert carried.apply(scores).mean() == pytest.approx(labels.mean(), abs=0.01)
    assert 0 <= carried.ece_after and 0 <= carried.ece_before
    assert len(carried.replicates) == model_calibration.REPLICATES
    # What it cost the export is recorded (the Trainer adds its reading of the eval split).
    assert carried.seconds > 0


def test_the_attribution_reference_is_what_explain_says_of_the_eval_split(exported):
    directory, evaluation = exported
    with open(os.path.join(directory, CALIBRATION_FILE)) as f:
        reference = model_calibration.Calibration.from_json(f.read()).attributions
    assert reference.signature == contract.EXPLAIN and reference.examples == ATTRIBUTION_SAMPLE
    assert reference.outputs == {f.name: contract.attribution_key(f.name) for f in FEATURES}
    explained = _call(directory, contract.EXPLAIN, evaluation)
    everywhere = {name: float(np.abs(explained[key]).mean()) for name, key in reference.outputs.items()}
    # A sample of a third of the rows: each feature's mean within sampling error of the whole split's.
    for name, value in everywhere.items():
        spread = np.abs(explained[reference.outputs[name]]).std() / np.sqrt(ATTRIBUTION_SAMPLE)
        assert abs(reference.mean_abs[name] - value) < 4 * spread + 1e-6, name
    assert max(reference.mean_abs, key=reference.mean_abs.get) == max(everywhere, key=everywhere.get)
