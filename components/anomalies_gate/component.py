"""The anomalies gate as a TFX component; what it does is `executor.check`."""

from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.types import standard_artifacts

from components.anomalies_gate import executor


@component
def AnomaliesGate(
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    drift_report: InputArtifact[standard_artifacts.ExampleAnomalies] = None,
):
    """Raises DataAnomaliesError if any split of `anomalies` is not empty, and
    DataDriftError if `drift_report` found drift under the blocking policy."""
    executor.check(anomalies, drift_report)
