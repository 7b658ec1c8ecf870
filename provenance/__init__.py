"""What made a model and how runs differ: lineage, run history, comparisons and model cards, read from ML Metadata."""
