"""SavedModels loaded once per process, and a model directory's file listing.

A local run executes every component in one process, and three of them load the candidate the Trainer
wrote: the Evaluator, the BulkInferrer and the run's report. Each `tf.saved_model.load` rebuilds every
function of the model in Python, and each first call of a signature instantiates it
(docs/performance.md#one-load-of-the-candidate-per-run); the second and third readers get the first one's
object instead. A model is known by its directory's files (path, size, modification time), so a directory
written again is loaded again. Only the last few models are kept: a run's candidate and its baseline.
A model in a bucket is loaded each time: on Kubeflow every component runs in a container of its own.
"""

import collections
import os
import threading
from typing import List, Tuple

import tensorflow as tf

# The candidate and the baseline the Evaluator compares it with.
KEPT = 2

_loaded: 'collections.OrderedDict[str, Tuple[List[Tuple[str, int, int]], object]]' = collections.OrderedDict()
_lock = threading.Lock()


def files(root: str) -> List[Tuple[str, int, int]]:
    """(path under `root`, size, modification time in ns) of every file under `root`, sorted."""
    found = []
    for directory, _, names in tf.io.gfile.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            found.append((os.path.relpath(path, root), *_size_and_time(path)))
    return sorted(found)


def _size_and_time(path: str) -> Tuple[int, int]:
    if '://' in path:  # a bucket: tf.io.gfile's stat
        stat = tf.io.gfile.stat(path)
        return stat.length, stat.mtime_nsec
    stat = os.stat(path)  # gfile's local stat has whole seconds only
    return stat.st_size, stat.st_mtime_ns


def load(path: str):
    """`tf.saved_model.load(path)`, or the object an earlier call in this process loaded from the same local
    files."""
    if '://' in path:  # a bucket: a container runs one component, and listing it costs a request per file
        return tf.saved_model.load(path)
    key = os.path.abspath(path)
    listing = files(path)
    if not listing:  # not a SavedModel directory: tf.saved_model.load says so
        return tf.saved_model.load(path)
    with _lock:
        kept = _loaded.get(key)
        if kept is not None and kept[0] == listing:
            _loaded.move_to_end(key)
            return kept[1]
    model = tf.saved_model.load(path)
    with _lock:
        _loaded[key] = (listing, model)
        _loaded.move_to_end(key)
        while len(_loaded) > KEPT:
            _loaded.popitem(last=False)
    return model
