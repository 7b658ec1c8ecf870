"""Drift of a new span against the data the serving model was trained on.

TFDV compares the new span's training-split statistics with those the
latest pushed version carries (`assets.extra/training_statistics.pb`, put
there by our Trainer), using the curated schema's drift comparators:
L-infinity distance for categorical features, Jensen-Shannon divergence for
numeric ones (TFDV's L-infinity reports nothing on numeric features), and an
example-count comparator. The numeric divergence is our own (`drift`). The
baseline comes from the push destination, as the Evaluator's does, so no
Resolver is needed and every runner can run it.

The result is recorded in ML Metadata on the output artifact (an
ExampleAnomalies with the drift findings, per split): the verdict, the policy,
the version compared against and every measured distance with its threshold.
The policy decides what drift does: `warn` lets the run go on (our Trainer
copies the verdict onto the candidate model, so a release process can demand
an approval); `block` makes the AnomaliesGate stop the run before Transform.

- `drift`: the measurement and its records, importing no TFX (the monitor uses it);
- `executor`: what the check does with its artifacts;
- `component`: the TFX component `DriftCheck`.

This file imports nothing, so that `from components.drift_check import drift` stays free of TFX.
"""
