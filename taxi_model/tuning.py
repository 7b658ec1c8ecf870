"""Tuner module: `tuner_fn` for TFX's Tuner, searching `hyperparameters.SEARCH_SPACE` with KerasTuner.

`tuner_fn` is referenced by module path (`taxi_model.tuning.tuner_fn`). Each
trial builds the model of `taxi_model.model` with the trial's values laid over
the configured hyperparameters, trains it on the training split, transformed
as it is read (`taxi_model.inputs`), for `fn_args.train_steps` steps and scores it by its best validation AUC on
the eval split (`fn_args.eval_steps` batches per check).

KerasTuner's own `Tuner` insists on a Keras 3 model, and this model is Keras 2
(tf_keras, as tf.Transform and TFMA need), so trials run through KerasTuner's
framework-neutral `BaseTuner` with our `run_trial`: the oracle (random search),
its trial records and TFX's handling of the best values are KerasTuner's.

The budget is `custom_config['tuning']`: at most `max_trials` trials, and no
trial starts after `max_seconds` (a started trial finishes).
"""

from __future__ import annotations

import math
import time
from typing import Dict, List

import keras_tuner
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from taxi_model.hyperparameters import SEARCH_SPACE, Hyperparameters
from taxi_model.inputs import VALIDATION_BATCH, TransformedReader
from taxi_model.model import build_keras_model

OBJECTIVE = 'val_auc'
# A trial is validated this often (in steps), at least once at its end; its score is its best check.
VALIDATE_EVERY = 300
TUNING_KEY = 'tuning'


def search_space() -> keras_tuner.HyperParameters:
    """SEARCH_SPACE as KerasTuner hyperparameters (choices, unordered where they are text)."""
    hp = keras_tuner.HyperParameters()
    for name, choices in SEARCH_SPACE.items():
        hp.Choice(name, list(choices), ordered=not isinstance(choices[0], str))
    return hp


class _DeadlineOracle(keras_tuner.oracles.RandomSearchOracle):
    """Random search that starts no trial after its deadline (time.monotonic())."""

    def __init__(self, deadline: float, **kwargs):
        super().__init__(**kwargs)
        self.deadline = deadline

    def populate_space(self, trial_id):
        if time.monotonic() >= self.deadline:
            return {'status': keras_tuner.engine.trial.TrialStatus.STOPPED, 'values': None}
        return super().populate_space(trial_id)


class TaxiTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Runs each trial as the Trainer trains (same model, data and seed), for the trial's steps."""

    def __init__(self, oracle, base: Hyperparameters, **kwargs):
        super().__init__(oracle, **kwargs)
        self.base = base
        # Per trial id: its seconds and the validation AUC at each check.
        self.timings: Dict[str, float] = {}
        self.checks: Dict[str, List[float]] = {}

    def run_trial(self, trial, train, validation, train_steps: int, validation_steps: int):
        started = time.perf_counter()
        hp = self.base.with_tuned(trial.hyperparameters.values)
        import tf_keras as keras
        keras.utils.set_random_seed(hp.seed)
        model = build_keras_model(hp)
        checks = math.ceil(train_steps / VALIDATE_EVERY)
        history = model.fit(train(hp.batch_size), steps_per_epoch=math.ceil(train_steps / checks), epochs=checks,
                            validation_data=validation(VALIDATION_BATCH), validation_steps=validation_steps, verbose=0)
        scores = [float(v) for v in history.history[OBJECTIVE]]
        self.timings[trial.trial_id] = time.perf_counter() - started
        self.checks[trial.trial_id] = scores
        return {OBJECTIVE: max(scores)}

    def save_model(self, trial_id, model, step=0):
        """Nothing to keep: the Trainer trains the winner again, for the full steps."""


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """TFX Tuner entry point: the tuner and what its `search` is called with."""
    config = fn_args.custom_config or {}
    base = Hyperparameters.from_custom_config(config)
    budget = config.get(TUNING_KEY) or {}
    max_trials, max_seconds = int(budget.get('max_trials', 10)), float(budget.get('max_seconds', 600))
    if max_trials < 1 or max_seconds <= 0:
        raise ValueError(f'the tuning budget needs at least 1 trial and some time, got {max_trials} trials, '
                         f'{max_seconds:g} s')
    oracle = _DeadlineOracle(time.monotonic() + max_seconds, objective=keras_tuner.Objective(OBJECTIVE, 'max'),
                             max_trials=max_trials, hyperparameters=search_space(), seed=base.seed)
    tuner = TaxiTuner(oracle, base, directory=fn_args.working_dir, project_name='taxi_tuning', overwrite=True)
    reader = TransformedReader(fn_args.data_accessor, tft.TFTransformOutput(fn_args.transform_graph_path))
    return TunerFnResult(tuner=tuner, fit_kwargs={
        'train': lambda batch: reader.shuffled(fn_args.train_files, batch, base.seed),
        'validation': lambda batch: reader.shuffled(fn_args.eval_files, batch, base.seed),
        'train_steps': fn_args.train_steps, 'validation_steps': fn_args.eval_steps})
