"""Training is validated about every 64,000 examples, whatever the batch, and always at the last step."""

import pytest

from taxi_model.training import validation_schedule

pytestmark = pytest.mark.unit


@pytest.mark.parametrize('batch_size', [32, 64, 256, 1024])
def test_a_larger_batch_is_checked_as_often_per_example(batch_size):
    steps = 4 * 1_000_000 // batch_size  # four epochs of a million rows
    checks, every = validation_schedule(steps, batch_size)
    assert checks * every >= steps > (checks - 1) * every  # the last check is at (or just past) the last step
    assert 0.9 * 64_000 <= every * batch_size <= 1.1 * 64_000


def test_short_training_is_checked_once_at_its_end():
    assert validation_schedule(628, 64) == (1, 628)
    assert validation_schedule(157, 256) == (1, 157)
    assert validation_schedule(1, 64) == (1, 1)
