"""Batch scoring: TFX's BulkInferrer contract (examples, model, model_blessing in; an InferenceResult
of PredictionLogs out), with the model's outlier flags and, when asked, attributions.

- `scoring`: rows to predictions with flags (and attributions), PredictionLogs, warehouse files
  (CSV, Parquet) and request-log files the monitor reads; no TFX;
- `executor`: scores the span's examples with the blessed candidate;
- `component`: the TFX component `BulkInferrer` and its spec.
"""
