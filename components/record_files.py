"""Counting and reading the records of gzipped TFRecord files (TFX's Examples splits) in batches, as the
Evaluator's sample and the run's row accounting need."""

from typing import List

import tensorflow as tf

# One dataset step per record took 22 s for 1M transformed examples; in batches of this size, 2.7 s.
_BATCH = 4096


def record_count(files: List[str]) -> int:
    """Records in gzipped TFRecord `files` (0 for none)."""
    batches = tf.data.TFRecordDataset(files, compression_type='GZIP').batch(_BATCH)
    return int(batches.reduce(tf.constant(0, tf.int64),
                              lambda count, batch: count + tf.shape(batch, out_type=tf.int64)[0]).numpy())


def batched(dataset: tf.data.Dataset):
    """A dataset's records as bytes, read in batches (an eager step per record costs ~20 us)."""
    for batch in dataset.batch(_BATCH):
        yield from batch.numpy()
