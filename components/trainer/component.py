"""The Trainer as a TFX component: TFX's Trainer spec plus the statistics and drift report inputs
and the step parameters; it runs `executor.Executor`."""

from typing import Optional, Union

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils

from components.trainer.executor import DRIFT_REPORT, EVAL_STEPS, STATISTICS, TRAIN_EPOCHS, TRAIN_STEPS, Executor

IntParameter = Union[int, data_types.RuntimeParameter]
FloatParameter = Union[float, data_types.RuntimeParameter]


class TrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {**standard_component_specs.TrainerSpec.INPUTS,
              STATISTICS: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
              DRIFT_REPORT: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True)}
    PARAMETERS = {**standard_component_specs.TrainerSpec.PARAMETERS,
                  TRAIN_STEPS: ExecutionParameter(type=int),
                  EVAL_STEPS: ExecutionParameter(type=int),
                  TRAIN_EPOCHS: ExecutionParameter(type=float, optional=True)}


class Trainer(base_component.BaseComponent):
    """TFX's Trainer (GenericExecutor, `run_fn` by module path) with steps as parameters;
    its model carries the training statistics and schema (`assets.extra/`). With `hyperparameters`
    (the Tuner's best), their values are laid over `custom_config`'s before training."""

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, transform_graph: types.BaseChannel, schema: types.BaseChannel,
                 run_fn: str, train_steps: IntParameter, eval_steps: IntParameter,
                 train_epochs: Optional[FloatParameter] = None, statistics: Optional[types.BaseChannel] = None, drift_report: Optional[types.BaseChannel] = None,
                 custom_config: Optional[dict] = None, hyperparameters: Optional[types.BaseChannel] = None):
        super().__init__(spec=TrainerSpec(
            examples=examples, transform_graph=transform_graph, schema=schema, statistics=statistics,
            drift_report=drift_report, hyperparameters=hyperparameters,
            train_args=trainer_pb2.TrainArgs(), eval_args=trainer_pb2.EvalArgs(),
            run_fn=run_fn, custom_config=json_utils.dumps(custom_config or {}),
            train_steps=train_steps, eval_steps=eval_steps, train_epochs=train_epochs,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun)))
