"""The baseline for model validation: the latest model the Pusher pushed.

TFX's usual baseline is a Resolver with LatestBlessedModelStrategy, which reads
ML Metadata from the orchestrator. Open-source KFP 2 backends cannot run
resolver nodes, so this component asks the one place every runner shares
instead: the push destination. Pusher only pushes blessed models, so the
newest complete version there is the latest blessed model that was released.
"""

import os
from typing import Optional

import tensorflow as tf
from tfx import v1 as tfx
from tfx.utils import io_utils

# Where a Model artifact keeps its SavedModel (tfx.utils.path_utils).
SERVING_SUBDIR = 'Format-Serving'
# Pusher writes saved_model.pb last, so a version without it is still being copied.
COMPLETE_MARKER = 'saved_model.pb'


def latest_pushed_version(serving_model_dir: str) -> Optional[str]:
    """The highest numeric version directory that holds a complete SavedModel."""
    if not tf.io.gfile.isdir(serving_model_dir):
        return None
    versions = [name.rstrip('/') for name in tf.io.gfile.listdir(serving_model_dir)]
    complete = [v for v in versions
                if v.isdigit() and tf.io.gfile.exists(os.path.join(serving_model_dir, v, COMPLETE_MARKER))]
    return max(complete, key=int) if complete else None


def has_model(model: tfx.types.standard_artifacts.Model) -> bool:
    return tf.io.gfile.exists(os.path.join(model.uri, SERVING_SUBDIR, COMPLETE_MARKER))


@tfx.dsl.components.component
def LatestPushedModel(
    candidate: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    serving_model_dir: tfx.dsl.components.Parameter[str],
    baseline: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
):
    """Copies the latest pushed model into `baseline`; leaves it empty if none.

    `candidate` is taken only so that the lookup runs after training and is
    redone for every new candidate (with caching on, a lookup keyed on the
    serving directory alone would reuse a stale answer).
    """
    del candidate
    version = latest_pushed_version(serving_model_dir)
    if version is None:
        baseline.set_int_custom_property('has_model', 0)
        return
    io_utils.copy_dir(os.path.join(serving_model_dir, version), os.path.join(baseline.uri, SERVING_SUBDIR))
    baseline.set_int_custom_property('has_model', 1)
    baseline.set_string_custom_property('pushed_version', version)
    baseline.set_string_custom_property('pushed_uri', os.path.join(serving_model_dir, version))
