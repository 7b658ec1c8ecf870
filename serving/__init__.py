"""A TF-Serving-compatible model server, its clients and TF Serving's deployment.

Model-agnostic: the server learns each model from its SavedModel (signatures,
warm-up records, declared missing-value markers) and imports none of the
taxi model's code. This module holds TF Serving's conventions that the
manifests, the clients and the server share; `tests/serving/test_manifests.py`
holds the Kubernetes manifests to them.
"""

# TF Serving's default ports: --port (gRPC) and --rest_api_port (REST).
GRPC_PORT = 8500
REST_PORT = 8501
# Where TF Serving's monitoring config exposes Prometheus metrics (on the REST port).
METRICS_PATH = '/monitoring/prometheus/metrics'
# The files a model carries that the server reads (warm-up records; declared missing-value markers,
# which the request log leaves out as a CSV or a tf.Example would).
from foundation.model_files import MISSING_VALUES_FILE, WARMUP_FILE  # noqa: E402,F401 - re-exported
# Signatures that explain a prediction rather than make one: calling them needs
# the `explain` role, not `predict` (serving/access.py). The server knows no
# model, so the convention lives here; the taxi model's `contract.EXPLAIN` is one.
EXPLAIN_SIGNATURES = ('explain',)
# Where `taxi-pipeline predict` and `explain` read the bearer token for a server
# started with --auth-tokens: the environment, never a flag, whose value would
# show in `ps` and the shell's history.
TOKEN_ENV = 'TAXI_SERVING_TOKEN'
# Where ground truth for served requests is POSTed (not a TF Serving API; see serving/feedback.py).
FEEDBACK_PATH = '/v1/feedback'
# What one request may decode to by default (serving/limits.py): examples, and bytes.
MAX_REQUEST_ROWS = 100_000
MAX_DECODED_REQUEST_BYTES = 64 * 1024 * 1024
# An answer whose request-log record was shed says so (serving/request_log.py, overflow "shed"):
# this REST header, and this gRPC trailing metadata key, with the value "false".
LOGGED_HEADER = 'X-Request-Logged'
LOGGED_METADATA = LOGGED_HEADER.lower()
# The version labels the deployment uses for canary and rollback.
STABLE_LABEL = 'stable'
CANARY_LABEL = 'canary'
