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
# The environment: every package at one version and hash, for Linux, macOS and Windows, Python
# 3.11-3.12 (markers say which lines apply where). `make lock` writes it from pyproject.toml with
# this one command; it keeps the versions already in the lock unless pyproject.toml needs others
# or LOCK_ARGS asks, e.g. `make lock LOCK_ARGS="--upgrade-package numpy"` or LOCK_ARGS=--upgrade.
LOCK := requirements-lock.txt
LOCK_ARGS ?=
LOCK_CMD := $(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --generate-hashes \
	--python-version 3.11 --custom-compile-command "make lock" -o $(LOCK)
PIP_VERSION := 26.3
# the names of a requirements list (freeze or lock), normalised, one a line
REQ_NAMES := grep -E '^[A-Za-z0-9]' | sed -E 's/[ =;@].*//; s/[-_.]+/-/g' | tr A-Z a-z | sort -u
# Test runs stay quiet and headless; notebooks resolve every path from the repo root.
TEST_ENV := TQDM_DISABLE=1 MPLBACKEND=Agg PYTHONHASHSEED=0
PYTEST_ARGS ?=
# Notebooks: SET picks params/<SET>.yaml (or is a set file's path, SET=/path/mine.yaml); PARAMS adds
# overrides, e.g. PARAMS="-p backbone toy-vit" or PARAMS="-f more.yaml" (a set file or name: value).
SET ?= toy
SET_NAME = $(basename $(notdir $(SET)))
PARAMS ?=
COMPARE_ARGS ?=
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NB_NUMS := $(foreach nb,$(NOTEBOOKS),$(firstword $(subst _, ,$(notdir $(nb)))))
NBVAL_ARGS := --nbval --nbval-sanitize-with notebooks/sanitize.cfg --nbval-current-env
# The numeric path every process computes on (ptnl/core/numerics.py, applied when ptnl is imported):
# "pinned" (one thread and the libraries' AVX2 kernels, one kernel path on every x86-64 CPU with AVX2)
# or "native" (each library's own kernels and threads: other bits, on some CPUs faster).
NUMERIC_PATH ?= pinned
NB_ENV := PTNL_NUMERIC_PATH=$(NUMERIC_PATH)
# The main job trains the toy set into its own empty store and draws into its own folder, then
# compares both with the shipped ones (results/toy/, figures/); other sets use results/ and figures/.
MAIN := build/toy
MAIN_ENV := $(if $(filter toy,$(SET)),PTNL_RESULTS=$(CURDIR)/$(MAIN)/results PTNL_FIGURES=$(CURDIR)/$(MAIN)/figures)
# Executing against the shipped results: every run must be found there (nothing trains).
SHIPPED_ENV := PTNL_NO_TRAIN=1 TQDM_DISABLE=1 PYTHONHASHSEED=0

.PHONY: help env lock test test-fast lint clean distclean notebooks figures bench gpu-check paper plan refs ship docs $(NB_NUMS)

help: ## list the targets (default)
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_%-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "  \033[36m%-14s\033[0m %s\n" "NN" "execute one notebook, make $(firstword $(NB_NUMS)) .. make $(lastword $(NB_NUMS)) (one per notebooks/NN_*.ipynb), e.g. make 02 (also SET=smoke, PARAMS=\"-p backbone toy-rn\")"

env: $(ENV_STAMP) ## build .venv as exactly requirements-lock.txt, then ptnl (again when the lock or pyproject.toml changes)

# Exactly the lock: every file checked against its hash, packages the lock lacks removed, ptnl
# itself installed without dependencies (and built with the lock's setuptools, not a fresh one).
$(ENV_STAMP): $(LOCK) pyproject.toml
	@command -v $(PYTHON_BOOT) >/dev/null || { echo "error: $(PYTHON_BOOT) not found; install Python 3.11 or run 'make PYTHON_BOOT=python3.12 env'" >&2; exit 1; }
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet "pip==$(PIP_VERSION)"
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	extra=$$(comm -23 <($(PY) -m pip freeze --exclude-editable | $(REQ_NAMES)) <(cat $(LOCK) | $(REQ_NAMES)) | grep -vx ptnl || true); \
	if [ -n "$$extra" ]; then echo "removing packages not in $(LOCK):" $$extra; $(PY) -m pip uninstall --quiet -y $$extra; fi
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ptnl)" >/dev/null
	touch $@

lock: $(ENV_STAMP) ## rewrite requirements-lock.txt from pyproject.toml (uv pip compile; LOCK_ARGS=--upgrade to move versions)
	$(LOCK_CMD) $(LOCK_ARGS) >/dev/null

