"""Counting and reading gzipped TFRecord files in batches gives every record, once, in order."""

import tensorflow as tf

import pytest

from components.record_files import batched, record_count

pytestmark = pytest.mark.component


def _write(path, records):
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type='GZIP')) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def test_every_record_of_every_file_is_counted_across_batch_boundaries(tmp_path):
    files = [_write(tmp_path / 'a.gz', [b'a%d' % i for i in range(5000)]),
             _write(tmp_path / 'b.gz', [b'b%d' % i for i in range(3)]),
             _write(tmp_path / 'empty.gz', [])]
    assert record_count(files) == 5003
    assert record_count([]) == 0


def test_batched_reading_yields_each_record_once_in_order(tmp_path):
    records = [b'r%d' % i for i in range(9000)]
    dataset = tf.data.TFRecordDataset([_write(tmp_path / 'r.gz', records)], compression_type='GZIP')
    assert list(batched(dataset)) == records
    assert list(batched(dataset.shard(1000, 0))) == records[::1000]


def test_record_batches_decode_as_tfxio_does(tmp_path):
    """Beam in process: the same Arrow rows as TFXIO's source, every file of every pattern, in batches."""
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.testing.util import assert_that
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.tfxio import tf_example_record

    from components.record_files import RecordBatches

    def example(i):
        features = {'n': tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
        if i % 3:  # a column missing from some rows
            features['w'] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'w%d' % i]))
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()

    (tmp_path / 'x').mkdir()
    _write(tmp_path / 'x' / 'a.gz', [example(i) for i in range(2500)])
    _write(tmp_path / 'x' / 'b.gz', [example(i) for i in range(2500, 2600)])
    _write(tmp_path / 'c.gz', [example(i) for i in range(2600, 2610)])
    schema = schema_pb2.Schema()
    schema.feature.add(name='n', type=schema_pb2.INT)
    schema.feature.add(name='w', type=schema_pb2.BYTES)
    patterns = [str(tmp_path / 'x' / '*'), str(tmp_path / 'c.gz')]

    def rows(batches):
        return sorted(zip(*(pa.Table.from_batches(batches).column(c).to_pylist() for c in ('n', 'w'))))

    def same_as(expected, largest):
        def check(batches):
            assert max(b.num_rows for b in batches) <= largest
            assert all(b.schema.equals(batches[0].schema) for b in batches)
            assert rows(batches) == expected
        return check

    expected = sorted(([i], [b'w%d' % i] if i % 3 else None) for i in range(2610))
    with beam.Pipeline() as pipeline:
        ours = pipeline | 'Ours' >> RecordBatches(patterns, schema, 1000)
        assert_that(ours, same_as(expected, 1000), label='OursCheck')
        tfxio = pipeline | 'TFXIO' >> tf_example_record.TFExampleRecord(patterns, schema=schema).BeamSource()
        assert_that(tfxio, same_as(expected, 1000), label='TFXIOCheck')



def _mixed_example(i):
    """Rows that differ where a decoder could: a varlen feature lacking (i % 4 == 1), present with no
    values (i % 4 == 2) or with two; a dense feature with a default lacking every fifth row."""
    feature = {'fare': tf.train.Feature(float_list=tf.train.FloatList(value=[i / 7])),
               'trip_seconds': tf.train.Feature(int64_list=tf.train.Int64List(value=[i, -i]))}
    if i % 4 != 1:
        company = [] if i % 4 == 2 else [b'c%d' % (i % 11), b'x']
        feature['company'] = tf.train.Feature(bytes_list=tf.train.BytesList(value=company))
    if i % 5:
        feature['month'] = tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 12]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _adapter_config(arrow_schema, **representations):
    from tfx_bsl.tfxio import tensor_adapter
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    return tensor_adapter.TensorAdapterConfig(arrow_schema, {
        name: text_format.Parse(text, schema_pb2.TensorRepresentation()) for name, text in representations.items()})


_REPRESENTATIONS = dict(
    fare='dense_tensor { column_name: "fare" shape { dim { size: 1 } } }',
    trip_seconds='dense_tensor { column_name: "trip_seconds" shape { dim { size: 2 } } }',
    company='varlen_sparse_tensor { column_name: "company" }',
    month='dense_tensor { column_name: "month" shape { dim { size: 1 } } default_value { int_value: -1 } }')


