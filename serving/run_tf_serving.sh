#!/usr/bin/env bash
# Serve the locally pushed model with TF Serving in Docker: what
# docker-compose.yaml runs, for machines without the compose plugin.
#   serving/run_tf_serving.sh [MODEL_DIR]   (default: workspace/serving_model/chicago-taxi)
set -euo pipefail

script="${BASH_SOURCE[0]}"
[[ "$script" == */* ]] || script="./$script"
here="$(cd "${script%/*}" && pwd)"
model_dir="${1:-$here/../workspace/serving_model/chicago-taxi}"

if ! command -v docker >/dev/null 2>&1; then
  echo "error: docker not found on PATH; install Docker, or serve the model without it (see serving/README.md)" >&2
  exit 1
fi
if [[ ! -d "$model_dir" ]]; then
  echo "error: no model directory at $model_dir; run 'make run' to train and push a model first" >&2
  exit 1
fi
model_dir="$(cd "$model_dir" && pwd)"
versions=("$model_dir"/[0-9]*/saved_model.pb)
if [[ ! -e "${versions[0]}" ]]; then
  echo "error: $model_dir has no version directories (<version>/saved_model.pb); run 'make run' first" >&2
  exit 1
fi

exec docker run --rm --name chicago-taxi-serving \
  -p 8500:8500 -p 8501:8501 \
  -v "$model_dir:/models/chicago-taxi:ro" \
  -v "$here/config:/config:ro" \
  --entrypoint tensorflow_model_server \
  tensorflow/serving:2.16.1 \
  --port=8500 \
  --rest_api_port=8501 \
  --model_name=chicago-taxi \
  --model_base_path=/models/chicago-taxi \
  --enable_batching=true \
  --batching_parameters_file=/config/batching.config \
  --monitoring_config_file=/config/monitoring.config \
  --enable_model_warmup=true
