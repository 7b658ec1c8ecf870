"""The tuning's plain logic: the search space and how tuned values lay over the configured ones, the records
directory later runs read the last tuning from, the budget's config checks, and the schedule's tuning runs."""

import dataclasses
import os

import pytest

from components.tuner import tuning_records
from pipeline import dag
from pipeline.config import PipelineConfig
from scheduler import service
from taxi_model.hyperparameters import SEARCH_SPACE, Hyperparameters

pytestmark = pytest.mark.unit


def test_todays_values_are_in_the_search_space_and_round_trip():
    defaults = Hyperparameters()
    values = defaults.tuned_values()
    assert set(values) == set(SEARCH_SPACE)
    assert all(values[name] in choices for name, choices in SEARCH_SPACE.items())
    assert defaults.with_tuned(values) == defaults


def test_tuned_values_lay_over_the_configured_ones_and_bad_ones_are_refused():
    base = Hyperparameters(seed=7, batch_size=128)
    tuned = base.with_tuned({'learning_rate': 0.01, 'hidden_units': '128-64-32', 'embedding_dim': 16})
    assert tuned == dataclasses.replace(base, learning_rate=0.01, hidden_units=(128, 64, 32), embedding_dim=16)
    with pytest.raises(ValueError, match=r"\['dropout'\] are not in the search space"):
        base.with_tuned({'dropout': 0.5})
    with pytest.raises(ValueError, match='layer widths like 64-32'):
        base.with_tuned({'hidden_units': '64-x'})


def _record(values, uri, at):
    trial = tuning_records.Trial('0', values, 0.93, 'COMPLETED', 2.5)
    return dataclasses.replace(tuning_records.new_record(values, [trial], 'val_auc', uri, at, 3, 60.0, 100),
                               tuned_at=at)


def test_the_newest_record_ml_metadata_knows_is_the_last_tuning(tmp_path):
    directory = str(tmp_path / 'records')
    assert tuning_records.latest(directory) is None  # no directory yet: the defaults
    old = {'learning_rate': 0.001, 'hidden_units': '32-16', 'embedding_dim': 4}
    new = {'learning_rate': 0.005, 'hidden_units': '128-64', 'embedding_dim': 8}
    tuning_records.write(directory, _record(old, 'uri/old', 1000.0))
    tuning_records.write(directory, _record(new, 'uri/new', 2000.0))
    (tmp_path / 'records' / 'junk.json').write_text('{not json')
    latest = tuning_records.latest(directory)
    assert latest.values == new and latest.artifact_uri == 'uri/new' and latest.score == 0.93
    assert latest.trials[0].seconds == 2.5
    # A record whose artifact was never published (the run died after writing it) is passed over.
    skipped = []
    found = tuning_records.latest(directory, lambda uri: uri == 'uri/old', log=lambda *a: skipped.append(a))
    assert found.values == old
    assert len(skipped) == 1 and 'uri/new' in skipped[0]
    assert not [name for name in os.listdir(directory) if name.endswith('.partial')]


def test_the_tuning_budget_is_checked_and_tune_travels_as_a_kfp_integer(tmp_path):
    with pytest.raises(ValueError, match='tuning needs tuning_max_trials'):
        PipelineConfig.for_workspace(str(tmp_path), tuning_max_trials=0)
    with pytest.raises(ValueError, match='bulk_inference_splits must name'):
        PipelineConfig.for_workspace(str(tmp_path), bulk_inference_splits=' , ')
    config = PipelineConfig.for_workspace(str(tmp_path), tune=True)
    [tune] = [p for p in dag.RUNTIME_PARAMETERS if p.name == 'tune']
    assert tune.value(config) == 1 and tune.ptype is int
    assert config.tuning_records_dir == os.path.join(config.pipeline_root, 'tuning_records')


def test_a_local_tuner_is_keyed_on_the_newest_tuning_so_a_cached_answer_is_never_stale(tmp_path):
    config = PipelineConfig.for_workspace(str(tmp_path))
    assert dag._known_tuning(config) == ''
    path = tuning_records.write(config.tuning_records_dir, _record(Hyperparameters().tuned_values(), 'u', 5.0))
    assert dag._known_tuning(config) == os.path.basename(path)


def test_the_tuning_cron_starts_runs_that_tune(tmp_path, monkeypatch):
    started = []

    class Child:
        stdout = iter(['ok\n'])

        def __init__(self, command, **kwargs):
            started.append(command)

        def wait(self):
            return 0
    monkeypatch.setattr(service.subprocess, 'Popen', Child)
    scheduler = service.Scheduler(service.Settings(str(tmp_path), str(tmp_path / 'data'), tune_cron='0 4 * * 0'),
                                  emit_line=lambda line: None)
    assert 'tuning runs on cron' in ', '.join(scheduler._describe())
    scheduler.run(scheduler.tuning_trigger())
    scheduler.run(service.Trigger(service.SCHEDULE, {'cron': '0 3 * * *'}))
    assert '--tune' in started[0] and '--tune' not in started[1]
