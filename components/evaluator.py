"""Evaluator whose baseline may be empty (the first run has nothing pushed yet)."""

from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from components.baseline_model import has_model


class Executor(evaluator_executor.Executor):
    """Drops an empty baseline, so TFMA validates absolute thresholds only.

    With no baseline, TFX's Evaluator already skips change thresholds
    (rubber stamp); it just needs the input to be absent rather than empty.
    """

    def Do(self, input_dict, output_dict, exec_properties):
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key) or []
        if baselines and not has_model(baselines[0]):
            input_dict = {**input_dict, key: []}
        return super().Do(input_dict, output_dict, exec_properties)


class Evaluator(tfx.components.Evaluator):
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
