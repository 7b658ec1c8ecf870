"""Transform's `preprocessing_fn`: raw taxi columns to model inputs.

Referenced by module path (`taxi_model.preprocessing.preprocessing_fn`), so the
same installed code runs under LocalDagRunner and in the Kubeflow image. The
graph it builds is embedded in the exported model, which is why serving needs
no separate feature code.
"""

from typing import Dict, Union

import tensorflow as tf
import tensorflow_transform as tft

from taxi_model import contract
from taxi_model.features import FEATURES, LABEL, Encoding, Feature, RawType

Tensor = Union[tf.Tensor, tf.SparseTensor]

# The share of training examples the outlier flag is calibrated to flag: the
# score's threshold is this upper quantile of the training split's scores.
OUTLIER_SHARE = 0.01
# Rank error of the quantile sketch: the flagged share lands within
# OUTLIER_SHARE +/- this on the training split.
_QUANTILE_EPSILON = 0.001


def densify(x: Tensor, missing_value) -> tf.Tensor:
    """A [batch] dense tensor from a [batch, 0 or 1] sparse one (or a dense [batch, 1]).

    Columns that may be absent in a row arrive as SparseTensors; the row's slot
    gets `missing_value`, which the caller chooses per feature.
    """
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), missing_value)
    return tf.reshape(x, [-1])


def _z_score(x: Tensor) -> tf.Tensor:
    """z-score against the training split, 0 (the mean) where missing."""
    return densify(tft.scale_to_z_score(tf.cast(x, tf.float32)), 0.0)


def _transform(f: Feature, x: Tensor) -> tf.Tensor:
    # Scaling and bucketizing work on the values present (TFT accepts sparse
    # input), then the gaps are filled in the transformed space, so imputation
    # costs no extra analyzer pass over the data.
    if f.encoding is Encoding.SCALED:
        # 0 in z-score space is the training mean: mean imputation.
        return _z_score(x)
    if f.encoding is Encoding.BUCKETIZED:
        # The middle bucket holds the median: median imputation.
        buckets = tft.bucketize(tf.cast(x, tf.float32), f.buckets)
        return densify(buckets, tf.constant(f.buckets // 2, buckets.dtype))
    if f.encoding is Encoding.IDENTITY:
        # Missing ids become 0, which no valid community area, day or month
        # uses (hour 0 is midnight, but the schema requires the hour column).
        ids = densify(x, tf.constant(0, x.dtype))
        return tf.clip_by_value(tf.cast(ids, tf.int64), 0, f.cardinality - 1)
    if f.encoding is Encoding.VOCABULARY:
        return tft.compute_and_apply_vocabulary(
            densify(x, ''), top_k=f.vocab_size, num_oov_buckets=f.oov_buckets,
            vocab_filename=f.name)
    raise ValueError(f'unknown encoding {f.encoding}')


def label(inputs: Dict[str, Tensor]) -> tf.Tensor:
    """1 when the tip exceeds `LABEL.tip_fraction` of the fare, else 0."""
    fare = densify(inputs[LABEL.fare_column], float('nan'))
    tips = densify(inputs[LABEL.tips_column], 0.0)
    big = tf.greater(tips, tf.multiply(fare, LABEL.tip_fraction))
    return tf.cast(tf.logical_and(big, tf.logical_not(tf.math.is_nan(fare))), tf.int64)


def outlier_score(inputs: Dict[str, Tensor], transformed: Dict[str, tf.Tensor]) -> tf.Tensor:
    """How unlike the training split an example is: the mean squared z-score of
    its numeric features (a Mahalanobis distance with a diagonal covariance).

    Missing values score 0 (they are imputed with the mean); a value too large
    for float32 scores infinity. Scaled features reuse their z-score output.
    """
    squares = []
    for f in FEATURES:
        if f.raw_type is RawType.BYTES or f.encoding is Encoding.IDENTITY:
            continue
        z = transformed[f.transformed_name] if f.encoding is Encoding.SCALED else _z_score(inputs[f.name])
        squares.append(tf.square(z))
    return tf.reduce_mean(tf.stack(squares, axis=1), axis=1)


def preprocessing_fn(inputs: Dict[str, Tensor]) -> Dict[str, tf.Tensor]:
    """tf.Transform callback. Outputs one `<name>_xf` per feature, the label, and
    the outlier score with its flag, calibrated on the training split (Transform
    analyses that split only), so the statistics travel with the model.

    At serving time the transform layer is fed no `tips`; TFT then prunes the
    label output, which is the only one that depends on it.
    """
    outputs = {f.transformed_name: _transform(f, inputs[f.name]) for f in FEATURES}
    outputs[LABEL.name] = label(inputs)
    score = outlier_score(inputs, outputs)
    boundaries = tft.quantiles(score, num_buckets=round(1 / OUTLIER_SHARE), epsilon=_QUANTILE_EPSILON)
    outputs[contract.OUTLIER_SCORE] = score
    outputs[contract.OUTLIER_THRESHOLD] = tf.fill(tf.shape(score), boundaries[0, -1])
    return outputs
