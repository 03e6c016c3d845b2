.DEFAULT_GOAL := all
sources = src tests examples bench

VENV ?= .venv
PY := $(VENV)/bin/python
# root installs system packages directly; anyone else goes through sudo
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: help
help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

.PHONY: install-redis
install-redis:
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }

.PHONY: install
install: $(VENV)/.installed install-redis ## Install Python deps (.venv) and redis-server when missing

.PHONY: run
run: install ## Redis (embedded unless JOBS_REDIS_URL is set) + worker + example API; Ctrl-C stops all
	$(PY) -m src.cli run

.PHONY: worker
worker: install ## Run one worker against JOBS_REDIS_URL
	$(PY) -m src.cli worker

.PHONY: redis
redis: install ## Run the embedded Redis in the foreground
	$(PY) -m src.cli redis

.PHONY: test
test: install ## Run the whole test suite (starts its own redis-server)
	$(PY) -m pytest

.PHONY: testcov
testcov: install ## Tests with branch coverage, worker subprocesses included: table per module, total, branches alone
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest
	$(PY) -m coverage combine -q
	$(PY) -m coverage report
	$(PY) -m tests.coverage_branches

.PHONY: bench
bench: install ## Benchmark against stock arq (about 10 min); writes bench/RESULTS.md
	$(PY) -m bench.run

.PHONY: lint
lint: install ## ruff check and format check
	$(VENV)/bin/ruff check $(sources)
	$(VENV)/bin/ruff format --check $(sources)

.PHONY: mypy
mypy: install ## mypy --strict
	$(VENV)/bin/mypy

.PHONY: format
format: install ## Format and autofix
	$(VENV)/bin/ruff check --fix $(sources)
	$(VENV)/bin/ruff format $(sources)

.PHONY: all
all: lint mypy test ## lint, mypy, test

.PHONY: clean
clean: ## Remove caches, coverage and the local state dir (embedded Redis data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov .state *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
