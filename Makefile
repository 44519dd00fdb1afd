# The platform's commands. A fresh clone needs only python3 (with venv) and make:
# everything else is installed by these targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(or $(shell uv --version >/dev/null 2>&1 && command -v uv),$(TOOLS)/bin/uv)
PY := .venv/bin/python
PYTEST := $(PY) -m pytest
PROTOS := $(shell find proto -name '*.proto')
STUBS := libs/crmproto/src/crm/.generated

.PHONY: help install system-packages dev test test-unit test-int e2e proof proto lint k8s-check bench chaos bench-contacts bench-ticketing bench-pipeline bench-campaigns bench-partners down clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(TOOLS)/bin/uv:
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml) | $(UV)
	$(UV) sync --all-packages --frozen
	touch $@

$(STUBS): $(PROTOS) proto/generate.py .venv/.synced
	$(PY) proto/generate.py
	touch $@

install: .venv/.synced $(STUBS) ## the Python environment and the generated gRPC stubs

system-packages: ## the Debian packages the tests use as real peers (dovecot, chromium)
	deploy/local/system-packages.sh

proof: install system-packages ## the proof suites in depth (isolation, security, fuzzing with more examples), then make chaos
	PROOF_FUZZ_EXAMPLES=$${PROOF_FUZZ_EXAMPLES:-25} $(PYTEST) tests/proof -s
	$(MAKE) chaos

proto: ## regenerate the Python stubs from proto/ (they are never committed)
	$(PY) proto/generate.py && touch $(STUBS)

dev: install ## run the whole platform locally with demo data (Ctrl-C stops everything)
	$(PY) deploy/local/devstack.py dev

test: install lint k8s-check system-packages ## lint, then the whole suite against real servers
	$(PYTEST)

test-unit: install ## unit tests only (no servers)
	$(PYTEST) -m "not integration and not e2e"

test-int: install system-packages ## integration tests against the real servers
	$(PYTEST) -m integration

e2e: install system-packages ## end-to-end tests: the platform started as `make dev` starts it
	$(PYTEST) -m e2e

lint: install ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m mypy

k8s-check: install ## render every Kubernetes overlay (kubectl kustomize) and validate it offline
	$(PY) deploy/k8s/check.py

bench: install ## the headline benchmarks (1M contacts, imports, fan-out...), each next to its baseline, into bench/results/latest.md
	$(PY) bench/run_all.py

chaos: install ## 10,000 interactions while each service and the broker are SIGKILLed and restarted: lost = 0, duplicated = 0
	$(PY) bench/chaos.py -n 10000 --rate 40 --broker-restart

bench-contacts: install ## contacts at 1M: reads, ResolveIdentities, segments, duplicate scan, CSV import
	$(PY) bench/contacts_reads.py
	$(PY) bench/contacts_duplicates.py --contacts 1000000
	$(PY) bench/contacts_import.py --rows 1000000

bench-ticketing: install ## ticketing: interactions threaded/s; list and views at 1M tickets; the SLA scheduler at 100k
	$(PY) bench/ticketing_threading.py
	$(PY) bench/ticketing_reads.py --tickets 1000000
	$(PY) bench/ticketing_sla.py --tickets 100000

bench-pipeline: install ## pipeline: forecast over 1M deals, the board at 100k open deals, stage changes/s
	$(PY) bench/pipeline_forecast.py --deals 1000000 --board-deals 100000

bench-partners: install ## partners: webhook fan-out to 100 local endpoints (events/s, p99), a replay of 1M events
	$(PY) bench/partners_webhooks.py

bench-campaigns: install ## campaigns: tracking endpoints (open pixel, click redirect) requests/s and p99; a 1M-recipient fan-out
	$(PY) bench/campaigns_tracking.py
	$(PY) bench/campaigns_fanout.py --recipients 1000000 --batch-size 1000

down: ## stop whatever `make dev` left running
	@if [ -x $(PY) ]; then $(PY) deploy/local/devstack.py down; fi

clean: down ## remove the environment, generated stubs and local data
	rm -rf .venv $(TOOLS) .local libs/crmproto/src/crm .mypy_cache .ruff_cache .pytest_cache
