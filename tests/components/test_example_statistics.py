"""The in-process StatisticsGen executor writes the statistics TFX's StatisticsGen executor writes."""

import os

import pytest
import tensorflow_data_validation as tfdv
from tfx.components.statistics_gen import executor as tfx_statistics_executor
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import json_utils

from components import example_statistics
from support.sample_examples import examples_of_sample

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


@pytest.fixture(scope='module')
def small_examples(tmp_path_factory):
    """The sample's first 5,000 rows through ExampleGen: train 3,279 rows, eval 1,721."""
    return examples_of_sample(tmp_path_factory.mktemp('small-examples'), rows=5000)


# Bounded features: their sample means are close to normal at a few hundred rows (over 100,000
# simulated samples of these splits their z-scores had sd 1.00, the largest 5.5), so a 6-sigma bound
# fails a correct sample about once in 5 x 10^8 checks.
_BOUNDED = ('trip_start_hour', 'trip_start_day', 'trip_start_month', 'pickup_latitude', 'pickup_longitude')


@pytest.mark.parametrize('properties, rates', [
    ({'stats_options_json': tfdv.StatsOptions(sample_rate=0.2).to_json()}, {'train': 0.2, 'eval': 0.2}),
    ({'sample_rate_by_split': json_utils.dumps({'train': 0.2, 'eval': 0.3})}, {'train': 0.2, 'eval': 0.3}),
], ids=['stats_options', 'sample_rate_by_split'])
def test_a_sampled_split_is_a_sample_of_its_examples_not_of_its_batches(small_examples, tmp_path, properties, rates):
    """Issue 27. TFDV samples whatever batches reach it: `random.random() <= sample_rate` once per
    record batch (tensorflow_data_validation/api/stats_api.py:94-97, 103-107, TFDV 1.16.1). This
    executor used to feed batches of 1,000 rows, so a split of 3,279 rows at 0.2 had 0, 279, 1,000,
    1,279, ... rows in its statistics, and was empty in 2 runs of 10 (eval, 1,721 rows: 4 of 10).
    TFX's executor feeds TFXIO's BeamSource() without a batch size (tfx/components/statistics_gen/
    executor.py:257), so Beam's BatchElements sizes them from 1 up to 1,000 (tfx_bsl/coders/
    batch_util.py:82-89): batches of 1, 2, 4, ... 512, then a few of ~200-1,000, about 40 for
    5,000 rows. Its samples are rarely empty but no better an estimate: over 10 runs on these splits
    it kept 5-819 of train's 3,279 rows (656 expected) and 1-714 of eval's 1,721 (344).

    A sample of the examples has, per split, Binomial(rows, rate) of them: never empty at these sizes
    ((1 - 0.2)^1721 < 10^-166), within 6 sigma of rows x rate, and means within 6 sigma of the full
    split's."""
    full = _run(example_statistics.Executor, small_examples, tmp_path / 'full')
    sampled = _run(example_statistics.Executor, small_examples, tmp_path / 'sampled', properties)
    assert json_utils.loads(sampled.get_json_value_custom_property('sample_rate_by_split')) == rates
    for split, rate in rates.items():
        (rows, everything), (count, sample) = _by_feature(full, split), _by_feature(sampled, split)
        assert count > 0, f'{split}: the sample is empty'
        assert abs(count - rows * rate) <= 6 * (rows * rate * (1 - rate)) ** 0.5, (split, count, rows, rate)
        for name in _BOUNDED:
            whole, part = everything[name].num_stats, sample[name].num_stats
            present = whole.common_stats.num_non_missing
            # The mean of a Bernoulli(rate) sample of `present` values: sd / sqrt(present rate / (1 - rate)).
            bound = 6 * whole.std_dev * ((1 - rate) / (present * rate)) ** 0.5
            assert abs(part.mean - whole.mean) <= bound, (split, name, part.mean, whole.mean, bound)


def test_executed_again_on_the_same_examples_a_sampled_run_has_the_same_statistics(small_examples, tmp_path):
    """An audit re-executes a run and expects its statistics: the sample is seeded by the split's location
    and the seed recorded. (TFDV's own sample draws fresh random numbers every run.)"""
    properties = {'stats_options_json': tfdv.StatsOptions(sample_rate=0.2).to_json()}
    first, again = (_run(example_statistics.Executor, small_examples, tmp_path / name, properties)
                    for name in ('first', 'again'))
    seeds = json_utils.loads(first.get_json_value_custom_property(example_statistics.SAMPLE_SEED_PROPERTY))
    assert set(seeds) == {'train', 'eval'} and seeds['train'] != seeds['eval']
    assert json_utils.loads(again.get_json_value_custom_property(example_statistics.SAMPLE_SEED_PROPERTY)) == seeds
    for split in ('train', 'eval'):
        assert _by_feature(first, split) == _by_feature(again, split)
    # Unsampled statistics record no seed.
    full = _run(example_statistics.Executor, small_examples, tmp_path / 'full')
    assert not full.has_custom_property(example_statistics.SAMPLE_SEED_PROPERTY)
