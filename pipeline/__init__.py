"""Building and running the TFX DAG: config, DAG, local runner, Kubeflow compile and submit, run reports."""