def _schema(**types):
    """A tf.Example schema of the features `types` names (schema_pb2.FLOAT, ...), and the Arrow schema
    of what the decoder makes of it."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.coders import example_coder
    schema = schema_pb2.Schema()
    for name, kind in types.items():
        schema.feature.add(name=name, type=kind)
    return schema, example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString()).ArrowSchema()


def _decoded_and_parsed(path, schema, config, batch_size):
    from tfx_bsl.tfxio import tensor_adapter

    from components import record_files
    spec = record_files.parse_spec(config.tensor_representations, config.arrow_schema)
    assert spec is not None
    adapter = tensor_adapter.TensorAdapter(config)
    decoded = [adapter.ToBatchTensors(b)
               for b in record_files._decode([path], schema.SerializeToString(), batch_size)]
    parsed = [adapter.ToBatchTensors(b) for b in record_files._parsed([path], spec, config.arrow_schema, batch_size)]
    return decoded, parsed


def test_parsed_batches_give_the_tensor_adapter_the_tensors_of_decoded_ones(tmp_path):
    """Transform's analysis reads `ParsedRecordBatches`: through the TensorAdapter it sees exactly
    what tfx_bsl's decoder gives it, batch by batch, whether a feature is lacking, empty or
    multi-valued, and a dense default filled where the adapter fills it."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = _write(tmp_path / 'e.gz', [_mixed_example(i) for i in range(2503)])
    schema, arrow_schema = _schema(fare=schema_pb2.FLOAT, trip_seconds=schema_pb2.INT, company=schema_pb2.BYTES,
                                   month=schema_pb2.INT)
    decoded, parsed = _decoded_and_parsed(path, schema, _adapter_config(arrow_schema, **_REPRESENTATIONS), 1000)
    assert len(decoded) == len(parsed) == 3
    for ours, theirs in zip(parsed, decoded):
        assert ours.keys() == theirs.keys()
        for name, expected in theirs.items():
            got = ours[name]
            assert isinstance(got, type(expected)), name
            if isinstance(expected, tf.SparseTensor):
                for part in ('indices', 'values', 'dense_shape'):
                    assert getattr(got, part).numpy().tolist() == getattr(expected, part).numpy().tolist(), name
            else:
                assert got.dtype == expected.dtype and got.numpy().tolist() == expected.numpy().tolist(), name
    assert -1 in decoded[0]['month'].numpy()  # the default was filled


@pytest.mark.parametrize('rows, representation', [
    # A dense feature an example lacks, with no default to fill.
    ([{'fare': [1.0]}, {}], 'dense_tensor { column_name: "fare" shape { dim { size: 1 } } }'),
    # Present with no values, where a default fills only what is lacking.
    ([{'fare': [1.0]}, {'fare': []}],
     'dense_tensor { column_name: "fare" shape { dim { size: 1 } } default_value { float_value: 0 } }'),
    # More values than the shape holds.
    ([{'fare': [1.0, 2.0]}, {'fare': [1.0, 2.0]}], 'dense_tensor { column_name: "fare" shape { dim { size: 1 } } }'),
])
def test_parsed_batches_fail_where_the_tensor_adapter_fails(tmp_path, rows, representation):
    from tensorflow_metadata.proto.v0 import schema_pb2

    def example(row):
        return tf.train.Example(features=tf.train.Features(feature={
            name: tf.train.Feature(float_list=tf.train.FloatList(value=values)) for name, values in row.items()}))

    serialized = [example(row).SerializeToString() for row in rows]
    path = _write(tmp_path / 'e.gz', serialized)
    schema, arrow_schema = _schema(fare=schema_pb2.FLOAT)
    config = _adapter_config(arrow_schema, fare=representation)
    with pytest.raises(ValueError):  # the adapter
        _decoded_and_parsed(path, schema, config, 10)
    from components import record_files
    with pytest.raises(tf.errors.InvalidArgumentError):  # parse_example
        list(record_files._parsed([path], record_files.parse_spec(config.tensor_representations, arrow_schema),
                                  arrow_schema, 10))


