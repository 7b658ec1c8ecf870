"""A SavedModel is loaded once per process while its files stay the same, and again once they change."""

import os
import time

import pytest
import tensorflow as tf

from foundation import saved_models

pytestmark = pytest.mark.component


def _save(path, factor):
    module = tf.Module()
    module.factor = tf.Variable(float(factor))
    module.scale = tf.function(lambda x: x * module.factor, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(path))


def test_the_same_files_give_the_same_object_and_rewritten_files_a_new_one(tmp_path):
    _save(tmp_path / 'model', 2)
    first = saved_models.load(str(tmp_path / 'model'))
    assert saved_models.load(str(tmp_path / 'model')) is first
    assert float(first.scale(tf.constant(3.0))) == 6.0

    time.sleep(0.01)  # a new modification time even where the clock is coarse
    _save(tmp_path / 'model', 5)
    again = saved_models.load(str(tmp_path / 'model'))
    assert again is not first
    assert float(again.scale(tf.constant(3.0))) == 15.0


def test_only_the_last_models_are_kept(tmp_path):
    paths = [str(tmp_path / f'm{i}') for i in range(saved_models.KEPT + 1)]
    for i, path in enumerate(paths):
        _save(path, i + 1)
    first = saved_models.load(paths[0])
    for path in paths[1:]:
        saved_models.load(path)
    assert saved_models.load(paths[0]) is not first  # pushed out by the later ones, loaded again
    assert saved_models.load(paths[-1]) is saved_models.load(paths[-1])


def test_a_missing_model_fails_as_tensorflow_says(tmp_path):
    with pytest.raises(OSError, match='SavedModel file does not exist'):
        saved_models.load(os.path.join(str(tmp_path), 'absent'))
