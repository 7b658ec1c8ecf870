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
