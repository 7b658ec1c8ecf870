"""The artifact types the Kubeflow Pipelines UI renders, as TFX artifact classes.

TFX's v2 compiler writes a custom class's TYPE_NAME as its schema title
(compiler_utils.get_artifact_schema), and KFP's launcher names the ML Metadata
type by that title (backend/src/v2/metadata/client.go RecordArtifact), which
is what the UI picks artifacts by (MetricsVisualizations.tsx). So an output of
one of these classes shows in a run's Visualizations as KFP's own types do.

Metrics and ClassificationMetrics carry their content as custom properties.
HTML and Markdown carry it in a file at the artifact's URI, the one object the
UI reads: ValueArtifacts, whose URI is that file under every runner.

TFX's entry point loads an artifact's class by its title, which for these is
no import path: `components.container_entrypoint` maps the titles to these
classes (TITLES) before handing over.
"""

from tfx.types.artifact import Artifact
from tfx.types.value_artifact import ValueArtifact


class Metrics(Artifact):
    TYPE_NAME = 'system.Metrics'


class ClassificationMetrics(Artifact):
    TYPE_NAME = 'system.ClassificationMetrics'


class _Text(ValueArtifact):
    def encode(self, value: str) -> bytes:
        return value.encode('utf-8')

    def decode(self, serialized_value: bytes) -> str:
        return serialized_value.decode('utf-8')


class HTML(_Text):
    TYPE_NAME = 'system.HTML'


class Markdown(_Text):
    TYPE_NAME = 'system.Markdown'


# Schema title -> class path, for TFX's entry point.
TITLES = {cls.TYPE_NAME: f'{cls.__module__}.{cls.__qualname__}' for cls in (Metrics, ClassificationMetrics, HTML,
                                                                          Markdown)}
