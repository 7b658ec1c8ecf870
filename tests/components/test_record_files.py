"""Counting and reading gzipped TFRecord files in batches gives every record, once, in order."""

import tensorflow as tf

from components.record_files import batched, record_count


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
