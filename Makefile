.DEFAULT_GOAL := all
sources = src tests examples bench

VENV ?= .venv
PY := $(VENV)/bin/python
# the Python that makes the venv; `make PYTHON=python3.12 install` picks another
PYTHON ?= python3
# true when the Python given as $(1) is new enough for this project
new_enough = $(1) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
# root installs system packages directly; anyone else goes through sudo
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: help
help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# A venv made by an older Python (say 3.10) is found here and rebuilt, before anything runs in it.
.PHONY: check-venv
check-venv:
	@if [ -e $(PY) ] && ! $(call new_enough,$(PY)); then \
	  echo "$(VENV) was made by $$($(PY) -V 2>&1 || echo 'a Python that is gone'); hasten needs Python >= 3.11: rebuilding it with $(PYTHON)"; \
	  rm -rf $(VENV); \
	fi
	@$(call new_enough,$(PYTHON)) || { \
	  echo "hasten needs Python >= 3.11, but $(PYTHON) is $$($(PYTHON) -V 2>&1): run make with PYTHON=python3.12 (or another >= 3.11)"; \
	  exit 1; }

$(VENV)/.installed: pyproject.toml
	@echo "Installing the Python dependencies into $(VENV) (the first time takes about a minute) ..."
	@$(PYTHON) -m venv $(VENV)
	@# pip's and setuptools' chatter goes to a log, shown only when the install fails
	@{ $(PY) -m pip install -q -U pip && $(PY) -m pip install -q -e '.[dev]'; } > $(VENV)/install.log 2>&1 \
	  || { cat $(VENV)/install.log; echo "the install failed (log: $(VENV)/install.log)"; exit 1; }
	@touch $@
	@echo "Installed: $(VENV)/bin/hasten (or ./hasten, or \`. $(VENV)/bin/activate\` to have \`hasten\` and \`arq\` on PATH)"

.PHONY: install-redis
install-redis:
	@command -v redis-server >/dev/null || { echo "Installing redis-server (Debian package) ..."; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }

.PHONY: install-test-tools
install-test-tools:  # what tests check deploy/ with: promtool (Debian's prometheus) and systemd-analyze (systemd); chromium for the dashboard's browser tests; PostgreSQL for the outbox's
	@command -v promtool >/dev/null && command -v systemd-analyze >/dev/null && command -v chromium >/dev/null \
	  && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  echo "Installing promtool, systemd-analyze, chromium and PostgreSQL (Debian packages prometheus, systemd, chromium, postgresql) ..."; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus systemd chromium \
	  postgresql >/dev/null; }

.PHONY: install
install: ## Install Python deps (.venv) and redis-server when missing
	@$(MAKE) -s --no-print-directory check-venv
	@$(MAKE) -s --no-print-directory $(VENV)/.installed install-redis

.PHONY: run
run: install ## Redis (embedded unless JOBS_REDIS_URL is set) + worker + example API; Ctrl-C stops all
	@$(PY) -m src.cli run

.PHONY: worker
worker: install ## Run one worker (against JOBS_REDIS_URL, or the embedded Redis of `make run`)
	@$(PY) -m src.cli worker

.PHONY: redis
redis: install ## Run the embedded Redis in the foreground
	@$(PY) -m src.cli redis

.PHONY: test
test: install ## Run the whole test suite (starts its own redis-server)
	@$(MAKE) -s --no-print-directory install-test-tools
	$(PY) -m pytest

.PHONY: testcov
testcov: install ## Tests with branch coverage, worker subprocesses included: table per module, total, branches alone
	@$(MAKE) -s --no-print-directory install-test-tools
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest
	$(PY) -m coverage combine -q
	$(PY) -m coverage report
	$(PY) -m tests.coverage_branches

.PHONY: bench
bench: install ## Benchmark against stock arq (about 20 min); writes bench/RESULTS.md
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
clean: ## Remove caches, coverage and the state dir (embedded Redis data); keeps .venv (see distclean)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov .state *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
	@echo "Kept $(VENV) (the installed dependencies); \`make distclean\` removes it too."

.PHONY: distclean
distclean: clean ## Everything clean removes, and the venv
	rm -rf $(VENV)
