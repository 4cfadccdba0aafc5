# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
MIMIC_DEMO ?= ../shared/data/mimic-iv-demo-2.2
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo demo-mimic test test-all bench bench-replicates bench-fewshot lint ui clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing ehr-hcl and its stack into $(VENV) (torch 2.13.0 CPU; about 2 minutes the first time)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project (only when missing or pyproject.toml changed)

demo: install  ## the whole synthetic pipeline through DVC, then the summary table
	@test -d .dvc || dvc init --quiet
	dvc repro
	@$(BIN)/ehr-hcl summary

demo-mimic: install  ## the same pipeline on the real MIMIC-IV demo, in workspaces/mimic-iv-demo
	@test -d "$(MIMIC_DEMO)" || { echo "MIMIC-IV demo not found at $(MIMIC_DEMO); set MIMIC_DEMO=..." >&2; exit 2; }
	$(BIN)/ehr-hcl run --source mimic-iv --input "$(MIMIC_DEMO)" --workspace workspaces/mimic-iv-demo

test: install  ## the default (fast) test suite
	$(BIN)/pytest -q

test-all: install  ## every test, including slow statistical and scale tests
	$(BIN)/pytest -q -m ""

bench: install  ## benchmarks that print figures and ratios (small sizes; see each script's --help)
	$(BIN)/python benchmarks/recovery.py --quick
	$(BIN)/python benchmarks/linear_speed.py --ns 5000 20000 --skip memory
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/deep_recovery.py
	$(BIN)/python benchmarks/etl.py --patients 500 2000 5000
	$(BIN)/python benchmarks/features.py --notes-only

bench-replicates: install  ## the synthetic demo on generator seeds 0-4: representations vs baselines beyond one draw (~20 min)
	$(BIN)/python benchmarks/demo_replicates.py

bench-fewshot: install  ## the full k-shot protocol on generator seeds 0-4, with the issue-14 target checks (~50 min)
	$(BIN)/python benchmarks/fewshot_replicates.py

lint: install
	$(BIN)/ruff check .

ui: install  ## the MLflow UI on this project's store, bound to 127.0.0.1
	$(BIN)/ehr-hcl ui

clean:  ## remove pipeline outputs (not the venv)
	rm -rf data models metrics plots reports workspaces mlflow.db mlartifacts dvc.lock .dvc/tmp
