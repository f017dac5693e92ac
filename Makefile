# The two set-up commands are `make demo` and `make test` (see README.md). Both are idempotent and
# stop every server they started, also on failure or Ctrl-C.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: demo test install system-deps manifest lint pytest airflow bench bench-venv stop clean

demo: install system-deps manifest
	@scripts/with_run_dir.sh env -u PYTHONDONTWRITEBYTECODE $(PY) -m demo $(DEMO_ARGS)

test: install system-deps manifest lint pytest

install:
	@scripts/bootstrap.sh

system-deps:
	@scripts/system_deps.sh

# dbt's build-time artifacts (manifest.json, partial_parse.msgpack, build info): rebuilt only when the dbt
# project, the provider's dbt package or the locked versions changed (`make -B manifest` forces it).
DBT_INPUTS := $(shell find dbt_project -type f -not -path 'dbt_project/target/*' -not -path 'dbt_project/logs/*' \
                -not -path 'dbt_project/dbt_packages/*' 2>/dev/null) $(wildcard airflow_provider_dataeng/dbt/*.py)
manifest: dbt_project/target/manifest.json

dbt_project/target/manifest.json: $(DBT_INPUTS) setup.cfg constraints.txt | install
	@$(PY) -m airflow_provider_dataeng.dbt.parse_project dbt_project
	@touch $@

lint: install
	@echo "==> ruff"; $(VENV)/bin/ruff check .

pytest: install
	@echo "==> pytest"; scripts/with_run_dir.sh env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest $(PYTEST_ARGS)

# Documented extras (not set-up commands).
airflow: install system-deps manifest
	@scripts/with_run_dir.sh $(PY) -m demo --standalone

bench-venv:
	@scripts/bootstrap.sh bench

bench: install system-deps manifest bench-venv
	@for b in benchmarks/*.py; do echo "==> $$b"; \
	  scripts/with_run_dir.sh env -u PYTHONDONTWRITEBYTECODE $(PY) $$b || exit 1; done

stop:
	@scripts/stop_servers.sh

clean: stop
	rm -rf $(VENV) .venv-bench .demo dbt_project/target dbt_project/logs
