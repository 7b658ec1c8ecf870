"""What every other package stands on, and nothing else: it imports no project package.

- `metadata_store`: the one place that opens ML Metadata and reads its properties the way both
  TFX's local runner and Kubeflow Pipelines store them.
- `workspace`: a local workspace's layout as one typed object.
- `model_files`: the names of the files a pushed model carries beside its SavedModel.
- `alerts`: typed alert records, their kinds defined once.
- `atomic_file`: the one atomic write.
- `file_lock`: an exclusive lock on a file that names its holder.
- `durations`: durations as people type them (30s, 10m, 1h, 1d).
- `calibration`: the calibration a model carries (what its probability means on held-out data),
  written at training time and read by the monitor without the model's code.

Importing this package imports none of its modules, so the model server can take a file name
from `model_files` without loading ML Metadata.
"""
