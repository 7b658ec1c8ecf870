"""What a Trainer run does besides calling `run_fn`, as plain values (no TFX): how many steps
it takes, and what the Model artifact records about its training."""

import math
from typing import Dict, Mapping, Optional, Union

# The split the model trains on, whose statistics it carries.
TRAIN_SPLIT = 'train'
# The drift check's findings (custom properties named so) are copied onto the
# candidate model, so a release process sees "trained on drifted data".
DRIFT_PROPERTY_PREFIX = 'drift_'
# What a run_fn may report in its training record (foundation.model_files.TRAINING_RECORD): the
# steps training took and those of the weights it exported (early stopping).
REPORTED = ('steps_taken', 'steps_kept')


def steps_for(epochs: float, rows: int, batch_size: int) -> int:
    """Steps of `batch_size` that pass over `rows` `epochs` times (at least one)."""
    return max(1, math.ceil(epochs * rows / batch_size))


def steps_covering(epochs: float, rows: Optional[int], batch_size: Optional[int]) -> int:
    """The steps of `train_steps` 0: `epochs` passes over the training rows."""
    if not (epochs > 0 and rows and batch_size):
        raise ValueError('train_steps 0 takes its steps from train_epochs (above 0), the training rows '
                         '(the statistics input) and custom_config hyperparameters.batch_size; got '
                         f'{epochs} epochs, {rows} rows, batch size {batch_size}')
    return steps_for(epochs, rows, batch_size)


def model_properties(steps: int, batch_size: Optional[int], rows: Optional[int]) -> Dict[str, Union[int, float]]:
    """What training did, as custom properties of the Model artifact (the epochs as a float),
    whichever way the steps were set."""
    properties: Dict[str, Union[int, float]] = {'train_steps': steps}
    if batch_size:
        properties['train_batch_size'] = batch_size
    if rows and batch_size:
        properties['train_rows'] = rows
        properties['train_epochs'] = steps * batch_size / rows
    return properties


def reported(record: Mapping) -> Dict[str, int]:
    """What a run_fn's training record says training did, as Model artifact properties."""
    return {key: int(record[key]) for key in REPORTED if key in record}
