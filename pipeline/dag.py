"""The TFX DAG, built from a PipelineConfig. Runner-agnostic: no runner here.

ExampleGen -> StatisticsGen -> SchemaGen (draft, for review)
                            -> ExampleValidator (curated schema) -> AnomaliesGate
                            -> DriftCheck (vs the serving model's data) -^
           -> Transform (after the gate; the graph only) -> Tuner (searches when asked) -> Trainer
              (both read ExampleGen's examples through the graph)
           -> LatestBlessedModel (baseline) -> Evaluator (candidate vs baseline) -> Pusher (blessed only)
           -> BulkInferrer (the blessed candidate scores the new span)
           -> RunViews (what the Kubeflow Pipelines UI shows of the run)

For Kubeflow (`config.kubeflow` set) the values a person may want to change
per run are runtime parameters of the compiled spec (see RUNTIME_PARAMETERS),
with the config's values as their defaults. Locally they are plain values.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional

import tensorflow_model_analysis as tfma
from tfx.components import ExampleValidator, SchemaGen
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.orchestration.pipeline import Pipeline
from tfx.dsl.components.base.base_node import BaseNode
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2

from components.anomalies_gate.component import AnomaliesGate
from components.baseline_model import LatestPushedModel
from components.bulk_inferrer.component import BulkInferrer
from components.csv_examples import CsvExampleGen
from components.drift_check.component import DriftCheck
from components.example_statistics import StatisticsGen
from components.evaluator import Evaluator
from components.infra_validator.component import InfraValidation
from components.pusher.component import Pusher
from components.run_views.component import RunViews
from components.trainer.component import Trainer
from components.transform import Transform
from components.tuner import tuning_records
from components.tuner.component import Tuner
from foundation import metadata_store
from pipeline.config import PipelineConfig
from taxi_model import contract
from taxi_model.features import LABEL, SLICE_COLUMNS
from taxi_model.inputs import VALIDATION_BATCH

PREPROCESSING_FN = 'taxi_model.preprocessing.preprocessing_fn'
RUN_FN = 'taxi_model.training.run_fn'
TUNER_FN = 'taxi_model.tuning.tuner_fn'
# Thresholds of the evaluation's confusion matrices: the ROC curve's points.
ROC_THRESHOLDS = [round(i / 20, 2) for i in range(21)]
# Each span is a directory of CSV files; ExampleGen reads the latest span.
SPAN_PATTERN = 'span-{SPAN}/*.csv'


@dataclasses.dataclass(frozen=True)
class RuntimeParameter:
    """A value a Kubeflow Pipelines run may set: its name in the spec and its config field."""

    name: str
    ptype: type
    description: str

    def value(self, config: PipelineConfig):
        if hasattr(config.thresholds, self.name):
            return getattr(config.thresholds, self.name)
        found = getattr(config, self.name)
        # A KFP parameter is a string, an int or a float: a flag travels as 0 or 1.
        return int(found) if isinstance(found, bool) else found


# Exec properties TFX's v2 compiler can parameterise are whole str/int/float
# properties; a parameter inside a proto (TrainArgs, EvalConfig, PushDestination,
# ExampleGen's split config) or inside a dict (custom_config) is not possible.
# Steps and thresholds therefore are plain properties of our Trainer and Evaluator.
RUNTIME_PARAMETERS = (
    RuntimeParameter('data_root', str, 'span-N/ CSV directories; ExampleGen reads the latest span'),
    RuntimeParameter('train_epochs', float, 'passes over the training split, when train_steps is 0'),
    RuntimeParameter('train_steps', int, 'training steps; 0: from train_epochs'),
    RuntimeParameter('eval_steps', int,
                     f'validation batches of {VALIDATION_BATCH} examples at each check during training'),
    RuntimeParameter('min_auc', float, 'AUC a model needs to be blessed (overall slice)'),
    RuntimeParameter('min_accuracy', float, 'accuracy a model needs to be blessed (overall slice)'),
    RuntimeParameter('max_auc_drop', float, "how far AUC may fall below the latest pushed model's"),
    RuntimeParameter('drift_policy', str, "what drift from the serving model's training data does: warn or block"),
    RuntimeParameter('tune', int, '1: the Tuner searches the hyperparameters; 0: the last tuning (or the defaults)'),
    RuntimeParameter('tuning_max_trials', int, 'at most this many tuning trials'),
    RuntimeParameter('tuning_max_seconds', float, 'no tuning trial starts after this many seconds'),
)


def eval_config() -> tfma.EvalConfig:
    """What TFMA computes; the blessing gates are added by the Evaluator from its parameters."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name=contract.PREDICT_EXAMPLES,
            label_key=LABEL.name,
            # The signature also returns outlier flags; the probability is the prediction.
            prediction_key=contract.PROBABILITIES,
            # Applies the model's Transform graph to raw eval examples, which
            # is where the (derived) label comes from.
            preprocessing_function_names=[contract.TRANSFORM_FEATURES])],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[c]) for c in SLICE_COLUMNS],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name='ExampleCount'),
            tfma.MetricConfig(class_name='Precision'),
            tfma.MetricConfig(class_name='Recall'),
            # The ROC curve and confusion matrix of the run's views (components/run_views).
            tfma.MetricConfig(class_name='ConfusionMatrixAtThresholds',
                              config=json.dumps({'thresholds': ROC_THRESHOLDS})),
        ])])


