"""The files a pushed model carries beside its SavedModel, named once for their writers and readers.

The Trainer and the model's export write them; the model server, the monitor and the drift check
read them. A reader that cannot import the model's code (the server learns each model from its
files) still finds them by these names.
"""

# TF Serving replays the PredictionLog records in this file before a version takes traffic.
WARMUP_FILE = 'assets.extra/tf_serving_warmup_requests'
# Per signature and input, how a request marks a missing value ("nan", "negative" or "empty"); the
# request log then leaves such values out, as a CSV or a tf.Example would. TF Serving ignores it.
MISSING_VALUES_FILE = 'assets.extra/missing_values.json'
# How the `explain` signature computes attributions: the method, the baseline, the outlier threshold.
EXPLANATION_FILE = 'assets.extra/explanation.json'
# What a version knows of its training data, for skew and drift: TFDV statistics of the training
# split and the curated schema it was trained under.
TRAINING_STATISTICS_FILE = 'assets.extra/training_statistics.pb'
SCHEMA_FILE = 'assets.extra/schema.pbtxt'
# What training did (early stopping: steps_taken, steps_kept), written by a run_fn in the model run
# directory and recorded on the Model artifact.
TRAINING_RECORD = 'training.json'
# What the version's tip probability means on held-out data (foundation/calibration.py): an isotonic
# calibration fitted on the eval split, the eval label rate and size, reliability, the reference values of
# estimated and realised accuracy and AUC, and the mean |attribution| per feature on an eval sample. The
# monitor estimates performance from it before labels arrive, and judges label and attribution drift by it.
CALIBRATION_FILE = 'assets.extra/calibration.json'
