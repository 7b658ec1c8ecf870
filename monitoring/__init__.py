"""Watching served models: request logs against what each version was trained on.

Model-agnostic, like the server: a version's training statistics and schema
come from its own `assets.extra/` (put there by the pipeline's Trainer), the
traffic from the server's request logs; the names of the prediction and
outlier outputs are parameters.
"""
