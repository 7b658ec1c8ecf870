"""Infra validation as a TFX component; what it does is `executor.validate`."""

from tfx import v1 as tfx

from components.infra_validator import executor


@tfx.dsl.components.component
def InfraValidation(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.InfraBlessing],
    limits: tfx.dsl.components.Parameter[str],
    behaviour_suite: tfx.dsl.components.Parameter[str] = '',
):
    """Serves the candidate as the deployment would and blesses it only if it loads, answers every client
    signature well over REST and gRPC, meets the latency and memory `limits` (checks.Limits as JSON) and
    passes the `behaviour_suite` (its YAML text: in the spec, so editing it re-runs the check)."""
    executor.validate(model, blessing, limits, behaviour_suite)
