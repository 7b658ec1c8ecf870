"""Infra validation as a TFX component; what it does is `executor.validate`."""

from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.types import standard_artifacts

from components.infra_validator import executor


@component
def InfraValidation(
    model: InputArtifact[standard_artifacts.Model],
    blessing: OutputArtifact[standard_artifacts.InfraBlessing],
    limits: Parameter[str],
    behaviour_suite: Parameter[str] = '',
):
    """Serves the candidate as the deployment would and blesses it only if it loads, answers every client
    signature well over REST and gRPC, meets the latency and memory `limits` (checks.Limits as JSON) and
    passes the `behaviour_suite` (its YAML text: in the spec, so editing it re-runs the check)."""
    executor.validate(model, blessing, limits, behaviour_suite)
