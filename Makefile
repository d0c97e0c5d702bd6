# L0 order service - the two commands that matter on a fresh machine: `make run` and `make test`.
# The original Go service's targets (gen, up-kafka, up-psql, migrate, up-prod, up-app, up-metric, run-all,
# clean, loc-build, loc-runs, loc-runp, test) do here what its README says, on the local stack without
# Docker; README.md maps each one. They reuse scripts/kafka.sh, postgres.sh, run.sh and prometheus.sh.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
# The newest Python >= 3.11 on the machine (pyproject requires 3.11+).
PYTHON    ?= $(shell for p in python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null && $$p 2>/dev/null -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
ORDERS    ?= 3600
# The orders file of gen, up-prod, loc-runp and run (the original's mock.json).
MOCK      ?= mock.json
# Messages per second of up-prod (as the compose producer's PRODUCER_RPS; loc-runp keeps the producer's own 1).
PRODUCER_RPS ?= 100
# Where loc-build puts the wheel.
DIST      ?= dist
# What `make clean` deletes.
CLEAN_PATHS := $(VENV) .local $(MOCK) .mypy_cache .ruff_cache .pytest_cache test-artifacts *.egg-info build $(DIST)
PYTEST_ARGS ?=

.PHONY: bench bench-http bench-ingest bench-search browser chaos config-example help venv infra-up infra-down infra-status migrate topics lint fmt test test-unit test-image test-compose test-containers test-containers-broken run stop logs gen clean
.PHONY: up-kafka up-psql up-prod up-app up-metric run-all loc-build loc-runs loc-runp

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install the project with pinned versions (constraints.txt)
$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required (python3.11 or newer on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

infra-up: up-kafka up-psql ## start Kafka (KRaft, from the official jars) and PostgreSQL; a no-op when they run

up-kafka: ## start Kafka on 127.0.0.1:9092 (scripts/kafka.sh up); a no-op when it runs
	@scripts/kafka.sh up

up-psql: ## start PostgreSQL and create its role and database (scripts/postgres.sh up); a no-op when it runs
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

lint: venv ## ruff (lint + format check), mypy --strict, hadolint on the Dockerfile and the stand-ins' Containerfiles
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile configs/standins/*/Containerfile

fmt: venv ## format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test-unit: venv ## unit tests only (no Kafka or PostgreSQL needed)
	$(VENV)/bin/pytest tests/unit -q $(PYTEST_ARGS)

# The container checks (docs/docker.md): podman on stand-in images, no Docker engine. Each step inside is
# bounded; the overall timeout is the last resort (TERM runs the scripts' cleanup, KILL 2 minutes later).
CONTAINER_CHECK_TIMEOUT_S ?= 1200
test-image: ## build the Dockerfile with podman on a stand-in base; migrate + serve from it against the local stack
	@timeout -k 120 $(CONTAINER_CHECK_TIMEOUT_S) scripts/test-image.sh

test-compose: ## docker-compose.yml under podman-compose with stand-in postgres/kafka: healthy, migrated, serving the producer's orders
	@timeout -k 120 $(CONTAINER_CHECK_TIMEOUT_S) scripts/test-compose.sh

test-containers: test-image test-compose ## both container checks

test-containers-broken: ## prove the container checks fail on broken Dockerfiles (copies of the tree; about 3 minutes)
	@scripts/test-containers-broken.sh

browser: ## Debian's Chromium (browser UI tests) and Prometheus with promtool (alert-rule and live monitoring tests)
	@scripts/install-browser.sh
	@scripts/install-prometheus.sh

test: venv infra-up lint browser ## install, start the stack, lint, run the whole suite (chaos aside) on a database made for the run
	scripts/fresh-db.sh $(VENV)/bin/pytest -q -m "not chaos" $(PYTEST_ARGS)

chaos: venv infra-up ## fault scenarios: 10 SIGKILLs in 100k orders, 60 s database outage, broker restart, locked table, poison messages
	scripts/fresh-db.sh $(VENV)/bin/pytest -q -s -m chaos tests/chaos $(PYTEST_ARGS)

gen: ## generate mock.json (MOCK=...), 3600 orders (ORDERS=...), 10% invalid
	$(PYTHON) gen_orders.py -n $(ORDERS) --invalid-rate 0.1 -o $(MOCK)

run: venv infra-up ## start everything, replay mock.json, print the UI address
	@ORDERS=$(ORDERS) MOCK=$(MOCK) scripts/run.sh

up-prod: venv up-kafka ## replay mock.json into the service's topic in the background, 100/s (PRODUCER_RPS=...; log .local/producer.log)
	@MOCK=$(MOCK) scripts/run.sh replay $(PRODUCER_RPS)

up-app: venv infra-up ## start the service in the background and wait until it is ready (log .local/service.log)
	@scripts/run.sh service

up-metric: venv ## start Prometheus on 127.0.0.1:9090 scraping the service, with the alert rules (data .local/prometheus)
	@scripts/prometheus.sh up
	@echo "Prometheus: $$(scripts/prometheus.sh url) - Grafana is not packaged for Debian, so it is not started here; the compose stack runs it (docs/docker.md)"

run-all: gen up-kafka up-psql migrate up-prod up-app up-metric ## the original's sequence: gen, up-kafka, up-psql, migrate, up-prod, up-app, up-metric; prints every URL
	@scripts/run.sh urls

loc-build: venv ## build the wheel into dist/ (DIST=...) and check that its entry points import from it and answer --help
	@rm -rf build $(DIST)/l0_orders-*.whl
	$(PY) -m pip wheel --quiet --no-deps -w $(DIST) .
	@rm -rf build
	$(PY) -m devtools.wheel_check $(DIST)/l0_orders-*.whl

loc-runs: venv infra-up ## run the service in the foreground (Ctrl-C stops it cleanly)
	$(PY) cmd/service.py serve

loc-runp: venv up-kafka ## run the producer in the background with the original's default flags (-file mock.json -rps 1)
	@scripts/run.sh producer -file $(MOCK)

stop: ## stop what runs in the background: producer, service, Prometheus (Kafka and PostgreSQL: make infra-down)
	@scripts/run.sh stop
	@scripts/prometheus.sh down

logs: ## follow the service log of `make run` / `make up-app`
	tail -f $${L0_STATE_DIR:-.local}/service.log

clean: ## stop everything, delete .venv, .local, mock.json, dist/ and caches; asks first from a terminal (YES=1 does not)
	@if [[ -t 0 && "$(YES)" != 1 ]]; then \
	  read -r -p "make clean: stop the service, producer, Prometheus, Kafka and PostgreSQL, and delete $(CLEAN_PATHS)? [y/N] " answer; \
	  if [[ $$answer != [yY]* ]]; then echo "make clean: nothing stopped, nothing deleted"; exit 0; fi; \
	fi; \
	scripts/run.sh stop || true; \
	scripts/prometheus.sh down || true; \
	scripts/kafka.sh down || true; \
	scripts/postgres.sh down || true; \
	rm -rf $(CLEAN_PATHS); \
	echo "make clean: deleted $(CLEAN_PATHS)"

config-example: venv ## regenerate config.yaml.example from internal/config/settings.py
	$(PY) -m internal.config.example > config.yaml.example

bench-ingest: venv infra-up ## ingest rate with a backlog vs raw COPY of the same orders and the essential work alone; freshness at 1k/s and 5k/s offered
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
