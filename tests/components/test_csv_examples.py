"""The in-process CSV executor writes the artifact TFX's CsvExampleGen executor writes."""

import bisect
import collections
import csv
import glob
import hashlib
import os
import random

import pytest
import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as tfx_csv_executor
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components import beam_runner, csv_examples
from pipeline import data

pytestmark = pytest.mark.component


EDGE_HEADER = ['n', 'x', 'word', 'mixed', 'empty', 'huge', 'spaced']
EDGE_ROWS = [
    ['1', '0.5', 'plain', '3', '', '1', ' 7'],
    ['', '', '', '', '', '', ''],  # every cell empty: empty value lists
    ['-4', '1e3', 'a, quoted comma', '2.5', '', '99999999999999999999', '8'],
    ['12', 'nan', 'two\nlines', 'x', '', '2', ''],
    ['0', '-0.1', 'ünïcödé', '', '', '3', '9 '],
]


def _write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _exec_properties(input_base, pattern='*.csv', **overrides):
    output = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=2),
        example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=1)]))
    return {'input_base': str(input_base),
            'input_config': proto_utils.proto_to_json(example_gen_pb2.Input(splits=[
                example_gen_pb2.Input.Split(name='span', pattern=pattern)])),
            'output_config': proto_utils.proto_to_json(output),
            'output_data_format': example_gen_pb2.FORMAT_TF_EXAMPLE,
            'output_file_format': example_gen_pb2.FORMAT_TFRECORDS_GZIP, **overrides}


def _run(executor_class, exec_properties, output_dir, beam_args=()):
    examples = standard_artifacts.Examples()
    examples.uri = str(output_dir)
    executor_class(BaseBeamExecutor.Context(beam_pipeline_args=list(beam_args))).Do(
        {}, {'examples': [examples]}, dict(exec_properties))
    splits = {}
    for name in artifact_utils.decode_split_names(examples.split_names):
        files = glob.glob(os.path.join(artifact_utils.get_split_uri([examples], name), '*'))
        splits[name] = collections.Counter(
            tf.train.Example.FromString(record.numpy()).SerializeToString(deterministic=True)
            for record in tf.data.TFRecordDataset(files, compression_type='GZIP'))
    return examples, splits


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp('csv')
    header, rows = data.read_rows(data.taxi_sample_path())
    _write_csv(str(root / 'taxi' / 'a.csv'), header, rows[:1500])
    _write_csv(str(root / 'taxi' / 'b.csv'), header, rows[1500:2500])
    _write_csv(str(root / 'edge' / 'data.csv'), EDGE_HEADER, EDGE_ROWS * 20)
    return root


@pytest.mark.parametrize('case', ['taxi', 'edge'])
def test_the_same_examples_in_the_same_splits_as_tfx(inputs, case, tmp_path):
    properties = _exec_properties(inputs / case)
    ours, ours_splits = _run(csv_examples.Executor, properties, tmp_path / 'ours')
    theirs, theirs_splits = _run(tfx_csv_executor.Executor, properties, tmp_path / 'theirs')
    assert ours.split_names == theirs.split_names
    assert ours_splits == theirs_splits  # same examples, same counts, same split for each
    assert sum(sum(s.values()) for s in ours_splits.values()) == {'taxi': 2500, 'edge': 100}[case]
    assert all(ours_splits.values())
    for key in ('payload_format', 'file_format'):
        assert ours.get_string_custom_property(key) == theirs.get_string_custom_property(key)
    assert os.listdir(os.path.join(ours.uri, 'Split-train')) == [csv_examples.SHARD_NAME]


def test_the_types_are_tfx_inference(inputs):
    example = tf.train.Example.FromString(next(iter(
        _run(csv_examples.Executor, _exec_properties(inputs / 'edge'), inputs / 'out-types')[1]['train'])))
    kinds = {name: feature.WhichOneof('kind') for name, feature in example.features.feature.items()}
    assert kinds == {'n': 'int64_list', 'x': 'float_list', 'word': 'bytes_list', 'mixed': 'bytes_list',
                     'empty': None, 'huge': 'bytes_list', 'spaced': 'int64_list'}


def test_a_remote_runner_or_an_unmirrored_config_gets_tfx_executor(inputs, tmp_path, monkeypatch):
    def refuse(*args):
        raise AssertionError('the in-process path ran')
    monkeypatch.setattr(csv_examples, 'write_splits', refuse)
    partitioned = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
        splits=[example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=2),
                example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=1)],
        partition_feature_name='n'))
    properties = _exec_properties(inputs / 'edge', output_config=proto_utils.proto_to_json(partitioned))
    _, splits = _run(csv_examples.Executor, properties, tmp_path / 'partitioned')
    assert sum(sum(s.values()) for s in splits.values()) == 100
    assert not beam_runner.in_process(['--runner=DataflowRunner'])
    assert beam_runner.in_process([]) and beam_runner.in_process(['--direct_num_workers=2'])


@pytest.mark.parametrize('content, message', [
    ('a,b\n1,2\n3\n', 'Invalid CSV'),
    ('a,b\n1,"never closed\n', 'Invalid CSV'),
])
def test_malformed_csv_is_refused_naming_the_file(tmp_path, content, message):
    (tmp_path / 'in').mkdir()
    (tmp_path / 'in' / 'bad.csv').write_text(content)
    with pytest.raises(ValueError, match=message) as raised:
        _run(csv_examples.Executor, _exec_properties(tmp_path / 'in'), tmp_path / 'out')
    assert 'bad.csv' in str(raised.value)


def test_no_files_or_mixed_headers_are_refused(tmp_path):
    (tmp_path / 'in').mkdir()
    with pytest.raises(RuntimeError, match='does not match any files'):
        _run(csv_examples.Executor, _exec_properties(tmp_path / 'in'), tmp_path / 'out')
    _write_csv(str(tmp_path / 'in' / 'a.csv'), ['a', 'b'], [['1', '2']])
    _write_csv(str(tmp_path / 'in' / 'b.csv'), ['a', 'c'], [['1', '2']])
    with pytest.raises(RuntimeError, match='different header'):
        _run(csv_examples.Executor, _exec_properties(tmp_path / 'in'), tmp_path / 'out2')


def test_blocks_bound_memory_without_changing_the_output(inputs, tmp_path, monkeypatch):
    properties = _exec_properties(inputs / 'taxi')
    _, whole = _run(csv_examples.Executor, properties, tmp_path / 'whole')
    monkeypatch.setattr(csv_examples, 'BLOCK_BYTES', 16 << 10)  # many blocks, values seen again across them
    _, blocked = _run(csv_examples.Executor, properties, tmp_path / 'blocked')
    assert blocked == whole


@pytest.mark.parametrize('buckets', [[2, 3], [1, 2, 3], [7, 10], [5], [3, 10**13, 2**80]])
def test_split_indexes_place_records_as_the_sha256_bucket_does(buckets):
    rng = random.Random(7)
    records = [rng.randbytes(rng.randint(0, 300)) for _ in range(3000)]
    expected = [bisect.bisect(buckets, int.from_bytes(hashlib.sha256(r).digest(), 'big') % buckets[-1])
                for r in records]
    assert csv_examples.split_indexes(records, buckets).tolist() == expected
