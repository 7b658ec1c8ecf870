"""The drift check as a TFX component; what it does is `executor.check`."""

from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.types import standard_artifacts

from components.drift_check import executor


@component
def DriftCheck(
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    schema: InputArtifact[standard_artifacts.Schema],
    serving_model_dir: Parameter[str],
    drift_policy: Parameter[str],
    drift_report: OutputArtifact[standard_artifacts.ExampleAnomalies],
    metadata_connection: Parameter[str] = '',
):
    """Compares the new span's training split with the serving version's training data: the latest
    pushed version ML Metadata knows, given `metadata_connection` (foundation.metadata_store.connection_parameter,
    '' for none: the push destination alone decides)."""
    executor.check(statistics, schema, serving_model_dir, drift_policy, drift_report, metadata_connection)
