"""The drift check as a TFX component; what it does is `executor.check`."""

from tfx import v1 as tfx

from components.drift_check import executor


@tfx.dsl.components.component
def DriftCheck(
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    serving_model_dir: tfx.dsl.components.Parameter[str],
    drift_policy: tfx.dsl.components.Parameter[str],
    drift_report: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    metadata_connection: tfx.dsl.components.Parameter[str] = '',
):
    """Compares the new span's training split with the serving version's training data: the latest
    pushed version ML Metadata knows, given `metadata_connection` (foundation.metadata_store.connection_parameter,
    '' for none: the push destination alone decides)."""
    executor.check(statistics, schema, serving_model_dir, drift_policy, drift_report, metadata_connection)
