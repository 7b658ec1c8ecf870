"""What the pipeline's artifacts hold, read from their files: TFMA's metrics
per slice (candidate and baseline), TFDV's statistics as rows, TFMA's
confusion matrices at thresholds. Imports no TFX: the pipeline's reports, the
registry, provenance and the run views component read artifacts through here
alike.
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

from tensorflow_metadata.proto.v0 import statistics_pb2


OVERALL = 'overall'


def metrics_by_slice(evaluation_uri: str) -> Dict[str, tuple[Dict[str, float], Dict[str, float]]]:
    """(candidate, baseline) scalar metrics per slice ('overall', 'payment_type=Cash', ...) from TFMA's output."""
    import tensorflow_model_analysis as tfma
    result = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.HasField('cross_slice_key'):
            continue  # a cross-slice comparison (an EvalConfig with cross_slicing_specs), not a slice
        label = ', '.join(f'{k.column}={_slice_value(k)}' for k in slice_metrics.slice_key.single_slice_keys)
        candidate, baseline = result.setdefault(label or OVERALL, ({}, {}))
        for kv in slice_metrics.metric_keys_and_values:
            if kv.value.HasField('double_value') and not kv.key.HasField('sub_key') and not kv.key.is_diff:
                target = baseline if kv.key.model_name == 'baseline' else candidate
                target[kv.key.name] = kv.value.double_value.value
    return result


def _slice_value(key) -> str:
    value = getattr(key, key.WhichOneof('kind'))
    return value.decode() if isinstance(value, bytes) else str(value)


def slice_order(label: str) -> tuple:
    """The sort key of a slice label: overall first, then by column and by value (numerically where it is
    a number: hour 2 before hour 10)."""
    column, _, value = label.partition('=')
    try:
        number = float(value)
    except ValueError:
        number = math.inf
    return label != OVERALL, column, number, value


# The columns of `statistics_rows`.
STATISTICS_COLUMNS = ('feature', 'type', 'present', 'missing', 'mean', 'std', 'min', 'max', 'unique', 'top values')


def statistics_rows(stats: statistics_pb2.DatasetFeatureStatisticsList) -> List[list]:
    """A row of STATISTICS_COLUMNS per feature of TFDV statistics, by name: None where a column does not
    apply (a string's mean, a number's unique values), a string's three most frequent values with counts."""
    rows = []
    for feature in sorted(stats.datasets[0].features, key=lambda f: f.path.step[0]):
        name = feature.path.step[0]
        if feature.HasField('num_stats'):
            num = feature.num_stats
            rows.append([name, statistics_pb2.FeatureNameStatistics.Type.Name(feature.type),
                         int(num.common_stats.num_non_missing), int(num.common_stats.num_missing),
                         num.mean, num.std_dev, num.min, num.max, None, ''])
        else:
            text = feature.string_stats
            top = ', '.join(f'{v.value} ({int(v.frequency)})' for v in text.top_values[:3])
            rows.append([name, 'STRING', int(text.common_stats.num_non_missing), int(text.common_stats.num_missing),
                         None, None, None, None, int(text.unique), top])
    return rows


# TFMA's metric name for ConfusionMatrixAtThresholds (pipeline/dag.py eval_config asks for it).
CONFUSION_MATRICES = 'confusion_matrix_at_thresholds'


def confusion_matrices(evaluation_uri: str, model: str = 'candidate') -> List[Tuple[float, int, int, int, int]]:
    """(threshold, true positives, false positives, true negatives, false negatives) of `model` on the
    overall slice, by threshold; [] when the evaluation has none."""
    import tensorflow_model_analysis as tfma
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys or slice_metrics.HasField('cross_slice_key'):
            continue
        for kv in slice_metrics.metric_keys_and_values:
            if kv.key.name == CONFUSION_MATRICES and not kv.key.is_diff and kv.key.model_name in (model, ''):
                return sorted((m.threshold, int(m.true_positives), int(m.false_positives), int(m.true_negatives),
                               int(m.false_negatives)) for m in kv.value.confusion_matrix_at_thresholds.matrices)
    return []
