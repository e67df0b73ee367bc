# ptnl: every target documents itself with a `## ` comment; `make` (= `make help`) lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ENV_STAMP := $(VENV)/.ptnl-env-stamp
# Test runs stay quiet and headless; notebooks resolve every path from the repo root.
TEST_ENV := TQDM_DISABLE=1 MPLBACKEND=Agg PYTHONHASHSEED=0
PYTEST_ARGS ?=

.PHONY: help env test test-fast lint clean distclean

help: ## list the targets (default)
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_%-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

env: $(ENV_STAMP) ## build .venv with the pinned dependencies (once; again only when pyproject.toml changes)

$(ENV_STAMP): pyproject.toml
	@command -v $(PYTHON_BOOT) >/dev/null || { echo "error: $(PYTHON_BOOT) not found; install Python 3.11 or run 'make PYTHON_BOOT=python3.12 env'" >&2; exit 1; }
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ptnl)" >/dev/null
	touch $@

test: $(ENV_STAMP) ## run the whole test suite, slow tests and notebooks included
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(ENV_STAMP) ## run the fast tests only (skips those marked slow)
	$(TEST_ENV) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(ENV_STAMP) ## check style with ruff
	$(PY) -m ruff check ptnl tests
	$(PY) -m ruff format --check ptnl tests

clean: ## remove build outputs (build/, caches of tools); never results/ or cache/
	rm -rf build .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean ## also remove the environment, results/ and cache/ (everything not in git)
	rm -rf $(VENV) results cache *.egg-info
