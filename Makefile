# Two commands do all set-up on a fresh clone: `make run` and `make test`.
# Both create (once) and reuse the virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSPACE ?= workspace
RUN_ARGS ?=
SERVE_ARGS ?=

# Kubeflow build settings; override on the command line or in the environment.
PIPELINE_IMAGE ?= gcr.io/my-project/chicago-taxi-pipeline:latest
PIPELINE_BUCKET ?= gs://my-bucket/chicago-taxi
PIPELINE_ROOT ?= $(PIPELINE_BUCKET)/pipeline_root
DATA_ROOT ?= $(PIPELINE_BUCKET)/data
SERVING_MODEL_DIR ?= $(PIPELINE_BUCKET)/serving_model/chicago-taxi

CI_WORKSPACE ?= build/ci-run

.PHONY: run test test-unit test-component test-e2e benchmark serve demo schema-draft compile e2e-small ci-local clean venv

venv: $(STAMP)

# tfx 1.16 declares Requires-Python <3.11; its cp311 wheels work, hence the flag.
$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip==24.2'
	$(BIN)/pip install --ignore-requires-python -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/taxi-pipeline run --workspace $(WORKSPACE) $(RUN_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The tiers of `make test` one at a time (pytest.ini, "markers"; docs/testing.md): unit is the fast lane.
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m unit tests

test-component: $(STAMP)
	$(BIN)/python -m pytest -q -m component tests

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m e2e tests

benchmark: $(STAMP)
	$(BIN)/python benchmarks/pipeline_benchmark.py

# Serve what `make run` pushed, with TF Serving's REST (8501) and gRPC (8500) APIs.
serve: $(STAMP)
	$(BIN)/taxi-pipeline serve --model-base-path $(WORKSPACE)/serving_model/chicago-taxi $(SERVE_ARGS)

# The continuous-training loop in a few minutes, on a fresh workspace of its own:
# train, serve, clean then drifted traffic with feedback, monitor, retrain when it wins.
demo: $(STAMP)
	rm -rf $(WORKSPACE)/demo
	$(BIN)/taxi-pipeline demo --workspace $(WORKSPACE)/demo

schema-draft: $(STAMP)
	$(BIN)/taxi-pipeline schema-draft --data-root $(WORKSPACE)/data

compile: $(STAMP)
	$(BIN)/taxi-pipeline compile --image $(PIPELINE_IMAGE) --pipeline-root $(PIPELINE_ROOT) \
		--data-root $(DATA_ROOT) --serving-model-dir $(SERVING_MODEL_DIR) --output-dir kfp

# A small end-to-end LocalDagRunner run (3,000 rows, 200 steps), as Cloud Build does.
e2e-small: $(STAMP)
	rm -rf $(CI_WORKSPACE)
	$(BIN)/taxi-pipeline prepare-data --data-root $(CI_WORKSPACE)/data --rows 3000
	$(BIN)/taxi-pipeline run --workspace $(CI_WORKSPACE) --data-root $(CI_WORKSPACE)/data --train-steps 200

# The Cloud Build steps that need no cloud: tests, small e2e run, compile + validate.
ci-local: test e2e-small compile

clean:
	rm -rf $(WORKSPACE)
