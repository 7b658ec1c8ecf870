"""Compile the same pipeline for Kubeflow Pipelines with KubeflowV2DagRunner.

Two outputs from one build:
- `<name>.yaml`: the KFP IR (PipelineSpec) that open-source KFP 2.x uploads;
- `<name>_job.json`: the PipelineJob that Vertex AI Pipelines takes.

The spec declares the runtime parameters of `pipeline.dag.RUNTIME_PARAMETERS`
(data root, steps, blessing thresholds) with the config's values as defaults,
so a run started from the Kubeflow Pipelines UI can set them.

Compilation is hermetic: it reads nothing from and writes nothing to
`pipeline_root`, bakes in no path of this machine (user code and the schema
are found inside the image), and gives the same bytes for the same settings.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Tuple

import yaml
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from foundation.atomic_file import write_atomically
from pipeline.config import PipelineConfig
from pipeline.dag import RUNTIME_PARAMETERS, create_pipeline

PIPELINE_FILE = 'chicago_taxi_pipeline.yaml'
TASK_COMMAND = ['python', '-m', 'components.container_entrypoint']
PIPELINE_JOB_FILE = 'chicago_taxi_pipeline_job.json'
_HEADER = ('# KFP IR (PipelineSpec) of the Chicago Taxi TFX pipeline, compiled by `make compile`\n'
           '# (`taxi-pipeline compile`); upload with `taxi-pipeline submit` or `kfp.Client().upload_pipeline`.\n')


def _without_volatile_fields(job: Dict) -> Dict:
    """Drops what changes from build to build without changing the pipeline.

    TFX stamps telemetry labels (including the Python version) on the job;
    they are not part of the pipeline and would break byte-identical builds.
    """
    job = dict(job)
    job.pop('labels', None)
    return job


def _declare_defaults(spec: Dict, defaults: Dict[str, object]) -> None:
    """Gives the root's input parameters their defaults and descriptions.

    TFX's compiler declares only each parameter's type, so the Kubeflow
    Pipelines UI would demand every value on every run; the kfp SDK's own
    compiler writes `defaultValue` and `isOptional`, as done here.
    """
    declared = spec['root']['inputDefinitions']['parameters']
    for parameter in RUNTIME_PARAMETERS:
        declared[parameter.name].update(defaultValue=defaults[parameter.name], isOptional=True,
                                        description=parameter.description)


def compile_pipeline(config: PipelineConfig, output_dir: str) -> Tuple[str, str]:
    """Writes the KFP IR YAML and the Vertex PipelineJob JSON; returns their paths."""
    if config.kubeflow is None:
        raise ValueError('compiling for Kubeflow needs a config with Kubeflow settings (PipelineConfig.for_kubeflow)')
    # Schema 2.1: parameters as `runtimeValue.constant`, which KFP 2 backends pass
    # in `parameterValues` (2.0's legacy `constantValue` goes where KFP 2 does not look).
    # Every task runs our entry point, which types input artifacts from the
    # compiled inputs spec before handing over to TFX's (open-source KFP 2
    # passes them untyped: components/container_entrypoint.py).
    runner_config = kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
        default_image=config.kubeflow.image, use_pipeline_spec_2_1=True, default_commands=TASK_COMMAND)
    pipeline = create_pipeline(config, metadata_connection_config=None)
    for component in pipeline.components:
        limits = config.kubeflow.resources.get(component.id)
        if limits:
            component.with_platform_config(pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
                cpu_limit=limits.cpu, memory_limit=limits.memory_gb))
    defaults = {p.name: p.value(config) for p in RUNTIME_PARAMETERS}
    # write_out=False: we write ourselves, atomically and in a stable key order.
    job = kubeflow_v2_dag_runner.KubeflowV2DagRunner(config=runner_config).run(
        pipeline, parameter_values=defaults, write_out=False)
    job = _without_volatile_fields(job)
    _declare_defaults(job['pipelineSpec'], defaults)
    # Open-source KFP reads the root from the spec (Vertex from runtimeConfig).
    job['pipelineSpec']['defaultPipelineRoot'] = config.pipeline_root
    yaml_path = write_atomically(os.path.join(output_dir, PIPELINE_FILE),
                                 _HEADER + yaml.safe_dump(job['pipelineSpec'], sort_keys=True))
    json_path = write_atomically(os.path.join(output_dir, PIPELINE_JOB_FILE),
                                 json.dumps(job, indent=2, sort_keys=True) + '\n')
    return yaml_path, json_path


def validate_compiled(yaml_path: str) -> int:
    """Parses the IR with kfp-pipeline-spec and loads it with the kfp SDK; returns the task count."""
    import kfp
    from google.protobuf import json_format
    with open(yaml_path) as f:
        spec = json_format.ParseDict(yaml.safe_load(f), pipeline_spec_pb2.PipelineSpec())
    kfp.components.load_component_from_file(yaml_path)
    return len(spec.root.dag.tasks)


def declared_parameters(yaml_path: str) -> Dict[str, Dict]:
    """The root input parameters a compiled spec declares: name -> {parameterType, defaultValue, ...}."""
    with open(yaml_path) as f:
        spec = yaml.safe_load(f)
    return dict(spec.get('root', {}).get('inputDefinitions', {}).get('parameters', {}))
