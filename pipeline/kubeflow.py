"""Compile the same pipeline for Kubeflow Pipelines with KubeflowV2DagRunner.

Two outputs from one build:
- `<name>.yaml`: the KFP IR (PipelineSpec) that open-source KFP 2.x uploads;
- `<name>_job.json`: the PipelineJob that Vertex AI Pipelines takes.

Compilation is hermetic: it reads nothing from and writes nothing to
`pipeline_root`, bakes in no path of this machine (user code and the schema
are found inside the image), and gives the same bytes for the same settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Dict, List, Optional, Tuple

import yaml
from tfx import v1 as tfx
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.config import PipelineConfig, Thresholds
from pipeline.pipeline import create_components

# Where the Dockerfile installs this project inside the pipeline image.
IMAGE_PROJECT_DIR = '/pipeline'
IMAGE_SCHEMA_FILE = f'{IMAGE_PROJECT_DIR}/schemas/schema.pbtxt'
PIPELINE_FILE = 'chicago_taxi_pipeline.yaml'
PIPELINE_JOB_FILE = 'chicago_taxi_pipeline_job.json'
BEAM_RUNNERS = ('DirectRunner', 'DataflowRunner')
_COMPONENT_IDS = ('CsvExampleGen', 'StatisticsGen', 'DraftSchemaGen', 'ImportSchemaGen', 'ExampleValidator',
                  'AnomaliesGate', 'Transform', 'Trainer', 'LatestBlessedModel', 'Evaluator', 'Pusher')


@dataclasses.dataclass(frozen=True)
class Resources:
    cpu: float
    memory_gb: float


@dataclasses.dataclass(frozen=True)
class KubeflowSettings:
    """Everything the compiled pipeline needs to know about where it runs."""

    image: str
    pipeline_root: str
    data_root: str
    serving_model_dir: str
    train_steps: int = 1000
    eval_steps: int = 100
    thresholds: Thresholds = Thresholds()
    beam_runner: str = 'DirectRunner'
    gcp_project: Optional[str] = None
    gcp_region: Optional[str] = None
    dataflow_temp_location: Optional[str] = None
    # The curated schema as the tasks see it: inside the image by default.
    schema_file: str = IMAGE_SCHEMA_FILE
    # Per-component container limits; components not listed get the cluster default.
    resources: Dict[str, Resources] = dataclasses.field(default_factory=lambda: KubeflowSettings.default_resources())

    @staticmethod
    def default_resources() -> Dict[str, Resources]:
        return {'Transform': Resources(cpu=2, memory_gb=8), 'Trainer': Resources(cpu=4, memory_gb=8)}

    def __post_init__(self):
        unknown = set(self.resources) - set(_COMPONENT_IDS)
        if unknown:
            raise ValueError(f'resources for unknown components {sorted(unknown)}; known: {", ".join(_COMPONENT_IDS)}')
        if self.beam_runner not in BEAM_RUNNERS:
            raise ValueError(f'beam_runner must be one of {BEAM_RUNNERS}, not {self.beam_runner!r}')
        if self.beam_runner == 'DataflowRunner':
            missing = [name for name in ('gcp_project', 'gcp_region', 'dataflow_temp_location')
                       if not getattr(self, name)]
            if missing:
                raise ValueError(f'DataflowRunner needs {", ".join(missing)}')
        for field in ('pipeline_root', 'data_root', 'serving_model_dir'):
            value = getattr(self, field)
            if '://' not in value and not value.startswith('/'):
                raise ValueError(f'{field} must be a URI (gs://, s3://, minio://) or an absolute path '
                                 f'inside the cluster, not {value!r}')

    @property
    def beam_args(self) -> List[str]:
        if self.beam_runner == 'DataflowRunner':
            return ['--runner=DataflowRunner', f'--project={self.gcp_project}', f'--region={self.gcp_region}',
                    f'--temp_location={self.dataflow_temp_location}',
                    # Dataflow workers start from the same image, so user code imports as it does here.
                    f'--sdk_container_image={self.image}', '--experiments=use_runner_v2']
        return ['--direct_running_mode=in_memory', '--direct_num_workers=1']

    def pipeline_config(self) -> PipelineConfig:
        return PipelineConfig(
            data_root=self.data_root, pipeline_root=self.pipeline_root, metadata_path='',
            serving_model_dir=self.serving_model_dir, schema_file=self.schema_file,
            train_steps=self.train_steps, eval_steps=self.eval_steps, thresholds=self.thresholds,
            beam_args=self.beam_args)


def build_pipeline(settings: KubeflowSettings) -> tfx.dsl.Pipeline:
    config = settings.pipeline_config()
    components = create_components(config)
    for component in components:
        limits = settings.resources.get(component.id)
        if limits:
            component.with_platform_config(pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
                cpu_limit=limits.cpu, memory_limit=limits.memory_gb))
    # No metadata connection: on Kubeflow the backend owns ML Metadata.
    return tfx.dsl.Pipeline(pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
                            components=components, beam_pipeline_args=config.beam_pipeline_args)


def _without_volatile_fields(job: Dict) -> Dict:
    """Drops what changes from build to build without changing the pipeline.

    TFX stamps telemetry labels (including the Python version) on the job;
    they are not part of the pipeline and would break byte-identical builds.
    """
    job = dict(job)
    job.pop('labels', None)
    return job


def compile_pipeline(settings: KubeflowSettings, output_dir: str) -> Tuple[str, str]:
    """Writes the KFP IR YAML and the Vertex PipelineJob JSON; returns their paths."""
    # Schema 2.1: parameters as `runtimeValue.constant`, which KFP 2 backends pass
    # in `parameterValues` (2.0's legacy `constantValue` goes where KFP 2 does not look).
    runner_config = kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
        default_image=settings.image, use_pipeline_spec_2_1=True)
    pipeline = build_pipeline(settings)
    # write_out=False: we write ourselves, atomically and in a stable key order.
    job = kubeflow_v2_dag_runner.KubeflowV2DagRunner(config=runner_config).run(pipeline, write_out=False)
    job = _without_volatile_fields(job)
    # Open-source KFP reads the root from the spec (Vertex from runtimeConfig).
    job['pipelineSpec']['defaultPipelineRoot'] = settings.pipeline_root
    os.makedirs(output_dir, exist_ok=True)
    yaml_path = os.path.join(output_dir, PIPELINE_FILE)
    json_path = os.path.join(output_dir, PIPELINE_JOB_FILE)
    header = ('# KFP IR (PipelineSpec) of the Chicago Taxi TFX pipeline, compiled by\n'
              '# `taxi-pipeline compile`; upload with `kfp.Client().upload_pipeline`.\n')
    _write_atomically(yaml_path, header + yaml.safe_dump(job['pipelineSpec'], sort_keys=True))
    _write_atomically(json_path, json.dumps(job, indent=2, sort_keys=True) + '\n')
    return yaml_path, json_path


def validate_compiled(yaml_path: str) -> int:
    """Parses the IR with kfp-pipeline-spec and loads it with the kfp SDK; returns the task count."""
    import kfp
    from google.protobuf import json_format
    with open(yaml_path) as f:
        spec = json_format.ParseDict(yaml.safe_load(f), pipeline_spec_pb2.PipelineSpec())
    kfp.components.load_component_from_file(yaml_path)
    return len(spec.root.dag.tasks)


def _write_atomically(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f'.{os.path.basename(path)}.')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.replace(tmp, path)
