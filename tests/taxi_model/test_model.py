import numpy as np

import pytest

from taxi_model import features, model
from taxi_model.hyperparameters import Hyperparameters

pytestmark = pytest.mark.component


def _batch(n=32, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {}
    for f in features.FEATURES:
        if f.is_categorical:
            inputs[f.transformed_name] = rng.integers(0, f.num_categories, size=(n, 1))
        else:
            inputs[f.transformed_name] = rng.normal(size=(n, 1)).astype('float32')
    return inputs, rng.integers(0, 2, size=(n, 1))


def test_model_takes_one_input_per_feature_and_outputs_probabilities():
    m = model.build_keras_model(Hyperparameters())
    assert set(m.input_names) == {f.transformed_name for f in features.FEATURES}
    x, _ = _batch()
    p = m.predict(x, verbose=0)
    assert p.shape == (32, 1)
    assert np.all((p >= 0) & (p <= 1))


def test_a_training_step_changes_the_weights_and_lowers_the_loss():
    m = model.build_keras_model(Hyperparameters(learning_rate=0.05))
    x, y = _batch()
    before = [w.copy() for w in m.get_weights()]
    first = m.train_on_batch(x, y, return_dict=True)['loss']
    for _ in range(20):
        last = m.train_on_batch(x, y, return_dict=True)['loss']
    assert any(not np.allclose(a, b) for a, b in zip(before, m.get_weights()))
    assert last < first


def test_hyperparameters_round_trip_through_custom_config():
    hp = Hyperparameters(batch_size=8, hidden_units=(4, 2), learning_rate=0.1)
    assert Hyperparameters.from_custom_config(hp.to_custom_config()) == hp
    assert Hyperparameters.from_custom_config(None) == Hyperparameters()


def test_a_feature_with_steps_is_also_one_hot_in_fixed_bins_of_its_z_score_attributed_to_it():
    fare = features.feature('fare')
    encoder = model.build_encoder(Hyperparameters())
    x, _ = _batch()
    z = np.array([[-9.0], [-1.5], [0.0], [0.03], [4.5], [9.0]], dtype='float32')
    x = {name: value[:len(z)] for name, value in x.items()}
    x[fare.transformed_name] = z
    keys = model.representation_keys(fare)
    assert keys == (fare.transformed_name, f'{fare.transformed_name}_steps_onehot')
    onehot = encoder(x)[keys[1]].numpy()
    assert onehot.shape == (len(z), fare.steps + 2) and np.all(onehot.sum(axis=1) == 1)
    # Bin i holds z in [boundary i-1, boundary i): below the range bin 0, above it the last one.
    boundaries = np.array(model.step_boundaries(fare))
    assert list(onehot.argmax(axis=1)) == list(np.searchsorted(boundaries, z.reshape(-1), side='right'))
    assert onehot.argmax(axis=1)[0] == 0 and onehot.argmax(axis=1)[-1] == fare.steps + 1
