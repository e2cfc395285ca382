# Two commands on a fresh machine:  make demo  (the main job)  and  make test  (the suite).
# Both create the virtual environment on first use and reuse it afterwards; the
# environment is rebuilt whenever requirements/*.txt change.
#
#   make demo PYTHON=/path/to/python3.10   # choose the interpreter
#   make test VENV=/somewhere/else         # keep the environment elsewhere (CI does)

SHELL := /bin/bash
VENV ?= .venv
REQS := requirements/base.txt requirements/lock.txt pyproject.toml
# The stamp also names this checkout: a venv shared by several clones (CI's) re-points its
# editable install to the clone that runs make, or `tfjoint` would run another clone's code.
REQS_HASH := $(shell (cat $(REQS); echo "$(CURDIR)") | sha256sum | cut -c1-16)
STAMP := $(VENV)/.tfjoint-installed-$(REQS_HASH)
RUNS ?= runs
# The 25 slowest tests are listed at the end of every run (and so of every CI log).
PYTEST_ARGS ?= --durations=25

# Python 3.10, found robustly: PYTHON=..., then pyenv's 3.10 builds, then python3.10 on PATH.
PYTHON ?= $(shell \
  for p in $$(ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.10.*/bin/python3.10 2>/dev/null | sort -V -r) \
           $$(command -v python3.10 2>/dev/null); do \
    if "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then echo "$$p"; break; fi; \
  done)

.PHONY: demo joint test venv clean

venv: $(STAMP)

$(STAMP): $(REQS)
	@if [ -z "$(PYTHON)" ]; then echo "error: no Python 3.10 found; run: make $(MAKECMDGOALS) PYTHON=/path/to/python3.10" >&2; exit 1; fi
	@if [ -x "$(VENV)/bin/python" ] && ! "$(VENV)/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then rm -rf "$(VENV)"; fi
	@if [ ! -x "$(VENV)/bin/python" ]; then echo "creating $(VENV) with $(PYTHON)"; "$(PYTHON)" -m venv "$(VENV)"; fi
	rm -f $(VENV)/.tfjoint-installed-*
	$(VENV)/bin/python -m pip install --quiet --upgrade pip==24.2
	$(VENV)/bin/python -m pip install --quiet -r requirements/base.txt -c requirements/lock.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(VENV)/bin/python -m pip check
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tfjoint pipeline run --dataset movielens-100k --model mmoe \
	  --pipeline-root $(RUNS)/demo/pipeline --serving-dir $(RUNS)/demo/serving --model-name movielens \
	  --json $(RUNS)/demo/result.json --query-server

# The full joint model through the same pipeline: MB-STR as E^B, gating fusion over title, genres and
# MiniLM title vectors as E^M, STAR, PLE and uncertainty weighting; served and queried over gRPC.
joint: $(STAMP)
	$(VENV)/bin/tfjoint pipeline run --dataset movielens-100k --model ple --sequence-encoder mbstr_encoder \
	  --modality-encoder gating_fusion --item-text-encoder minilm --scenario-adapter star --balancer uncertainty \
	  --pipeline-root $(RUNS)/joint/pipeline --serving-dir $(RUNS)/joint/serving --model-name movielens_joint \
	  --json $(RUNS)/joint/result.json --query-server

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(RUNS) build
