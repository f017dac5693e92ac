"""Benchmark: the example pipelines for one day end to end under a real scheduler.

Run: ``.venv/bin/python benchmarks/e2e.py`` (``make bench`` runs it). Starts a source PostgreSQL with the
generated shop (:mod:`devstack.shop`), an empty warehouse, and a real Airflow
(:mod:`devstack.airflow_stack`: scheduler, DAG processor, triggerer, API server, LocalExecutor) over
``dags/``; then, through the REST API, unpauses the four extract DAGs and ``dbt_marts``: the scheduler runs
each extract for the last complete day and their asset events trigger ``dbt_marts``
(:func:`devstack.example_pipelines.run_example_day`). Everything is stopped at the end.

Measured from the unpause: ``extract_dags_s`` until the four extract runs are finished,
``dbt_triggered_after_s`` from the newest asset event the dbt run consumed to ``dbt_marts``' asset-triggered run being queued
(scheduler latency), ``total_s`` until ``dbt_marts`` is finished. Airflow's start-up is printed, not counted.

Last line: ``{"extract_dags_s": .., "dbt_triggered_after_s": .., "total_s": .., "all_succeeded": true}``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from devstack.airflow_stack import AirflowStack
from devstack.example_pipelines import run_example_day
from devstack.pg import running_cluster
from devstack.shop import Shop, demo_days


def say(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> int:
    with running_cluster("bench-e2e-source") as source, running_cluster("bench-e2e-warehouse") as warehouse:
        source.create_database("shop")
        warehouse.create_database("warehouse")
        now = datetime.now(timezone.utc)
        say("generating the shop (seed 42) up to now")
        Shop(source.dsn("shop"), seed=42).build([*demo_days(1), now.date()], until=now)
        connections = {
            "shop_source": f"postgres://postgres@{source.host}:{source.port}/shop",
            "warehouse": f"postgres://postgres@{warehouse.host}:{warehouse.port}/warehouse",
        }
        home = Path(tempfile.mkdtemp(prefix="dataeng-bench-airflow-"))
        with AirflowStack(home, connections=connections, metadata_cluster=warehouse, log=say) as stack:
            say(f"Airflow start-up (not counted): {json.dumps({k: round(v, 1) for k, v in stack.startup_seconds.items()})}")
            day = run_example_day(stack, timeout=1200, log=say)
            if day.error:
                say(f"FAILED: {day.error}")
                say(stack.log_tails(["scheduler"], lines=30))
    print(json.dumps(day.figures()), flush=True)
    return 0 if day.all_succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