def _parameters(config: PipelineConfig) -> Dict[str, object]:
    """Each runtime parameter's value for this target: a RuntimeParameter on Kubeflow, else the config's value."""
    values = {p.name: p.value(config) for p in RUNTIME_PARAMETERS}
    if config.kubeflow is None:
        return values
    return {p.name: data_types.RuntimeParameter(name=p.name, ptype=p.ptype, default=values[p.name])
            for p in RUNTIME_PARAMETERS}


def metadata_connection(config: PipelineConfig) -> str:
    """The ML Metadata the tasks that read the registry connect to (the baseline, the drift reference, the
    Pusher's sweep): a local run's SQLite store, open-source Kubeflow's metadata gRPC service when the config
    names one, else '' (Vertex AI: the push destination alone decides, docs/pipeline.md#pushing-and-the-registry).
    Constant per pipeline, so it never invalidates the cache."""
    if config.kubeflow is not None:
        return metadata_store.connection_parameter(grpc_address=config.metadata_grpc)
    return metadata_store.connection_parameter(metadata_path=config.metadata_path)


def _known_tuning(config: PipelineConfig) -> str:
    """The newest tuning record's name, for a local run's Tuner (its cache key): after a tuning, the next run
    that does not tune hands on the new values instead of a cached older answer for the same span. A compiled
    spec is static: '' (docs/pipeline.md#tuner)."""
    if config.kubeflow is not None:
        return ''
    found = tuning_records.records(config.tuning_records_dir)
    return os.path.basename(found[0].path) if found else ''


