# Local development stack for the Glue ETL job (PostgreSQL, MariaDB, moto, fakesnow on 127.0.0.1).
# `make help` lists the targets. Setup logic: local/setup.sh; services: local/stack.py.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY := .venv/bin/python
STACK := $(PY) -m local.stack
# Stopping must work without the venv (after distclean, or before setup).
ANY_PY := $(shell [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)

PYTEST_ARGS ?=
DEPLOY_ARGS ?=
KEEP_STACK ?= 0
JOB ?= glue_etl_job.py
JOB_ARGS ?= --JOB_NAME etl-demo --SNOWFLAKE /etl/local/snowflake --AFFILIATE /etl/local/affiliate \
	--PROGRAM360 /etl/local/program360 --OPS /etl/local/ops --STAGING_BUCKET etl-staging

.PHONY: help setup stack-up stack-down stack-status seed lint test demo bench deploy deploy-check clean distclean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: ## venv + Python deps, Java 17, PostgreSQL/MariaDB, jars (idempotent, fast when done)
	@bash local/setup.sh

stack-up: setup ## start the local services (idempotent) and wait until healthy
	@$(STACK) up

stack-down: ## stop the services started by stack-up
	@$(ANY_PY) -m local.stack down

stack-status: ## show each service's state (exit 1 unless all are healthy)
	@$(ANY_PY) -m local.stack status

seed: stack-up ## (re)create the demo source data, SSM parameters, bucket and Snowflake schemas
	@$(PY) -m local.seed

lint: setup ## ruff over the repo
	@.venv/bin/ruff check .

# pytest exit code 5 (no tests collected) counts as a failure; the stack is always stopped.
test: setup ## start the stack, run pytest (PYTEST_ARGS=...), stop the stack
	@rc=0; \
	{ $(STACK) up && eval "$$($(STACK) env)" && $(PY) -m pytest -q $(PYTEST_ARGS); } || rc=$$?; \
	$(STACK) down || true; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; rc=1; fi; \
	exit $$rc

# Runs the job as Glue would, against the seeded stack. KEEP_STACK=1 leaves the stack running.
demo: setup ## start + seed the stack, run glue_etl_job.py as Glue would, stop the stack
	@rc=0; \
	{ $(STACK) up && $(PY) -m local.seed && eval "$$($(STACK) env)" && $(PY) $(JOB) $(JOB_ARGS); } || rc=$$?; \
	if [ "$(KEEP_STACK)" = 1 ]; then echo "KEEP_STACK=1: stack left running (make stack-down)"; \
	else $(STACK) down || true; fi; \
	exit $$rc

# Benchmark (bench/README.md): BENCH_RUNS=3, BENCH_SIZES=full|small, KEEP_STACK=1; writes bench/results/.
bench: setup ## benchmark the job vs psql|gzip, dlt and Sling on the local stack (BENCH_SIZES=small: smoke)
	@$(PY) -m bench.run

# Deploy to AWS (docs/DEPLOY.md): DEPLOY_ARGS='--artifact-bucket B --param SsmPrefix=/etl/prod ...'.
deploy: setup ## cfn-lint, upload the job's files, create/update the CloudFormation stack (DEPLOY_ARGS=...)
	@$(PY) -m deploy $(DEPLOY_ARGS)

deploy-check: setup ## cfn-lint + validate deploy/template.yaml (and DEPLOY_ARGS' parameters); deploys nothing
	@$(PY) -m deploy --check $(DEPLOY_ARGS)

clean: ## stop the stack and remove .state
	@$(ANY_PY) -m local.stack clean
	@rm -rf .pytest_cache .ruff_cache

distclean: clean ## clean, and remove .venv and .jars
	@rm -rf .venv .jars
