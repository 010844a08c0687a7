# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: install run test lint schema services clean

## install: virtualenv + pinned dependencies (quick when nothing changed)
install: $(STAMP)

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 venv missing: trying apt-get install python3-venv"; \
	  apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

## run: migrate, bootstrap an admin login, start every process (Procfile; each restarted when it exits)
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap
	$(VENV)/bin/honcho start -f Procfile

## test: the whole suite (SQLite by default; PostgreSQL when DATABASE_URL says so)
test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(PY) manage.py makemigrations --check --dry-run

## services: install and start PostgreSQL, RabbitMQ, Redis locally (root, no systemd)
services:
	bash scripts/services.sh

clean:
	rm -rf $(VENV) var
