"""The pipeline's configuration: one typed object, built once, passed down."""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import schemas

PIPELINE_NAME = 'chicago-taxi'


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Passed through Trainer's `custom_config`, so runs record them in MLMD."""

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


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Evaluator gates: a model is blessed only if it passes all of them."""

    min_auc: float = 0.7
    min_accuracy: float = 0.6
    # How much AUC may fall below the baseline's (the latest pushed model).
    max_auc_drop: float = 0.01


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data_root: str
    pipeline_root: str
    metadata_path: str
    serving_model_dir: str
    pipeline_name: str = PIPELINE_NAME
    schema_file: str = schemas.CURATED_SCHEMA
    train_steps: int = 1000
    eval_steps: int = 100
    beam_workers: int = 1
    enable_cache: bool = True
    thresholds: Thresholds = Thresholds()
    hyperparameters: Hyperparameters = Hyperparameters()
    # Extra Beam flags (e.g. DataflowRunner options); replace the local defaults.
    beam_args: Optional[List[str]] = None
    # Where local runs write their HTML report; None for no report.
    report_dir: Optional[str] = None

    @classmethod
    def for_workspace(cls, workspace: str, data_root: Optional[str] = None, **overrides) -> 'PipelineConfig':
        """The local layout: everything a run writes lives under one directory."""
        workspace = os.path.abspath(workspace)
        return cls(
            data_root=os.path.abspath(data_root) if data_root else os.path.join(workspace, 'data'),
            pipeline_root=os.path.join(workspace, 'pipeline_root'),
            metadata_path=os.path.join(workspace, 'metadata.sqlite'),
            serving_model_dir=os.path.join(workspace, 'serving_model', PIPELINE_NAME),
            report_dir=os.path.join(workspace, 'reports'),
            **overrides)

    def __post_init__(self):
        if self.train_steps < 1 or self.eval_steps < 1:
            raise ValueError('train_steps and eval_steps must be at least 1')
        if self.beam_workers < 1:
            raise ValueError('beam_workers must be at least 1')

    @property
    def beam_pipeline_args(self) -> List[str]:
        if self.beam_args is not None:
            return list(self.beam_args)
        # One in-memory worker is fastest for small data. More workers use
        # threads, not multi_processing, which has lost rows in TFDV
        # (tensorflow/data-validation#247).
        if self.beam_workers == 1:
            return ['--direct_running_mode=in_memory', '--direct_num_workers=1']
        return ['--direct_running_mode=multi_threading', f'--direct_num_workers={self.beam_workers}']
