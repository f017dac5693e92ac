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

manifest: install
	@$(PY) -m airflow_provider_dataeng.dbt.parse_project dbt_project

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
