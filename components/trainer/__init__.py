"""Trainer whose step counts are plain integer exec properties, and whose model
carries the statistics and schema of the data it was trained on, and the
version of the code that trained it (components.code_version).

TFX's Trainer takes its steps inside the TrainArgs/EvalArgs protos, and
KubeflowV2DagRunner cannot put a runtime parameter inside a proto (protobuf
rejects it at build time). With `train_steps` and `eval_steps` as integer
exec properties, a Kubeflow Pipelines run sets them like any other pipeline
parameter; the executor writes them into the protos TFX's GenericExecutor
reads, so `run_fn` sees the usual `FnArgs.train_steps`/`eval_steps`.

Training covers the data by default: with `train_steps` 0 the executor takes
ceil(`train_epochs` x training rows / batch size) steps, the rows from the
training split's statistics and the batch size from
`custom_config['hyperparameters']['batch_size']`. The model artifact records
what was done (`train_steps`, `train_epochs`, `train_rows`, `train_batch_size`),
whichever way the steps were set.

With `statistics` (StatisticsGen's output) wired in, the exported SavedModel
gets, under `assets.extra/`, the training split's statistics and the schema
the data was validated against. Every pushed version then says what it learned
from, so drift and skew checks need no Resolver or metadata store to find it.

- `training_record`: the steps to take and what the model records about its training, importing no TFX;
- `executor`: TFX's GenericExecutor around `run_fn`, with the above;
- `component`: the TFX component `Trainer` and its spec.

This file imports nothing, so that the plain module stays free of TFX.
"""