test: $(ENV_STAMP) ## the whole test suite: unit tests (slow ones too), then nbval of the notebooks on the shipped results
	$(TEST_ENV) $(NB_ENV) $(PY) -m pytest tests $(PYTEST_ARGS)
	$(TEST_ENV) $(SHIPPED_ENV) $(NB_ENV) PTNL_FIGURES=$$(mktemp -d) $(PY) -m pytest $(NOTEBOOKS) $(NBVAL_ARGS) $(PYTEST_ARGS)

test-fast: $(ENV_STAMP) ## run the fast tests only (skips those marked slow)
	$(TEST_ENV) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

notebooks: $(ENV_STAMP) ## the main job: train the toy set from an empty store, run every notebook, compare with the shipped results
	@SECONDS=0; \
	$(MAIN_ENV) $(NB_ENV) $(PY) -m ptnl notebooks run $(NOTEBOOKS) --set $(SET) --output-dir build/$(SET_NAME) $(PARAMS); \
	status=0; $(if $(filter toy,$(SET)),$(PY) -m ptnl shipped compare --store $(MAIN)/results --figures $(MAIN)/figures --notebooks build/$(SET_NAME) $(COMPARE_ARGS) || status=$$?;) \
	echo "main job (SET=$(SET)): $$((SECONDS / 60)) min $$((SECONDS % 60)) s"; exit $$status

# One target per notebook, NB_NUMS from notebooks/NN_*.ipynb (`make help` prints the range, line NN).
$(NB_NUMS): %: $(ENV_STAMP) ## execute one notebook into build/SET/, e.g. make 02 SET=smoke, make 09 SET=lab
	$(NB_ENV) $(PY) -m ptnl notebooks run $(wildcard notebooks/$@_*.ipynb) --set $(SET) --output-dir build/$(SET_NAME) $(PARAMS)

refs: $(ENV_STAMP) ## re-execute the committed notebooks in place on the shipped results (nothing trains), figures/ redrawn
	$(SHIPPED_ENV) $(NB_ENV) $(PY) -m ptnl notebooks refs $(NOTEBOOKS)

figures: refs ## redraw every figure in figures/ (PNG + PDF) from the shipped results

docs: $(ENV_STAMP) ## write docs/results.md and the README's claims table from the committed notebooks
	$(PY) -m ptnl docs

ship: $(ENV_STAMP) ## after a change that moves numbers: the main job, then results/toy/, the notebooks, figures/ and docs from it
	$(MAKE) notebooks COMPARE_ARGS=--report-only
	$(PY) -m ptnl shipped update --store $(MAIN)/results
	$(MAKE) refs docs

bench: $(ENV_STAMP) ## speed and memory benchmark (ptnl/tools/speed.py): engine modes and the pinned numeric path's cost, as ratios to a reference measured in the same run (build/bench.json)
	$(PY) -m ptnl bench

gpu-check: $(ENV_STAMP) ## GPU readiness, random RN50/ViT-B/32 weights, <= 5 min on one H200 (build/gpucheck.json)
	$(PY) -m ptnl gpu-check

paper: $(ENV_STAMP) ## the real grid (RN50/ViT-B/32, eight datasets under PTNL_DATA) on a GPU: prints the plan first
	$(PY) -m ptnl plan --set paper $(PARAMS)
	$(PY) -m ptnl notebooks run $(NOTEBOOKS) --set paper --output-dir build/paper $(PARAMS)

plan: $(ENV_STAMP) ## print what SET would run, how many runs are done, and what is missing on disk
	$(PY) -m ptnl plan --set $(SET) $(PARAMS)

lint: $(ENV_STAMP) ## check style with ruff
	$(PY) -m ruff check ptnl tests
	$(PY) -m ruff format --check ptnl tests

clean: ## remove build outputs (build/, caches of tools); never results/ or cache/
	rm -rf build .pytest_cache .ruff_cache
	find . \( -path './$(VENV)' -o -path './.git' \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# What git tracks stays, results/toy/ (the shipped store) above all: in a checkout, git itself says
# what is untracked under these paths (ignored files too) and removes only that. Outside one (an
# unpacked archive) nothing says which results are shipped, so results/ is left whole.
DISTCLEAN_PATHS := $(VENV) cache results
distclean: clean ## also remove the environment, cache/, egg-info and whatever git does not track under results/
	@if command -v git >/dev/null && git ls-files --error-unmatch Makefile >/dev/null 2>&1; then \
		git clean -fdx -- $(DISTCLEAN_PATHS); \
	else \
		echo "distclean: not a git checkout, so results/ is left as it is; removing $(VENV), cache/ and *.egg-info only"; \
		rm -rf $(VENV) cache; \
	fi
	rm -rf *.egg-info
