"""Serving the pushed model: TF Serving's contract, shared by every part.

The Kubernetes manifests, the compose file, the Python clients and the
embedded server all take their model name, ports and paths from here, and
`tests/test_serving_manifests.py` holds the manifests to these values.
"""

from pipeline.config import PIPELINE_NAME

# The name clients address (/v1/models/<name>): the pipeline's name, which is
# also the last component of the Pusher's destination directory.
MODEL_NAME = PIPELINE_NAME
# TF Serving's default ports: --port (gRPC) and --rest_api_port (REST).
GRPC_PORT = 8500
REST_PORT = 8501
# Where TF Serving's monitoring config exposes Prometheus metrics (on the REST port).
METRICS_PATH = '/monitoring/prometheus/metrics'
# TF Serving replays these PredictionLog records before a version takes traffic.
WARMUP_FILE = 'assets.extra/tf_serving_warmup_requests'
# The version labels the deployment uses for canary and rollback.
STABLE_LABEL = 'stable'
CANARY_LABEL = 'canary'
# TF Serving's SignatureDef method names; Classify and Regress accept only their own.
PREDICT_METHOD = 'tensorflow/serving/predict'
CLASSIFY_METHOD = 'tensorflow/serving/classify'
REGRESS_METHOD = 'tensorflow/serving/regress'
