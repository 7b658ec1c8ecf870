"""The in-process StatisticsGen executor writes the statistics TFX's StatisticsGen executor writes."""

import os

import pytest
import tensorflow_data_validation as tfdv
from tfx.components.statistics_gen import executor as tfx_statistics_executor
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import json_utils

from components import example_statistics

pytestmark = pytest.mark.component


def _run(executor_class, examples, out, properties=None):
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(out)
    executor_class(BaseBeamExecutor.Context(beam_pipeline_args=[])).Do(
        {'examples': [examples]}, {'statistics': [statistics]}, dict(properties or {}))
    return statistics


def _by_feature(statistics, split):
    stats = tfdv.load_stats_binary(os.path.join(artifact_utils.get_split_uri([statistics], split),
                                                tfx_statistics_executor.DEFAULT_FILE_NAME))
    (dataset,) = stats.datasets
    return dataset.num_examples, {f.path.step[0]: f for f in dataset.features}


def _without_float_sums(feature):
    """A feature's statistics without the mean and standard deviation, which are summed over other batches."""
    copy = type(feature)()
    copy.CopyFrom(feature)
    if copy.HasField('num_stats'):
        copy.num_stats.ClearField('mean')
        copy.num_stats.ClearField('std_dev')
    return copy


@pytest.mark.parametrize('properties', [{}, {'exclude_splits': json_utils.dumps(['eval'])}])
def test_the_same_statistics_as_tfx(taxi_examples, tmp_path, properties):
    ours = _run(example_statistics.Executor, taxi_examples, tmp_path / 'ours', properties)
    theirs = _run(tfx_statistics_executor.Executor, taxi_examples, tmp_path / 'theirs', properties)
    assert ours.split_names == theirs.split_names
    assert ours.span == theirs.span
    assert ours.mlmd_artifact.custom_properties == theirs.mlmd_artifact.custom_properties
    for split in artifact_utils.decode_split_names(theirs.split_names):
        (count, mine), (expected_count, tfx) = _by_feature(ours, split), _by_feature(theirs, split)
        assert count == expected_count > 1000
        assert sorted(mine) == sorted(tfx)
        for name, feature in tfx.items():
            assert _without_float_sums(mine[name]) == _without_float_sums(feature), name
            if feature.HasField('num_stats'):
                assert mine[name].num_stats.mean == pytest.approx(feature.num_stats.mean, rel=1e-12)
                assert mine[name].num_stats.std_dev == pytest.approx(feature.num_stats.std_dev, rel=1e-9)
    assert os.listdir(ours.uri) == os.listdir(theirs.uri)


def test_what_it_does_not_mirror_goes_to_tfx_executor(taxi_examples, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('the in-process path ran')
    monkeypatch.setattr(example_statistics.record_files, 'RecordBatches', refuse)
    # Sharded output: TFX's executor answers (this TFDV build has no sharded writer).
    with pytest.raises(ValueError, match='Sharded output requested but not supported'):
        _run(example_statistics.Executor, taxi_examples, tmp_path / 'sharded', {'sharded_stats_output': True})
