"""TFX's Tuner with KerasTuner (`taxi_model.tuning.tuner_fn`), tuning only when asked.

A Kubeflow DAG is static, so the Tuner task is always in it; its `tune`
parameter (a run parameter, `taxi-pipeline run --tune`, a schedule's
`--tune-cron`) says whether it searches. When it does, every trial's values
and validation AUC are recorded on its outputs and the best values go to the
Trainer; the tuning is also recorded under a known directory, the records
directory. When it does not, it hands the Trainer the newest tuning recorded
there that ML Metadata knows (where the runner's store is reachable), else the
configured defaults, and says which: no Resolver, as the baseline model is found
(components/baseline_model.py).

- `tuning_records`: the records directory, the trials as plain values, importing no TFX;
- `executor`: TFX's Tuner executor, with the above;
- `component`: the TFX component `Tuner` and its spec.
"""