def test_a_batch_whose_wrong_lengths_add_up_is_refused_not_misread(tmp_path):
    """The TensorAdapter checks a dense feature's values per batch, so an example lacking its one value
    beside one holding two would pass as two rows shifted; parsing refuses the batch."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.tfxio import tensor_adapter

    from components import record_files

    def example(values):
        return tf.train.Example(features=tf.train.Features(feature={
            'fare': tf.train.Feature(float_list=tf.train.FloatList(value=values))})).SerializeToString()

    path = _write(tmp_path / 'e.gz', [example([]), example([1.0, 2.0])])
    schema, arrow_schema = _schema(fare=schema_pb2.FLOAT)
    config = _adapter_config(arrow_schema, fare=_REPRESENTATIONS['fare'])
    (misread,) = [tensor_adapter.TensorAdapter(config).ToBatchTensors(b)['fare'].numpy().tolist()
                  for b in record_files._decoded([path], schema.SerializeToString(), 10)]
    assert misread == [[1.0], [2.0]]  # the adapter's reading: the second example's values, one per row
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(record_files._parsed([path], record_files.parse_spec(config.tensor_representations, arrow_schema),
                                  arrow_schema, 10))


def test_representations_parse_example_cannot_mirror_are_left_to_the_decoder():
    import pyarrow as pa

    from components.record_files import parse_spec
    arrow_schema = pa.schema([('a', pa.large_list(pa.float32())), ('b', pa.large_list(pa.float32())),
                              ('s', pa.large_list(pa.large_utf8()))])
    assert parse_spec(_adapter_config(arrow_schema, a='varlen_sparse_tensor { column_name: "a" }')
                      .tensor_representations, arrow_schema) is not None
    for representations in [
            {'r': 'ragged_tensor { feature_path { step: "a" } }'},
            {'x': 'sparse_tensor { index_column_names: "a" value_column_name: "b" dense_shape { dim { size: 9 } } }'},
            {'a': 'varlen_sparse_tensor { column_name: "a" }', 'a2': 'varlen_sparse_tensor { column_name: "a" }'},
            {'s': 'varlen_sparse_tensor { column_name: "s" }'},  # not the decoder's type for bytes
            {'m': 'varlen_sparse_tensor { column_name: "missing" }'}]:
        config = _adapter_config(arrow_schema, **representations)
        assert parse_spec(config.tensor_representations, arrow_schema) is None, representations


def test_a_sampled_read_keeps_each_record_on_its_own(tmp_path):
    """With a sample rate, a Bernoulli sample of the records (issue 27): distinct records in file
    order, about rate x records of them from the whole of every file, in full batches but the last,
    and another sample every read. (The decoding itself is the unsampled read's, tested above.)"""
    import pyarrow as pa

    from components import record_files

    def example(i):
        features = {'n': tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()

    _write(tmp_path / 'a.gz', [example(i) for i in range(9000)])
    _write(tmp_path / 'b.gz', [example(i) for i in range(9000, 10000)])
    samples = []
    for _ in range(2):
        batches = list(record_files._decoded([str(tmp_path / '*.gz')], None, 300, sample_rate=0.1))
        assert [b.num_rows for b in batches[:-1]] == [300] * (len(batches) - 1) and batches[-1].num_rows <= 300
        kept = [n for (n,) in pa.Table.from_batches(batches).column('n').to_pylist()]
        assert kept == sorted(set(kept)) and set(kept) <= set(range(10000))
        # Binomial(10,000, 0.1): 1,000 +- 30 (6 sigma); whole batches of 1,000 would give a multiple of 1,000.
        assert abs(len(kept) - 1000) <= 6 * 30, len(kept)
        assert kept[0] < 1000 and kept[-1] >= 9000  # from the start of the first file to the second
        samples.append(kept)
    assert samples[0] != samples[1]


def test_decoding_ahead_keeps_order_raises_in_place_and_stops_with_its_caller():
    import threading
    from components.record_files import ahead

    assert list(ahead(iter(range(1000)), depth=2)) == list(range(1000))

    def failing():
        yield 1
        yield 2
        raise ValueError('record 3 is corrupt')

    got = []
    with pytest.raises(ValueError, match='record 3 is corrupt'):
        for item in ahead(failing()):
            got.append(item)
    assert got == [1, 2]  # everything before the error, then the error itself

    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    items = ahead(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # the caller stops: the thread stops too, having made at most a few more
    assert not any(t.name == 'record-files-ahead' and t.is_alive() for t in threading.enumerate())
    assert len(made) <= 3 + 2 + 1


def test_a_caller_that_stops_while_the_maker_fails_or_finishes_is_not_kept_waiting():
    import threading
    import time
    from components.record_files import ahead

    def failing_after_two():
        yield from range(2)
        raise ValueError('never seen')

    for source in (failing_after_two(), iter(range(2))):
        items = ahead(source, depth=1)
        assert next(items) == 0
        time.sleep(0.5)  # the maker has queued 1 and reached the end (or the error) with the queue full
        stopper = threading.Thread(target=items.close, daemon=True)
        stopper.start()
        stopper.join(timeout=10)
        assert not stopper.is_alive(), 'closing waited for a maker blocked on a full queue'
