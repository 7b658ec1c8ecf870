"""The anomalies gate as a TFX component; what it does is `executor.check`."""

from tfx import v1 as tfx

from components.anomalies_gate import executor


@tfx.dsl.components.component
def AnomaliesGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    drift_report: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies] = None,
):
    """Raises DataAnomaliesError if any split of `anomalies` is not empty, and
    DataDriftError if `drift_report` found drift under the blocking policy."""
    executor.check(anomalies, drift_report)
