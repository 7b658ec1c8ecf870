"""The Trainer's plain logic on its own: the steps it takes and what the model records of them."""

import pytest

from components.trainer import training_record

pytestmark = pytest.mark.unit


def test_steps_cover_the_rows_the_epochs_ask_for_and_at_least_one():
    assert training_record.steps_for(2.0, 1000, 64) == 32
    assert training_record.steps_for(0.001, 10, 64) == 1


def test_train_steps_zero_needs_epochs_rows_and_a_batch_size():
    assert training_record.steps_covering(1.5, 3000, 100) == 45
    for epochs, rows, batch_size in ((0.0, 3000, 100), (1.0, None, 100), (1.0, 3000, None)):
        with pytest.raises(ValueError, match='train_steps 0 takes its steps from train_epochs'):
            training_record.steps_covering(epochs, rows, batch_size)


def test_the_model_records_the_epochs_only_when_rows_and_batch_size_are_known():
    assert training_record.model_properties(45, 100, 3000) == {
        'train_steps': 45, 'train_batch_size': 100, 'train_rows': 3000, 'train_epochs': 1.5}
    assert training_record.model_properties(45, 100, None) == {'train_steps': 45, 'train_batch_size': 100}
    assert training_record.model_properties(45, None, 3000) == {'train_steps': 45}
    assert isinstance(training_record.model_properties(45, 100, 3000)['train_epochs'], float)


def test_what_the_run_fn_reports_is_recorded_as_integers_and_nothing_else():
    assert training_record.reported({'steps_taken': 300.0, 'steps_kept': '200', 'auc': 0.8}) == {
        'steps_taken': 300, 'steps_kept': 200}
    assert training_record.reported({}) == {}
