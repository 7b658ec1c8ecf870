"""The eval split through the trained model's explain signature: what the run
report shows as feature importance and outlier share."""

import os
import shutil

import pytest
import tensorflow as tf

from components.baseline_model import SERVING_SUBDIR
from pipeline import model_insights
from taxi_model.features import FEATURES
from taxi_model.preprocessing import OUTLIER_SHARE

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def insights(first_run):
    _, result, _ = first_run
    model = f"{result.outputs['Trainer']['model']}/{SERVING_SUBDIR}"
    return model_insights.explain_eval_split(model, result.outputs['CsvExampleGen']['examples'])


def test_importance_covers_every_feature_largest_first(insights):
    assert list(insights.importance) == sorted(insights.importance, key=lambda k: -insights.importance[k])
    assert set(insights.importance) == {f.name for f in FEATURES}
    assert all(value >= 0 for value in insights.importance.values())
    # In the taxi data, cash tips are not recorded: payment type decides most.
    assert next(iter(insights.importance)) == 'payment_type'


def test_eval_flag_rate_is_near_the_calibrated_share(insights):
    # Calibrated on the training split; the eval split is the same distribution.
    assert insights.examples > 500
    assert OUTLIER_SHARE / 5 <= insights.outlier_share <= OUTLIER_SHARE * 3


def test_the_same_model_and_split_are_explained_once_and_a_model_written_anew_again(first_run, insights, tmp_path,
                                                                                   monkeypatch):
    _, result, _ = first_run
    examples = result.outputs['CsvExampleGen']['examples']
    model = tmp_path / 'model'
    shutil.copytree(f"{result.outputs['Trainer']['model']}/{SERVING_SUBDIR}", model)
    cache = str(tmp_path / 'cache')
    assert model_insights.cached(str(model), examples, cache) == insights
    loads = []
    load = tf.saved_model.load
    monkeypatch.setattr(tf.saved_model, 'load', lambda path, *a, **k: loads.append(path) or load(path, *a, **k))
    assert model_insights.cached(str(model), examples, cache) == insights and loads == []
    # The same path written again (a workspace deleted and run again reuses artifact paths): explained anew.
    variables = next((model / 'variables').glob('*.data-*'))
    os.utime(variables, ns=(variables.stat().st_atime_ns, variables.stat().st_mtime_ns + 1))
    assert model_insights.cached(str(model), examples, cache) == insights and loads == [str(model)]
    assert len(os.listdir(cache)) == 2
