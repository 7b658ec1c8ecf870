"""The run's views as a TFX component: what the Kubeflow Pipelines UI shows of a run
(and what a local run leaves beside its other outputs); `executor.make_views` makes them."""

from tfx import v1 as tfx

from components.run_views import executor
from components.run_views.artifacts import HTML, ClassificationMetrics, Markdown, Metrics

standard = tfx.types.standard_artifacts


@tfx.dsl.components.component
def RunViews(
    statistics: tfx.dsl.components.InputArtifact[standard.ExampleStatistics],
    anomalies: tfx.dsl.components.InputArtifact[standard.ExampleAnomalies],
    drift_report: tfx.dsl.components.InputArtifact[standard.ExampleAnomalies],
    evaluation: tfx.dsl.components.InputArtifact[standard.ModelEvaluation],
    blessing: tfx.dsl.components.InputArtifact[standard.ModelBlessing],
    pushed_model: tfx.dsl.components.InputArtifact[standard.PushedModel],
    metrics: tfx.dsl.components.OutputArtifact[Metrics],
    classification_metrics: tfx.dsl.components.OutputArtifact[ClassificationMetrics],
    report: tfx.dsl.components.OutputArtifact[HTML],
    summary: tfx.dsl.components.OutputArtifact[Markdown],
):
    """Metrics overall and per slice, ROC curve and confusion matrix, the run's report page, a summary."""
    executor.make_views(statistics, anomalies, drift_report, evaluation, blessing, pushed_model,
                        metrics, classification_metrics, report, summary)
