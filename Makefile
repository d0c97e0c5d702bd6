# L0 order service - the two commands that matter on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
# The newest Python >= 3.11 on the machine (pyproject requires 3.11+).
PYTHON    ?= $(shell for p in python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
HTTP_PORT ?= 8080
ORDERS    ?= 3600
PYTEST_ARGS ?=

.PHONY: bench bench-http bench-ingest bench-search browser chaos config-example help venv infra-up infra-down infra-status migrate topics lint fmt test test-unit run stop logs gen clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install the project with pinned versions (constraints.txt)
$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required (python3.11 or newer on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

infra-up: ## start Kafka (KRaft, from the official jars) and PostgreSQL; a no-op when they run
	@scripts/kafka.sh up
	@scripts/postgres.sh up

infra-down: ## stop Kafka and PostgreSQL (data is kept)
	@scripts/kafka.sh down
	@scripts/postgres.sh down

infra-status: ## show whether Kafka and PostgreSQL run
	@scripts/kafka.sh status; scripts/postgres.sh status

migrate: venv infra-up ## apply pending database migrations
	$(PY) cmd/service.py migrate

topics: venv infra-up ## create the orders and dead-letter topics
	$(PY) cmd/service.py create-topics

lint: venv ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: venv ## format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test-unit: venv ## unit tests only (no Kafka or PostgreSQL needed)
	$(VENV)/bin/pytest tests/unit -q $(PYTEST_ARGS)

browser: ## headless Chromium for the browser UI tests, promtool for the alert-rule tests (Debian packages)
	@scripts/install-browser.sh
	@scripts/install-promtool.sh

test: venv infra-up lint browser ## install, start the stack, lint, run the whole suite (chaos aside)
	$(VENV)/bin/pytest -q -m "not chaos" $(PYTEST_ARGS)

chaos: venv infra-up ## fault scenarios: 10 SIGKILLs in 100k orders, 60 s database outage, broker restart, locked table, poison messages
	$(VENV)/bin/pytest -q -s -m chaos tests/chaos $(PYTEST_ARGS)

gen: ## generate mock.json ($(ORDERS) orders, 10% invalid)
	$(PYTHON) gen_orders.py -n $(ORDERS) --invalid-rate 0.1 -o mock.json

run: venv infra-up ## start everything, replay mock.json, print the UI address
	@HTTP_PORT=$(HTTP_PORT) ORDERS=$(ORDERS) scripts/run.sh

stop: ## stop the service started by `make run` (the stack keeps running: make infra-down)
	@scripts/run.sh stop

logs: ## follow the service log of `make run`
	tail -f .local/service.log

clean: ## stop everything and remove the venv, local data and generated files
	-@scripts/run.sh stop
	-@scripts/kafka.sh down
	-@scripts/postgres.sh down
	rm -rf $(VENV) .local mock.json .mypy_cache .ruff_cache .pytest_cache test-artifacts *.egg-info

config-example: venv ## regenerate config.yaml.example from internal/config/settings.py
	$(PY) -m internal.config.example > config.yaml.example

bench-ingest: venv infra-up ## ingest rate with a backlog vs raw COPY of the same orders; freshness at 1k/s and 5k/s offered
	$(PY) -m bench.ingest

bench: venv infra-up ## every benchmark; writes the figures into docs/performance.md (about 15 minutes)
	@scripts/install-wrk.sh
	$(PY) -m bench.report

bench-http: venv infra-up ## every HTTP page (JSON and page hit/miss, home) vs a bare endpoint; warm-up of 100k orders
	@scripts/install-wrk.sh
	$(PY) -m bench.http

bench-search: venv infra-up ## search with 1,000,000 orders stored vs a bare endpoint (the schema is kept between runs)
	@scripts/install-wrk.sh
	$(PY) -m bench.search
