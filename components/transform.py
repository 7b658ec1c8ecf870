"""Transform's executor, reading, analysing and writing in process when Beam runs in process.

TFX's executor spends most of a large run in Beam's IO rather than in
tf.Transform (docs/performance.md#beams-io-in-process has the figures).
Its analysis pass reads the training split with Beam's Python TFRecord reader
(Python CRC and gunzip) and batches records one by one
for TFXIO's decoder; its second pass reads every split the same way, encodes
the transformed examples and writes them with Beam's Python TFRecord writer.

This executor makes the same artifacts with the same libraries and less IO:
- analysis: tf.Transform's `AnalyzeDataset` on the same preprocessing_fn, fed
  by `record_files.ParsedRecordBatches` (tf.data reads and parses in C++ the
  columns the analyzers read, as TFX projects them, into Arrow batches that its
  TensorAdapter turns into the same tensors as TFXIO's; where the schema's
  tensor representations are other than dense and varlen sparse,
  `record_files.RecordBatches`, tfx_bsl's decoder), then TFT's
  `WriteTransformFn` and `WriteMetadata`: the transform graph directory TFX's
  executor writes;
- materialisation: tf.data parses each split, the transform graph just written
  runs on batches of `BATCH`, TFT's own tensor-to-Arrow converter and tfx_bsl's
  encoder (what TFX's executor encodes with) make the tf.Examples, and
  TensorFlow's TFRecord writer gzips them: one
  `transformed_examples-00000-of-00001.gz` per split under Split-<name>/, with
  the same split names.
Tests compare both artifacts with TFX's executor's on the taxi sample.

Anything it does not mirror goes to TFX's executor unchanged: Beam on a remote
runner (Dataflow scales both passes out), statistics or an analyzer cache
enabled, a stats options updater, a user module shipped as a wheel, more than
one input artifact, or input that is not gzipped tf.Example records.
"""

import os
import time
from typing import Any, Dict, Iterator, List

import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from absl import logging
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform import impl_helper
from tensorflow_transform.tf_metadata import dataset_metadata
from tfx import types
from tfx.components.transform import component as transform_component
from tfx.components.transform import executor as transform_executor
from tfx.components.transform import executor_utils, labels
from tfx.components.util import udf_utils
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import tensor_representation_util, tf_example_record

from components import beam_runner, record_files

# Records per batch the analyzers see (tf.Transform's `desired_batch_size`): ten times TFXIO's largest
# (its batches grow to 1,000), as each batch costs a graph run and its conversions on top of its rows
# (docs/performance.md#transforms-analysis-batches).
ANALYSIS_BATCH = 10_000
# Records per batch through the transform graph and the encoder.
BATCH = 4096
# What TFX's executor names the one shard it writes per split (WriteToTFRecord, prefix and suffix).
SHARD_NAME = 'transformed_examples-00000-of-00001.gz'
# zlib's fastest level: somewhat larger files, written much faster, and only the Trainer reads
# them (docs/performance.md#transformed-examples-compression). A writer thread at the default
# level was no faster: it and the encoder take turns holding the GIL.
_WRITE_OPTIONS = tf.io.TFRecordOptions(compression_type='GZIP', compression_level=1)


def _mirrored(input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
              exec_properties: Dict[str, Any]) -> bool:
    examples = input_dict[standard_component_specs.EXAMPLES_KEY]
    return (len(examples) == 1
            and bool(exec_properties.get(standard_component_specs.DISABLE_STATISTICS_KEY))
            and not output_dict.get(standard_component_specs.UPDATED_ANALYZER_CACHE_KEY)
            and not input_dict.get(standard_component_specs.ANALYZER_CACHE_KEY)
            and not exec_properties.get(standard_component_specs.STATS_OPTIONS_UPDATER_FN_KEY)
            # A module shipped as a wheel is installed by TFX's executor first.
            and not udf_utils.decode_user_module_key(
                exec_properties.get(standard_component_specs.MODULE_PATH_KEY))[1]
            and record_files.gzipped_examples(examples))


