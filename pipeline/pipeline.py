"""The TFX DAG, built from a PipelineConfig. Runner-agnostic: no runner here.

ExampleGen -> StatisticsGen -> SchemaGen (draft, for review)
                            -> ExampleValidator (curated schema) -> AnomaliesGate
           -> Transform (after the gate) -> Trainer -> LatestPushedModel (baseline)
           -> Evaluator (candidate vs baseline) -> Pusher (blessed only)
"""

from __future__ import annotations

from typing import List

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from components.anomalies_gate import AnomaliesGate
from components.baseline_model import LatestPushedModel
from components.evaluator import Evaluator
from pipeline.config import PipelineConfig, Thresholds
from pipeline.features import LABEL, SLICE_COLUMNS

PREPROCESSING_FN = 'pipeline.preprocessing.preprocessing_fn'
RUN_FN = 'pipeline.model.run_fn'
# Each span is a directory of CSV files; ExampleGen reads the latest span.
SPAN_PATTERN = 'span-{SPAN}/*.csv'


def eval_config(thresholds: Thresholds) -> tfma.EvalConfig:
    # Thresholds gate the overall slice only: a slice such as payment_type
    # "Unknown" has a few dozen rows, too few to judge a model by.
    def overall(threshold):
        return tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)

    higher_is_better = tfma.MetricDirection.HIGHER_IS_BETTER
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name='serving_default',
            label_key=LABEL.name,
            # Applies the model's Transform graph to raw eval examples, which
            # is where the (derived) label comes from.
            preprocessing_function_names=['transform_features'])],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[c]) for c in SLICE_COLUMNS],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name='ExampleCount'),
            tfma.MetricConfig(class_name='AUC', per_slice_thresholds=[overall(tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={'value': thresholds.min_auc}),
                # Ignored when there is no baseline (the first push).
                change_threshold=tfma.GenericChangeThreshold(
                    direction=higher_is_better, absolute={'value': -thresholds.max_auc_drop})))]),
            tfma.MetricConfig(class_name='BinaryAccuracy', per_slice_thresholds=[overall(tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={'value': thresholds.min_accuracy})))]),
            tfma.MetricConfig(class_name='Precision'),
            tfma.MetricConfig(class_name='Recall'),
        ])])


def create_components(config: PipelineConfig) -> List[tfx.dsl.components.base.base_node.BaseNode]:
    example_gen = tfx.components.CsvExampleGen(
        input_base=config.data_root,
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name='span', pattern=SPAN_PATTERN)]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name='train', hash_buckets=2),
            tfx.proto.SplitConfig.Split(name='eval', hash_buckets=1)])))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
    draft_schema = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True).with_id('DraftSchemaGen')
    curated_schema = tfx.components.ImportSchemaGen(schema_file=config.schema_file)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs['statistics'], schema=curated_schema.outputs['schema'])
    anomalies_gate = AnomaliesGate(anomalies=example_validator.outputs['anomalies'])

    transform = tfx.components.Transform(
        examples=example_gen.outputs['examples'],
        schema=curated_schema.outputs['schema'],
        preprocessing_fn=PREPROCESSING_FN,
        # StatisticsGen already profiles the raw data; pre/post-transform
        # statistics would double Transform's time for nothing we read.
        disable_statistics=True,
        force_tf_compat_v1=True)
    transform.add_upstream_node(anomalies_gate)

    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=curated_schema.outputs['schema'],
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        custom_config=config.hyperparameters.to_custom_config())

    baseline = LatestPushedModel(
        candidate=trainer.outputs['model'], serving_model_dir=config.serving_model_dir
    ).with_id('LatestBlessedModel')
    evaluator = Evaluator(
        examples=example_gen.outputs['examples'],
        model=trainer.outputs['model'],
        baseline_model=baseline.outputs['baseline'],
        eval_config=eval_config(config.thresholds))
    pusher = tfx.components.Pusher(
        model=trainer.outputs['model'],
        model_blessing=evaluator.outputs['blessing'],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_model_dir)))

    return [example_gen, statistics_gen, draft_schema, curated_schema, example_validator, anomalies_gate,
            transform, trainer, baseline, evaluator, pusher]


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config=None) -> tfx.dsl.Pipeline:
    """The pipeline; local runs pass no connection config and get SQLite."""
    if metadata_connection_config is None:
        metadata_connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_pipeline_args)
