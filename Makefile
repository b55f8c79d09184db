# `make test` and `make demo` work on a fresh machine: each builds what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The Azure Functions Python worker (azure-functions-runtime) and azure-functions 2.x need Python 3.13.
WORKER_PYTHON ?= $(shell for p in $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 /usr/bin/python3.13 /usr/local/bin/python3.13; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && echo "$$p" && break; done)
WORKER_VENV := .venv-worker

.PHONY: test demo lint typecheck services pytest pytest-py313 infra-check clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e . --config-settings editable_mode=compat
	touch $@

$(WORKER_VENV)/.installed: requirements.txt requirements-worker.txt
	@if [ -z "$(WORKER_PYTHON)" ]; then echo "python3.13 not found: it is needed for the worker check"; exit 1; fi
	test -x $(WORKER_VENV)/bin/python || $(WORKER_PYTHON) -m venv $(WORKER_VENV)
	$(WORKER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(WORKER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-worker.txt
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# The real servers the tests talk to on loopback (Pebble, cfssl, Azurite); each test starts its own instances.
services:
	bash scripts/install-services.sh

pytest: $(VENV)/.installed services
	$(PY) -m pytest -m "not worker"

# The whole suite again on Python 3.13 (azure-functions 2.x), plus the checks through the real worker.
pytest-py313: services
	@if [ -z "$(WORKER_PYTHON)" ] && [ "$${CI:-}" != "true" ]; then \
		echo "SKIPPED the Python 3.13 run and the worker check: python3.13 not found (under CI=true this fails)"; \
	else \
		$(MAKE) --no-print-directory $(WORKER_VENV)/.installed && $(WORKER_VENV)/bin/python -m pytest -p no:cacheprovider; \
	fi

# checkov on infra/ (its own virtualenv: its dependencies must not move the app's pins).
infra-check:
	bash scripts/check-infra.sh

# Lint and the type check first (seconds); then checkov and the two pytest runs side by side: they wait on servers
# and subprocesses far more than they compute, so together they take little longer than the slowest alone.
# --output-sync prints each one's output in one piece when it ends.
test: lint typecheck
	$(MAKE) --no-print-directory -j3 --output-sync=target infra-check pytest pytest-py313

demo: $(VENV)/.installed services
	$(PY) -m devstack.demo --out .demo

clean:
	rm -rf $(VENV) $(WORKER_VENV) .venv-checkov .demo .mypy_cache .pytest_cache .ruff_cache
