"""The model's hyperparameters: one frozen record, carried in Trainer's custom_config.

The pipeline config holds one (so a run's settings are one object) and the
Trainer's `run_fn` reads it back, so ML Metadata records the values each
model was trained with.
"""

from __future__ import annotations

import dataclasses
from typing import Dict


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    batch_size: int = 64
    learning_rate: float = 0.003
    hidden_units: tuple = (64, 32)
    embedding_dim: int = 8
    seed: int = 42

    @classmethod
    def from_custom_config(cls, custom_config: Dict | None) -> 'Hyperparameters':
        values = dict((custom_config or {}).get('hyperparameters', {}))
        if 'hidden_units' in values:
            values['hidden_units'] = tuple(values['hidden_units'])
        return cls(**values)

    def to_custom_config(self) -> Dict:
        values = dataclasses.asdict(self)
        values['hidden_units'] = list(self.hidden_units)
        return {'hyperparameters': values}
