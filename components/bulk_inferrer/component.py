"""The BulkInferrer as a TFX component: TFX's BulkInferrer inputs and output (examples, model,
model_blessing -> InferenceResult), with which splits to score and whether to explain as plain exec
properties; it runs `executor.Executor`."""

from typing import Union

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.bulk_inferrer.executor import EXPLAIN, SPLITS, Executor

IntParameter = Union[int, data_types.RuntimeParameter]


class BulkInferrerSpec(ComponentSpec):
    PARAMETERS = {SPLITS: ExecutionParameter(type=str), EXPLAIN: ExecutionParameter(type=int)}
    INPUTS = {
        standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        standard_component_specs.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        standard_component_specs.MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }
    OUTPUTS = {standard_component_specs.INFERENCE_RESULT_KEY: ChannelParameter(
        type=standard_artifacts.InferenceResult)}


class BulkInferrer(base_component.BaseComponent):
    """Scores `splits` (comma-separated) of `examples` with `model` if `model_blessing` blessed it: one
    PredictionLog per example with the probability and the outlier flags (and attributions when `explain`
    is 1), as TFX's BulkInferrer writes them. An unblessed model scores nothing (`inferred` 0)."""

    SPEC_CLASS = BulkInferrerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 splits: str = 'eval', explain: IntParameter = 0):
        super().__init__(spec=BulkInferrerSpec(
            examples=examples, model=model, model_blessing=model_blessing, splits=splits, explain=explain,
            inference_result=types.Channel(type=standard_artifacts.InferenceResult)))