class Executor(transform_executor.Executor):
    """TFX's Transform executor, with the in-process case read, analysed and written without Beam's IO."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        if not (beam_runner.in_process(self._beam_pipeline_args or [])
                and _mirrored(input_dict, output_dict, exec_properties)):
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = input_dict[standard_component_specs.EXAMPLES_KEY]
        splits = executor_utils.ResolveSplitsConfig(
            exec_properties.get(standard_component_specs.SPLITS_CONFIG_KEY), examples)
        graph_uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.TRANSFORM_GRAPH_KEY])
        schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(
            artifact_utils.get_single_uri(input_dict[standard_component_specs.SCHEMA_KEY])))
        preprocessing_fn = self._GetPreprocessingFn({
            labels.MODULE_FILE: exec_properties.get(standard_component_specs.MODULE_FILE_KEY),
            labels.MODULE_PATH: exec_properties.get(standard_component_specs.MODULE_PATH_KEY),
            labels.PREPROCESSING_FN: exec_properties.get(standard_component_specs.PREPROCESSING_FN_KEY),
            labels.CUSTOM_CONFIG: exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY),
        }, {})
        started = time.perf_counter()
        self._analyze(preprocessing_fn, schema, [io_utils.all_files_pattern(artifact_utils.get_split_uri(examples, s))
                                                 for s in splits.analyze], graph_uri,
                      bool(exec_properties.get(standard_component_specs.FORCE_TF_COMPAT_V1_KEY, 0)))
        logging.info('Analysed %s in %.1f s', ', '.join(splits.analyze), time.perf_counter() - started)

        transformed = output_dict.get(standard_component_specs.TRANSFORMED_EXAMPLES_KEY)
        if not transformed:  # materialize=False: the graph alone
            return
        executor_utils.SetSplitNames(splits.transform, transformed)
        writer = TransformedWriter(graph_uri)
        for split in splits.transform:
            started = time.perf_counter()
            rows = writer.write(io_utils.all_files_pattern(artifact_utils.get_split_uri(examples, split)),
                                os.path.join(artifact_utils.get_split_uri(transformed, split), SHARD_NAME))
            seconds = time.perf_counter() - started
            logging.info('Transformed split %s: %s rows in %.1f s (%.0f rows/s)',
                         split, f'{rows:,}', seconds, rows / max(seconds, 1e-9))

    def _analyze(self, preprocessing_fn, schema: schema_pb2.Schema, patterns: List[str], graph_uri: str,
                 force_tf_compat_v1: bool) -> None:
        """tf.Transform's analysis of `patterns`, as TFX's executor runs it, written where it writes it."""
        raw = tf_example_record.TFExampleRecord(patterns, schema=schema)
        columns = tft.get_analyze_input_columns(
            preprocessing_fn, raw.TensorAdapter().OriginalTypeSpecs(), force_tf_compat_v1=force_tf_compat_v1)
        temp_dir = os.path.join(graph_uri, '.temp_path')
        # Only the columns the analyzers read, as TFX's executor projects them.
        adapter_config = raw.Project(columns).TensorAdapterConfig()
        spec = record_files.parse_spec(adapter_config.tensor_representations, adapter_config.arrow_schema)
        with self._make_beam_pipeline() as pipeline:
            with tft_beam.Context(temp_dir=temp_dir, desired_batch_size=ANALYSIS_BATCH,
                                  use_deep_copy_optimization=True, force_tf_compat_v1=force_tf_compat_v1):
                # The analyzers see the batches only through the TensorAdapter, so they can be parsed
                # rather than decoded: the same tensors, made on tf.data's threads.
                data = (pipeline | 'ReadAndParse' >> record_files.ParsedRecordBatches(
                            patterns, spec, adapter_config.arrow_schema, ANALYSIS_BATCH) if spec is not None
                        else pipeline | 'ReadAndDecode' >> record_files.RecordBatches(
                            patterns, tensor_representation_util.ProjectTensorRepresentationsInSchema(schema, columns),
                            ANALYSIS_BATCH))
                transform_fn = ((data, adapter_config) | 'Analyze' >> tft_beam.AnalyzeDataset(preprocessing_fn))
                _ = (dataset_metadata.DatasetMetadata(schema)
                     | 'WriteMetadata' >> tft_beam.WriteMetadata(
                         os.path.join(graph_uri, tft.TFTransformOutput.RAW_METADATA_DIR), pipeline))
                _ = transform_fn | 'WriteTransformFn' >> tft_beam.WriteTransformFn(graph_uri)
        io_utils.delete_dir(temp_dir)


class TransformedWriter:
    """Raw gzipped tf.Example records in, transformed gzipped tf.Example records out, through a transform graph."""

    def __init__(self, transform_graph_uri: str):
        output = tft.TFTransformOutput(transform_graph_uri)
        raw_spec = output.raw_feature_spec()
        layer = output.transform_features_layer()
        self._transform = tf.function(lambda serialized: layer(tf.io.parse_example(serialized, raw_spec)),
                                      autograph=False)
        schema = output.transformed_metadata.schema
        self._to_arrow = impl_helper.make_tensor_to_arrow_converter(schema)
        self._encoder = example_coder.RecordBatchToExamplesEncoder(schema)

    def _encoded(self, pattern: str) -> Iterator[List[bytes]]:
        # Encoded a batch ahead, in a thread: tfx_bsl's encoder releases Python's lock, so it
        # runs while the writer writes the batch before (docs/performance.md#decoding-ahead).
        return record_files.ahead(self._encode(pattern))

    def _encode(self, pattern: str) -> Iterator[List[bytes]]:
        batches = record_files.records([pattern]).batch(BATCH).map(self._transform).prefetch(2)
        for batch in batches:
            yield self._encoder.encode(self._to_arrow.convert({k: v.numpy() for k, v in batch.items()}))

    def write(self, pattern: str, path: str) -> int:
        """Writes `path` from the records `pattern` matches; returns the records written.

        The file appears under its name only once complete: a failed run removes
        its `.partial` file (a killed one may leave it; TFX never publishes it).
        """
        partial = path + '.partial'
        tf.io.gfile.makedirs(os.path.dirname(path))
        rows = 0
        try:
            with tf.io.TFRecordWriter(partial, _WRITE_OPTIONS) as records:
                for batch in self._encoded(pattern):
                    for record in batch:
                        records.write(record)
                    rows += len(batch)
        except BaseException:
            if tf.io.gfile.exists(partial):
                tf.io.gfile.remove(partial)
            raise
        tf.io.gfile.rename(partial, path, overwrite=True)
        return rows


class Transform(transform_component.Transform):
    """TFX's Transform (same id, spec, driver and outputs) with the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
