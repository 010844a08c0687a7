# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Runtime packages (requirements.txt) and test tools (requirements-dev.txt) have their own stamps:
# `make run` never installs the test tools, `make test` adds them; each is quick when nothing changed.
RUN_STAMP := $(VENV)/.installed-run-$(shell cat requirements.txt 2>/dev/null | sha1sum | cut -c1-12)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat requirements.txt requirements-dev.txt 2>/dev/null | sha1sum | cut -c1-12)
# Web port (uvicorn); honcho gives every process its own PORT, so the web port travels as WEB_PORT.
WEB_PORT := $(or $(PORT),8000)

.PHONY: install install-dev run test lint schema services clean

## install: virtualenv + pinned runtime dependencies + static files (quick when nothing changed)
install: $(RUN_STAMP)
	$(PY) manage.py collectstatic --noinput -v0

## install-dev: install + test tools (pytest, selenium, ruff, ...)
install-dev: $(DEV_STAMP)

$(RUN_STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 venv missing: trying apt-get install python3-venv"; \
	  apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@rm -f $(VENV)/.installed-run-* && touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	@rm -f $(VENV)/.installed-dev-* && touch $@

## run: migrate, bootstrap an admin login, start every process (Procfile; Procfile.paper adds the simulator;
##      each process is restarted when it exits)
run: install
	$(PY) manage.py migrate --noinput
	WEB_PORT=$(WEB_PORT) $(PY) manage.py bootstrap
	$(PY) manage.py metrics_reset
	procfile=$$(WEB_PORT=$(WEB_PORT) $(PY) manage.py procfile) && \
	  WEB_PORT=$(WEB_PORT) $(VENV)/bin/honcho start -f $$procfile -p $(WEB_PORT)

## test: the whole suite (SQLite by default; PostgreSQL when DATABASE_URL says so) on two processes (pytest-xdist;
##       the heavy tests one at a time on one of them, docs/decisions/0007). TEST_WORKERS=0: one process.
##       PYTEST_ARGS go last, e.g. "--durations=15".
TEST_WORKERS ?= 2
test: install-dev
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(PY) manage.py makemigrations --check --dry-run

## services: install and start PostgreSQL, RabbitMQ, Redis locally (root, no systemd)
services:
	bash scripts/services.sh

clean:
	rm -rf $(VENV) var
