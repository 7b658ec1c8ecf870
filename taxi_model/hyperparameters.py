"""The model's hyperparameters: one frozen record, carried in Trainer's custom_config, and the
space the Tuner searches, declared here beside the values it replaces.

The pipeline config holds one (so a run's settings are one object) and the
Trainer's `run_fn` reads it back, so ML Metadata records the values each
model was trained with. When the Tuner hands the Trainer values (its best, or
the last tuning's), the Trainer's executor lays them over these
(`with_tuned`) before `run_fn` reads them.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Tuple

# What the Tuner (taxi_model/tuning.py) searches: each tunable field and its choices, today's
# defaults among them. Values are KerasTuner-ready (int, float, str): layer widths as 'units-units'.
# The batch size and seed stay fixed: steps follow from the batch size, so trials would otherwise
# differ in how much data they saw.
SEARCH_SPACE: Mapping[str, Tuple] = {
    'learning_rate': (0.001, 0.002, 0.003, 0.005, 0.01),
    'hidden_units': ('32-16', '64-32', '128-64', '128-64-32', '256-128'),
    'embedding_dim': (4, 8, 16),
}


def units_text(units) -> str:
    return '-'.join(str(int(u)) for u in units)


def parse_units(text: str) -> tuple:
    try:
        units = tuple(int(u) for u in str(text).split('-'))
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise ValueError(f'hidden_units must be layer widths like 64-32, not {text!r}')
    return units


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    # Batches of 64: 256 at twice the rate trains faster at the same AUC, but the model it gives is
    # sharper and its explanations miss their completeness tolerance
    # (docs/performance.md#the-trainers-batch-size-and-steps-per-execution).
    batch_size: int = 64
    learning_rate: float = 0.003
    hidden_units: tuple = (64, 32)
    embedding_dim: int = 8
    seed: int = 42
    # Training steps Keras runs per call into the graph: the same training, less Python between steps.
    # 1, because more was slower on the sample, where the fit is mostly fixed costs
    # (docs/performance.md#the-trainers-batch-size-and-steps-per-execution).
    steps_per_execution: int = 1

    @classmethod
    def from_custom_config(cls, custom_config: Dict | None) -> 'Hyperparameters':
        values = dict((custom_config or {}).get('hyperparameters', {}))
        if 'hidden_units' in values:
            values['hidden_units'] = tuple(values['hidden_units'])
        return cls(**values)

    def tuned_values(self) -> Dict[str, object]:
        """The values of the searched fields, as the Tuner writes them (SEARCH_SPACE's encoding)."""
        return {name: units_text(self.hidden_units) if name == 'hidden_units' else getattr(self, name)
                for name in SEARCH_SPACE}

    def with_tuned(self, values: Mapping[str, object]) -> 'Hyperparameters':
        """These hyperparameters with the searched fields set from `values` (SEARCH_SPACE's encoding);
        keys outside the space are refused, so a record from another model cannot pass unnoticed."""
        unknown = sorted(set(values) - set(SEARCH_SPACE))
        if unknown:
            raise ValueError(f'tuned hyperparameters {unknown} are not in the search space '
                             f'({", ".join(SEARCH_SPACE)})')
        changed = {}
        for name, value in values.items():
            if name == 'hidden_units':
                changed[name] = parse_units(value)
            elif name == 'embedding_dim':
                changed[name] = int(value)
            else:
                changed[name] = float(value)
        return dataclasses.replace(self, **changed)

    def to_custom_config(self) -> Dict:
        values = dataclasses.asdict(self)
        values['hidden_units'] = list(self.hidden_units)
        return {'hyperparameters': values}
