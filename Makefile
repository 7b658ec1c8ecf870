# Two commands do all set-up on a fresh clone: `make run` and `make test`.
# Both create (once) and reuse the virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSPACE ?= workspace
RUN_ARGS ?=

.PHONY: run test benchmark schema-draft clean venv

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

benchmark: $(STAMP)
	$(BIN)/python benchmarks/pipeline_benchmark.py

schema-draft: $(STAMP)
	$(BIN)/taxi-pipeline schema-draft --data-root $(WORKSPACE)/data

clean:
	rm -rf $(WORKSPACE)
