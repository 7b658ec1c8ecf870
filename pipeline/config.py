"""The pipeline's configuration: one typed object for every target, built once, passed down.

The same `PipelineConfig` describes a local run (LocalDagRunner, SQLite ML
Metadata, Beam DirectRunner) and a Kubeflow compile (with `kubeflow` set, and
Beam on the DirectRunner in the container or on Dataflow). Every default is
stated here once; the CLI's flags and the compiled spec's parameters take
theirs from these fields.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Mapping, Optional

import schemas
from components import slice_gates
from components.infra_validator.checks import Limits as InfraLimits
from foundation.workspace import MODEL_NAME, Workspace
from taxi_model.hyperparameters import Hyperparameters

# The served model is named after the pipeline.
PIPELINE_NAME = MODEL_NAME
BEAM_RUNNERS = ('DirectRunner', 'DataflowRunner')
# What drift from the serving model's training data does (components/drift_check/).
DRIFT_POLICIES = ('warn', 'block')
# Where the Dockerfile installs this project inside the pipeline image.
IMAGE_PROJECT_DIR = '/pipeline'
IMAGE_SCHEMA_FILE = f'{IMAGE_PROJECT_DIR}/schemas/schema.pbtxt'
# Kept next to the model it tests; read when the pipeline is built, so its text is in the compiled spec.
BEHAVIOUR_SUITE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'taxi_model',
                               'behaviour.yaml')


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Evaluator gates: a model is blessed only if it passes all of them."""

    min_auc: float = 0.7
    min_accuracy: float = 0.6
    # How much AUC may fall below the baseline's (the latest pushed model).
    max_auc_drop: float = 0.01
    # The slice gates (components/slice_gates.py), on each value of taxi_model.features.GATED_SLICE_COLUMNS
    # with at least min_slice_class_examples eval examples of each class: an AUC floor, the largest gap below
    # the overall AUC, and how far AUC may fall below the baseline's on the slice. Why these values:
    # docs/pipeline.md#slice-gates.
    min_slice_auc: float = slice_gates.DEFAULTS.min_auc
    max_slice_auc_gap: float = slice_gates.DEFAULTS.max_auc_gap
    max_slice_auc_drop: float = slice_gates.DEFAULTS.max_auc_drop
    min_slice_class_examples: int = slice_gates.DEFAULTS.min_class_examples

    def __post_init__(self):
        slice_gates.SliceThresholds(self.min_slice_auc, self.max_slice_auc_gap, self.max_slice_auc_drop,
                                    self.min_slice_class_examples)  # raises on values out of range


@dataclasses.dataclass(frozen=True)
class Resources:
    """A Kubeflow task's container limits."""

    cpu: float
    memory_gb: float


# Kubeflow container limits by node id; components not listed get the cluster default.
DEFAULT_RESOURCES: Mapping[str, Resources] = {'Transform': Resources(cpu=2, memory_gb=8),
                                              'Trainer': Resources(cpu=4, memory_gb=8)}


@dataclasses.dataclass(frozen=True)
class BeamSettings:
    """Where Beam runs: in process (DirectRunner) or on Dataflow."""

    runner: str = 'DirectRunner'
    # DirectRunner workers; more than 1 uses threads, never multi_processing,
    # which has lost rows in TFDV (tensorflow/data-validation#247).
    direct_workers: int = 1
    gcp_project: Optional[str] = None
    gcp_region: Optional[str] = None
    temp_location: Optional[str] = None

    def __post_init__(self):
        if self.runner not in BEAM_RUNNERS:
            raise ValueError(f'beam runner must be one of {", ".join(BEAM_RUNNERS)}, not {self.runner!r}')
        if self.direct_workers < 1:
            raise ValueError('beam direct_workers must be at least 1')
        if self.runner == 'DataflowRunner':
            missing = [name for name in ('gcp_project', 'gcp_region', 'temp_location') if not getattr(self, name)]
            if missing:
                raise ValueError(f'DataflowRunner needs {", ".join(missing)}')

    def args(self, image: Optional[str] = None) -> List[str]:
        """Beam pipeline args; on Dataflow, workers start from `image`, so user code imports as it does here."""
        if self.runner == 'DataflowRunner':
            return ['--runner=DataflowRunner', f'--project={self.gcp_project}', f'--region={self.gcp_region}',
                    f'--temp_location={self.temp_location}', '--experiments=use_runner_v2'] + (
                        [f'--sdk_container_image={image}'] if image else [])
        # One in-memory worker (Beam's default) is fastest here, and locally it
        # takes no args on purpose: given any Beam args without a dependency
        # flag, every TFX Beam executor copies TFX into an sdist under /tmp
        # for remote workers (dependency_utils.make_beam_dependency_flags), each
        # component again, never deleted (docs/decisions.md#beam-in-memory). In
        # process there are no remote workers.
        threads = [] if self.direct_workers == 1 else [
            '--direct_running_mode=multi_threading', f'--direct_num_workers={self.direct_workers}']
        # In the image, the workers' environment is that image: saying so stops the
        # packaging there too, where Kubeflow's entrypoint hands TFX its own unknown
        # flags as Beam args.
        return threads + ([f'--sdk_container_image={image}'] if image else [])


