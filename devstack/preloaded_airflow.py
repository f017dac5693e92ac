"""``python -m devstack.preloaded_airflow scheduler``: the ``airflow`` command, with task-time modules imported first.

The LocalExecutor forks its workers from the scheduler, and each task process is a fork of a worker: whatever
the scheduler has imported, every task starts with. A task of this provider otherwise imports the factory,
its operator, psycopg and (for dbt tasks) dbt-core on each start: about 0.4 s of CPU for an extract and 2-3 s
for a dbt task on this machine, paid again by every task of every run. Importing them once in the scheduler
is the local stack's equivalent of a deployment's warm worker image; the scheduler, the executor and the task
code are Airflow's own and unchanged (``[dag_processor] parsing_pre_import_modules`` does the same for DAG
parsing). A module that does not import is skipped with a line in the component's log: the task will import
it (and fail) itself.

Used by :class:`devstack.airflow_stack.AirflowStack` for the scheduler (``preload=True``, the default).
"""

from __future__ import annotations

import importlib
import sys
import time

PRELOAD = (
    "airflow.sdk.execution_time.task_runner",
    "airflow.providers.postgres.hooks.postgres",
    "psycopg",
    "airflow_provider_dataeng.factory.folder",
    "airflow_provider_dataeng.operators.extract",
    "airflow_provider_dataeng.operators.publish",
    "airflow_provider_dataeng.operators.quality",
    "airflow_provider_dataeng.operators.gap_check",
    "airflow_provider_dataeng.operators.failover_health",
    "airflow_provider_dataeng.operators.dbt",
    "airflow_provider_dataeng.sensors.freshness",
    "airflow_provider_dataeng.extract.job",
    "airflow_provider_dataeng.dbt.runner",
    "dbt.cli.main",
    "dbt.adapters.postgres",
)


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import ``modules``; return the ones that failed (each reported on stderr)."""
    failed = []
    t0 = time.process_time()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - reported; the task imports it (and fails) itself
            failed.append(name)
            print(f"[preloaded_airflow] {name} not preloaded: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"[preloaded_airflow] preloaded {len(modules) - len(failed)} modules in "
          f"{time.process_time() - t0:.1f} s of CPU", file=sys.stderr, flush=True)
    return failed


def main() -> int:
    preload()
    from airflow.__main__ import main as airflow_main

    sys.argv[0] = "airflow"
    return airflow_main() or 0


if __name__ == "__main__":
    sys.exit(main())
