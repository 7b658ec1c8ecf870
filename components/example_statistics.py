"""StatisticsGen's executor, reading the splits without Beam's IO when Beam runs in process.

TFX's executor feeds TFDV from TFXIO's Beam source: Beam's Python TFRecord
reader (Python CRC and gunzip) and records batched one by one, which on one
machine is a large share of its time (docs/performance.md#beams-io-in-process). Here TFDV's
`GenerateStatistics` reads `record_files.RecordBatches` instead (tf.data reads,
tfx_bsl's decoder decodes, as TFXIO's does; with no schema it infers types as
TFXIO's does), with the same options, and `WriteStatisticsToBinaryFile` writes
the same `FeatureStats.pb` per split; the artifact gets the same split names,
span and properties. A test compares the statistics with TFX's executor's.

With a sample rate (`stats_options.sample_rate`, `sample_rate_by_split`) the
statistics are of a Bernoulli sample of the split's examples: each kept with
that probability, on its own, before decoding, and TFDV is given the sample
with no rate of its own. TFDV samples whole record batches
(`random.random() <= sample_rate` per batch), so fed this executor's batches
of 1,000 rows a split of a few thousand rows was sampled in thousands, often
to nothing; TFX's executor feeds batches Beam grows from 1 row to 1,000, less
often empty but no closer an estimate (issue 27, docs/decisions.md). Unlike TFDV's, the
sample is seeded by the split's location (recorded as `sample_seed_by_split`): executed again on
the same Examples, StatisticsGen computes the same statistics, as an audit of a run expects.

Anything it does not mirror goes to TFX's executor unchanged: Beam on a remote
runner (Dataflow scales TFDV out), sharded output, reading filtered paths,
custom split patterns, or input that is not gzipped tf.Example records.
"""

import hashlib
import os
from typing import Any, Dict, List

import tensorflow_data_validation as tfdv
from absl import logging
from tfx import types
from tfx.components.statistics_gen import component as statistics_component
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.components.util import examples_utils
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, stats_utils

from components import beam_runner, record_files

# Records per batch TFDV sees: TFXIO's largest (its batches grow to 1,000).
BATCH = 1000
# The statistics artifact's record of each split's sample seed (JSON), beside TFX's sample_rate_by_split.
SAMPLE_SEED_PROPERTY = 'sample_seed_by_split'


def sample_seed(split_uri: str) -> int:
    """A split's sample seed: from its location, so the same Examples are sampled alike on every execution."""
    return int.from_bytes(hashlib.sha256(split_uri.encode()).digest()[:8], 'big')


def _options(exec_properties: Dict[str, Any]) -> tfdv.StatsOptions:
    json_options = exec_properties.get(standard_component_specs.STATS_OPTIONS_JSON_KEY)
    return tfdv.StatsOptions.from_json(json_options) if json_options else tfdv.StatsOptions()


def _mirrored(input_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> bool:
    examples = input_dict[standard_component_specs.EXAMPLES_KEY]
    return (len(examples) == 1
            and not exec_properties.get(standard_component_specs.SHARDED_STATS_OUTPUT_KEY)
            and not _options(exec_properties).experimental_filter_read_paths
            and not examples[0].has_custom_property(examples_utils.CUSTOM_SPLIT_PATTERN_PROPERTY_NAME)
            and record_files.gzipped_examples(examples))


class Executor(statistics_executor.Executor):
    """TFX's StatisticsGen executor, with the in-process case read by tf.data."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        if not (beam_runner.in_process(self._beam_pipeline_args or []) and _mirrored(input_dict, exec_properties)):
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict[standard_component_specs.EXAMPLES_KEY])
        excluded = json_utils.loads(exec_properties.get(standard_component_specs.EXCLUDE_SPLITS_KEY, 'null')) or []
        if not isinstance(excluded, list):
            raise ValueError(f'exclude_splits in execution properties needs to be a list. '
                             f'Got {type(excluded)} instead.')
        splits = [s for s in artifact_utils.decode_split_names(examples.split_names) if s not in excluded]
        if not splits:
            raise ValueError(f'No splits for examples artifact: {examples}')
        options = _options(exec_properties)
        if input_dict.get(standard_component_specs.SCHEMA_KEY):
            if options.schema:
                raise ValueError('A schema was provided as an input and the stats_options exec_property also '
                                 'contains a schema value. At most one of these may be set.')
            options.schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(
                artifact_utils.get_single_uri(input_dict[standard_component_specs.SCHEMA_KEY])))
        rates = json_utils.loads(exec_properties.get(standard_component_specs.SAMPLE_RATE_BY_SPLIT_KEY, 'null')) or {}

        statistics = artifact_utils.get_single_instance(output_dict[standard_component_specs.STATISTICS_KEY])
        statistics.split_names = artifact_utils.encode_split_names(splits)
        statistics.span = examples.span
        statistics.set_string_custom_property(statistics_executor.STATS_DASHBOARD_LINK,
                                              stats_utils.generate_stats_dashboard_link(statistics))
        statistics.set_json_value_custom_property(
            statistics_executor.SAMPLE_RATE_BY_SPLIT_PROPERTY_NAME,
            json_utils.dumps({s: rates.get(s, options.sample_rate or 1.0) for s in splits}))
        seeds = {}  # of the sampled splits
        with self._make_beam_pipeline() as pipeline:
            for split in splits:
                split_options = tfdv.StatsOptions.from_json(options.to_json())
                if rates.get(split) is not None:
                    split_options.sample_rate = rates[split]
                # The sample is drawn here, per example, and TFDV samples nothing more (see the docstring).
                rate, split_options.sample_rate = split_options.sample_rate, None
                if rate is not None and rate < 1:
                    # Seeded by the split's location: executed again on the same Examples, the same sample.
                    seeds[split] = sample_seed(artifact_utils.get_split_uri([examples], split))
                output = os.path.join(artifact_utils.get_split_uri([statistics], split),
                                      statistics_executor.DEFAULT_FILE_NAME)
                _ = (pipeline
                     | f'ReadAndDecode[{split}]' >> record_files.RecordBatches(
                         [io_utils.all_files_pattern(artifact_utils.get_split_uri([examples], split))], None, BATCH,
                         sample_rate=rate if split in seeds else None, sample_seed=seeds.get(split))
                     | f'GenerateStatistics[{split}]' >> tfdv.GenerateStatistics(split_options)
                     | f'WriteStatsOutput[{split}]' >> tfdv.WriteStatisticsToBinaryFile(output))
                logging.info('Statistics for split %s written to %s.', split, output)
        if seeds:
            statistics.set_json_value_custom_property(SAMPLE_SEED_PROPERTY, json_utils.dumps(seeds))


class StatisticsGen(statistics_component.StatisticsGen):
    """TFX's StatisticsGen (same id, spec, driver and outputs) with the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