@dataclasses.dataclass(frozen=True)
class KubeflowSettings:
    """What only a Kubeflow compile needs: the image every task runs in, limits, and the cluster's ML Metadata."""

    image: str
    resources: Mapping[str, Resources] = dataclasses.field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    # Open-source Kubeflow's metadata gRPC service (HOST:PORT, e.g. metadata-grpc-service.kubeflow:8080), which
    # tasks that read the registry (baseline, drift reference, the Pusher's sweep) connect to. None: they read
    # the push destination alone (Vertex AI, whose ML Metadata is no gRPC service a task reaches).
    metadata_grpc: Optional[str] = None

    def __post_init__(self):
        if not self.image:
            raise ValueError('a Kubeflow compile needs the pipeline image')
        if self.metadata_grpc is not None and not self.metadata_grpc.rpartition(':')[2].isdigit():
            raise ValueError(f'metadata_grpc takes HOST:PORT (e.g. metadata-grpc-service.kubeflow:8080), '
                             f'not {self.metadata_grpc!r}')


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data_root: str
    pipeline_root: str
    serving_model_dir: str
    # SQLite ML Metadata of local runs; on Kubeflow the backend owns ML Metadata.
    metadata_path: Optional[str] = None
    pipeline_name: str = PIPELINE_NAME
    schema_file: str = schemas.CURATED_SCHEMA
    # Training covers the data: ceil(train_epochs x training rows / batch size) steps,
    # the rows counted by StatisticsGen. A train_steps above 0 sets the steps instead.
    # On the sample, 4 epochs scored best and more passes overfit it
    # (docs/performance.md#epochs-and-early-stopping).
    train_epochs: float = 4.0
    train_steps: int = 0
    eval_steps: int = 100
    # The Evaluator scores at most this many eval examples, an evenly spaced sample of a larger split (TFMA
    # computes per example and slice in Python, for each model: docs/performance.md#tfmas-rate); the
    # sample's size is recorded on the evaluation. 0: all of them. At 50k the overall AUC's standard
    # error is about 0.0015 (Hanley and McNeil, AUC 0.94, a quarter positive), and the gate compares
    # both models on the same examples.
    max_eval_examples: int = 50_000
    enable_cache: bool = True
    drift_policy: str = 'warn'
    thresholds: Thresholds = Thresholds()
    # What the candidate must meet when served before it is pushed (components/infra_validator/).
    infra_limits: InfraLimits = InfraLimits()
    # The model's behaviour tests (components/infra_validator/behaviour.py), run on every candidate.
    behaviour_suite_file: str = BEHAVIOUR_SUITE
    hyperparameters: Hyperparameters = Hyperparameters()
    # The Tuner (components/tuner/): it searches only when `tune` is set (a run parameter on Kubeflow);
    # other runs train with the last tuning's values, else `hyperparameters`. Its budget: at most
    # tuning_max_trials trials, none started after tuning_max_seconds, each trained tuning_trial_steps
    # steps (about 4 epochs of the sample's training split, as the Trainer trains). What a tuning found:
    # docs/performance.md#hyperparameter-tuning.
    tune: bool = False
    tuning_max_trials: int = 12
    tuning_max_seconds: float = 900.0
    tuning_trial_steps: int = 600
    # The BulkInferrer (components/bulk_inferrer/): the splits of the new span the blessed candidate
    # scores, and whether with attributions (the `explain` signature: IG_STEPS + 1 model calls per row).
    bulk_inference_splits: str = 'eval'
    bulk_inference_explain: bool = False
    beam: BeamSettings = BeamSettings()
    kubeflow: Optional[KubeflowSettings] = None
    # Where local runs write their HTML report; None for no report.
    report_dir: Optional[str] = None

    def __post_init__(self):
        if self.train_steps < 0 or self.eval_steps < 1:
            raise ValueError('train_steps must be 0 (from train_epochs) or more, and eval_steps at least 1')
        if not self.train_epochs > 0:
            raise ValueError('train_epochs must be above 0')
        if self.max_eval_examples < 0:
            raise ValueError('max_eval_examples must be 0 (all) or more')
        if self.tuning_max_trials < 1 or not self.tuning_max_seconds > 0 or self.tuning_trial_steps < 1:
            raise ValueError('tuning needs tuning_max_trials and tuning_trial_steps of at least 1 and '
                             'tuning_max_seconds above 0')
        if not [s for s in self.bulk_inference_splits.split(',') if s.strip()]:
            raise ValueError('bulk_inference_splits must name at least one split, e.g. eval')
        if self.drift_policy not in DRIFT_POLICIES:
            raise ValueError(f'drift_policy must be one of {", ".join(DRIFT_POLICIES)}, not {self.drift_policy!r}')
        if self.kubeflow is not None:
            for field in ('pipeline_root', 'data_root', 'serving_model_dir', 'schema_file'):
                value = getattr(self, field)
                if '://' not in value and not value.startswith('/'):
                    raise ValueError(f'{field} must be a URI (gs://, s3://, minio://) or an absolute path '
                                     f'inside the cluster, not {value!r}')

    @classmethod
    def for_workspace(cls, workspace: str, data_root: Optional[str] = None, **overrides) -> 'PipelineConfig':
        """The local layout: everything a run writes lives under one directory."""
        layout = Workspace(workspace).absolute()
        return cls(
            data_root=os.path.abspath(data_root) if data_root else layout.data_root,
            pipeline_root=layout.pipeline_root,
            metadata_path=layout.metadata_path,
            serving_model_dir=layout.model_base_path,
            report_dir=layout.report_dir,
            **overrides)

    @classmethod
    def for_kubeflow(cls, image: str, pipeline_root: str, data_root: str, serving_model_dir: str,
                     resources: Optional[Mapping[str, Resources]] = None, metadata_grpc: Optional[str] = None,
                     **overrides) -> 'PipelineConfig':
        """The cluster layout: paths are bucket URIs, code and schema come from the image."""
        kubeflow = KubeflowSettings(image, dict(DEFAULT_RESOURCES) if resources is None else resources,
                                    metadata_grpc=metadata_grpc)
        return cls(data_root=data_root, pipeline_root=pipeline_root, serving_model_dir=serving_model_dir,
                   kubeflow=kubeflow, **{'schema_file': IMAGE_SCHEMA_FILE, **overrides})

    @property
    def metadata_grpc(self) -> Optional[str]:
        """The ML Metadata gRPC address tasks reach, if any (Kubeflow only; locally it is the SQLite path)."""
        return self.kubeflow.metadata_grpc if self.kubeflow is not None else None

    @property
    def tuning_records_dir(self) -> str:
        """Where tunings are recorded for later runs (components/tuner/tuning_records.py): beside the runs'
        artifacts, shared by every run of the pipeline as the push destination is."""
        return f'{self.pipeline_root.rstrip("/")}/tuning_records'

    @property
    def beam_pipeline_args(self) -> List[str]:
        return self.beam.args(self.kubeflow.image if self.kubeflow else None)


def default(field: str):
    """A PipelineConfig field's default, for flags that must not restate it."""
    value = PipelineConfig.__dataclass_fields__[field].default
    if value is dataclasses.MISSING:
        raise KeyError(f'PipelineConfig.{field} has no default')
    return value
