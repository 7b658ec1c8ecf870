"""The run's views as a TFX component: what the Kubeflow Pipelines UI shows of a run
(and what a local run leaves beside its other outputs); `executor.make_views` makes them."""

from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.types import standard_artifacts as standard

from components.run_views import executor
from components.run_views.artifacts import HTML, ClassificationMetrics, Markdown, Metrics


@component
def RunViews(
    statistics: InputArtifact[standard.ExampleStatistics],
    anomalies: InputArtifact[standard.ExampleAnomalies],
    drift_report: InputArtifact[standard.ExampleAnomalies],
    evaluation: InputArtifact[standard.ModelEvaluation],
    blessing: InputArtifact[standard.ModelBlessing],
    pushed_model: InputArtifact[standard.PushedModel],
    metrics: OutputArtifact[Metrics],
    classification_metrics: OutputArtifact[ClassificationMetrics],
    report: OutputArtifact[HTML],
    summary: OutputArtifact[Markdown],
):
    """Metrics overall and per slice, ROC curve and confusion matrix, the run's report page, a summary."""
    executor.make_views(statistics, anomalies, drift_report, evaluation, blessing, pushed_model,
                        metrics, classification_metrics, report, summary)
