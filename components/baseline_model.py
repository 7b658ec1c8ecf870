"""The baseline for model validation: the latest model the Pusher pushed.

TFX's usual baseline is a Resolver with LatestBlessedModelStrategy, which reads
ML Metadata from the orchestrator. Open-source KFP 2 backends cannot run
resolver nodes, so this component looks at the push destination, which every
runner shares, and, where the runner's ML Metadata is reachable (the local
SQLite store; a cluster's metadata gRPC service), keeps only the versions it
records as pushed: a version on disk that ML Metadata does not know (a push
killed before its artifact was published, a directory copied in by hand) is
no baseline. Without a store (Vertex AI) the push destination alone decides;
pushes there are all-or-nothing locally and saved_model.pb-last remotely
(components/pusher/push_destination.py), and a cut-short saved_model.pb is
never taken. Pusher only pushes blessed models, so the answer is the latest
blessed model that was released.
"""

import os
from typing import Optional

from absl import logging
import tensorflow as tf
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components.pusher import push_destination
from foundation import metadata_store

# Where a Model artifact keeps its SavedModel (tfx.utils.path_utils).
SERVING_SUBDIR = 'Format-Serving'
# The file whose arrival says a SavedModel is complete (TFX's Pusher, and ours, copy it last).
COMPLETE_MARKER = push_destination.SAVED_MODEL


def latest_pushed_version(serving_model_dir: str, store: Optional[metadata_store.MetadataStore] = None
                          ) -> Optional[str]:
    """The newest version directory (a name of digits) that holds a complete SavedModel and, given
    `store`, that ML Metadata records as pushed there; versions passed over are logged, one line each."""
    known = None if store is None else metadata_store.pushed_versions(store, serving_model_dir)
    for name in push_destination.version_names(serving_model_dir):
        path = os.path.join(serving_model_dir, name)
        if not push_destination.is_complete(path):
            logging.warning('Latest pushed version: skipping %s, it has no complete %s (%s)',
                            name, COMPLETE_MARKER, path)
        elif known is not None and int(name) not in known:
            logging.warning('Latest pushed version: skipping %s, on disk but ML Metadata has no PushedModel '
                            'for it (%s)', name, path)
        else:
            return name
    return None


def has_model(model: standard_artifacts.Model) -> bool:
    return tf.io.gfile.exists(os.path.join(model.uri, SERVING_SUBDIR, COMPLETE_MARKER))


@component
def LatestPushedModel(
    candidate: InputArtifact[standard_artifacts.Model],
    serving_model_dir: Parameter[str],
    baseline: OutputArtifact[standard_artifacts.Model],
    metadata_connection: Parameter[str] = '',
):
    """Copies the latest pushed model into `baseline`; leaves it empty if none.

    `candidate` is taken only so that the lookup runs after training and is
    redone for every new candidate (with caching on, a lookup keyed on the
    serving directory alone would reuse a stale answer). `metadata_connection`
    is the runner's ML Metadata (foundation.metadata_store.connection_parameter,
    '' for none), constant per pipeline.
    """
    del candidate
    version = latest_pushed_version(serving_model_dir, metadata_store.connect_parameter(metadata_connection))
    if version is None:
        baseline.set_int_custom_property('has_model', 0)
        return
    io_utils.copy_dir(os.path.join(serving_model_dir, version), os.path.join(baseline.uri, SERVING_SUBDIR))
    baseline.set_int_custom_property('has_model', 1)
    baseline.set_string_custom_property('pushed_version', version)
    baseline.set_string_custom_property('pushed_uri', os.path.join(serving_model_dir, version))