def create_components(config: PipelineConfig) -> List[BaseNode]:
    params = _parameters(config)
    registry = metadata_connection(config)
    example_gen = CsvExampleGen(
        input_base=params['data_root'],
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='span', pattern=SPAN_PATTERN)]),
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=2),
            example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=1)])))
    statistics_gen = StatisticsGen(examples=example_gen.outputs['examples'])
    draft_schema = SchemaGen(
        statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True).with_id('DraftSchemaGen')
    curated_schema = ImportSchemaGen(schema_file=config.schema_file)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs['statistics'], schema=curated_schema.outputs['schema'])
    # Against the serving version's training data, read from the push destination (no Resolver), a version
    # ML Metadata knows. Cached with its span like every component: a re-run of the same span reuses the comparison.
    drift_check = DriftCheck(statistics=statistics_gen.outputs['statistics'], schema=curated_schema.outputs['schema'],
                             serving_model_dir=config.serving_model_dir, drift_policy=params['drift_policy'],
                             metadata_connection=registry)
    anomalies_gate = AnomaliesGate(anomalies=example_validator.outputs['anomalies'],
                                   drift_report=drift_check.outputs['drift_report'])

    transform = Transform(
        examples=example_gen.outputs['examples'],
        schema=curated_schema.outputs['schema'],
        preprocessing_fn=PREPROCESSING_FN,
        # StatisticsGen already profiles the raw data; pre/post-transform
        # statistics would double Transform's time for nothing we read.
        disable_statistics=True,
        # Nothing feeds the analyzer cache back in (that would take a Resolver), so writing it only
        # added a dozen Beam write stages to every run.
        disable_analyzer_cache=True,
        # The Trainer and the Tuner read ExampleGen's examples through the graph (taxi_model/inputs.py):
        # encoding every row again cost more than all they read (docs/decisions.md).
        materialize=False,
        force_tf_compat_v1=True)
    transform.add_upstream_node(anomalies_gate)

    # Always in the DAG (a Kubeflow DAG is static); it searches only when `tune` is 1, else it passes on the
    # last tuning recorded under tuning_records_dir that ML Metadata knows, or the configured defaults.
    tuner = Tuner(
        tuner_fn=TUNER_FN,
        examples=example_gen.outputs['examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=curated_schema.outputs['schema'],
        tune=params['tune'], max_trials=params['tuning_max_trials'], max_seconds=params['tuning_max_seconds'],
        trial_steps=config.tuning_trial_steps, eval_steps=params['eval_steps'],
        records_dir=config.tuning_records_dir, metadata_connection=registry,
        custom_config=config.hyperparameters.to_custom_config(), known_tuning=_known_tuning(config))

    trainer = Trainer(
        run_fn=RUN_FN,
        hyperparameters=tuner.outputs['best_hyperparameters'],
        examples=example_gen.outputs['examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=curated_schema.outputs['schema'],
        statistics=statistics_gen.outputs['statistics'],
        drift_report=drift_check.outputs['drift_report'],
        train_epochs=params['train_epochs'],
        train_steps=params['train_steps'],
        eval_steps=params['eval_steps'],
        custom_config=config.hyperparameters.to_custom_config())

    baseline = LatestPushedModel(
        candidate=trainer.outputs['model'], serving_model_dir=config.serving_model_dir, metadata_connection=registry
    ).with_id('LatestBlessedModel')
    evaluator = Evaluator(
        examples=example_gen.outputs['examples'],
        model=trainer.outputs['model'],
        baseline_model=baseline.outputs['baseline'],
        eval_config=eval_config(),
        min_auc=params['min_auc'], min_accuracy=params['min_accuracy'], max_auc_drop=params['max_auc_drop'],
        max_eval_examples=config.max_eval_examples,
        # The slice gates (components/slice_gates.py): from the config, constant in the spec (not run parameters).
        min_slice_auc=config.thresholds.min_slice_auc, max_slice_auc_gap=config.thresholds.max_slice_auc_gap,
        max_slice_auc_drop=config.thresholds.max_slice_auc_drop,
        min_slice_class_examples=config.thresholds.min_slice_class_examples)
    # The candidate served as the deployment serves it, and its behaviour tests, under every runner
    # (TFX's InfraValidator runs only locally or on the deprecated KubeflowDagRunner).
    with open(config.behaviour_suite_file) as f:
        behaviour_suite = f.read()
    infra_validation = InfraValidation(model=trainer.outputs['model'], limits=config.infra_limits.to_json(),
                                       behaviour_suite=behaviour_suite)
    # TFX's Pusher with an atomic push, sweeping what killed pushes left first (components/pusher/); it pushes
    # only a model both the Evaluator and the infra validation blessed.
    pusher = Pusher(model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
                    infra_blessing=infra_validation.outputs['blessing'],
                    serving_model_dir=config.serving_model_dir, metadata_connection=registry)

    # The blessed candidate scores the new span (ExampleGen reads only the latest span): PredictionLogs with
    # the outlier flags, as TFX's BulkInferrer writes them.
    bulk_inferrer = BulkInferrer(examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
                                 model_blessing=evaluator.outputs['blessing'], splits=config.bulk_inference_splits,
                                 explain=int(config.bulk_inference_explain))

    # What the Kubeflow Pipelines UI shows of the run (and what a local run leaves beside its outputs).
    run_views = RunViews(statistics=statistics_gen.outputs['statistics'],
                         anomalies=example_validator.outputs['anomalies'],
                         drift_report=drift_check.outputs['drift_report'], evaluation=evaluator.outputs['evaluation'],
                         blessing=evaluator.outputs['blessing'], pushed_model=pusher.outputs['pushed_model'])

    components = [example_gen, statistics_gen, draft_schema, curated_schema, example_validator, drift_check,
                  anomalies_gate, transform, tuner, trainer, baseline, evaluator, infra_validation, pusher,
                  bulk_inferrer, run_views]
    if config.kubeflow is not None:
        unknown = set(config.kubeflow.resources) - {c.id for c in components}
        if unknown:
            raise ValueError(f'resources for unknown components {sorted(unknown)}; '
                             f'known: {", ".join(c.id for c in components)}')
    return components


def create_pipeline(config: PipelineConfig, metadata_connection_config: Optional[object]) -> Pipeline:
    """The pipeline. Local runs pass their ML Metadata connection; Kubeflow's backend owns
    ML Metadata, so a compile passes None."""
    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_pipeline_args)
