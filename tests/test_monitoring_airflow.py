"""Monitoring under the real Airflow (scheduler, DAG processor, triggerer, API server), driven by the REST API.

- The deferrable FreshnessSensor and PostgresFailoverHealthSensor reach ``deferred`` in the real triggerer
  (their connection shows in pg_stat_activity as ``<dag>/<task> (triggerer)``) and complete when the
  table becomes fresh / the cluster becomes healthy (issue 13 item 5).
- SLA deadlines (issue 13 item 6) are in tests/test_deadline_airflow.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devstack.pg import PgCluster
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.airflow


def _add_connection(stack: Any, conn_id: str, *, host: str, port: int | None, schema: str) -> None:
    """Create the connection the way a user does: through the REST API (the triggerer reads it from there)."""
    body: dict[str, Any] = {"connection_id": conn_id, "conn_type": "postgres", "host": host, "login": "postgres",
                            "schema": schema}
    if port is not None:
        body["port"] = port
    response = stack.api("POST", "/connections", json=body)
    assert response.status_code in (200, 201), response.text


def _triggerer_sessions(cluster: PgCluster, name: str) -> int:
    return int(cluster.psql(f"select count(*) from pg_stat_activity where application_name = '{name}'"))


@pytest.fixture
def stale_table(pg_cluster: PgCluster, pg_db: str) -> Iterator[str]:
    """``raw.orders`` whose newest row is 5 hours old."""
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        conn.execute("create schema raw")
        conn.execute("create table raw.orders (id int primary key, loaded_at timestamptz not null)")
        conn.execute("insert into raw.orders values (1, now() - interval '5 hours')")
    yield pg_db


def test_deferrable_freshness_sensor_waits_in_the_triggerer_and_completes(
    airflow_stack: Any, pg_cluster: PgCluster, stale_table: str
):
    conn_id = f"fresh_{uuid.uuid4().hex[:8]}"
    dag_id = f"specs_fresh_{uuid.uuid4().hex[:6]}"
    _add_connection(airflow_stack, conn_id, host=pg_cluster.host, port=pg_cluster.port, schema=stale_table)
    airflow_stack.add_dag_file(f"{dag_id}.py", f'''
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_dataeng.sensors.freshness import FreshnessSensor

with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    FreshnessSensor(task_id="orders_fresh", conn_id={conn_id!r}, table="raw.orders", timestamp_column="loaded_at",
                    warn_after="1h", error_after="2h", deferrable=True, poke_interval=1, timeout=600)
''')
    airflow_stack.wait_dag(dag_id)
    run_id = airflow_stack.trigger(dag_id)
    airflow_stack.wait_task_state(dag_id, run_id, "orders_fresh", ["deferred"], timeout=180)
    # The trigger polls on its own connection, named for the task it waits for.
    name = f"{dag_id}/orders_fresh (triggerer)"
    wait_until(lambda: _triggerer_sessions(pg_cluster, name) >= 1, 60, f"a session named {name!r}")
    with psycopg.connect(pg_cluster.dsn(stale_table), autocommit=True) as conn:
        conn.execute("insert into raw.orders values (2, now())")
    assert airflow_stack.wait_run(dag_id, run_id, timeout=180) == "success", airflow_stack.report(dag_id, run_id)
    log = airflow_stack.task_log(dag_id, run_id, "orders_fresh", try_number=1)
    assert "deferring" in log and "raw.orders is fresh" in log
    wait_until(lambda: _triggerer_sessions(pg_cluster, name) == 0, 30, "the trigger's session to close")


@pytest.fixture
def cluster_with_stopped_standby(pg_cluster: PgCluster) -> Iterator[PgCluster]:
    standby = pg_cluster.make_standby("specs-standby")
    standby.stop()
    try:
        yield standby
    finally:
        standby.destroy()


def test_deferrable_failover_sensor_waits_until_the_cluster_is_healthy(
    airflow_stack: Any, pg_cluster: PgCluster, cluster_with_stopped_standby: PgCluster
):
    standby = cluster_with_stopped_standby
    conn_id = f"cluster_{uuid.uuid4().hex[:8]}"
    dag_id = f"specs_health_{uuid.uuid4().hex[:6]}"
    _add_connection(airflow_stack, conn_id, host=f"{pg_cluster.host}:{pg_cluster.port},{standby.host}:{standby.port}",
                    port=None, schema="postgres")
    airflow_stack.add_dag_file(f"{dag_id}.py", f'''
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_dataeng.sensors.failover_health import PostgresFailoverHealthSensor

with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    PostgresFailoverHealthSensor(task_id="cluster_healthy", conn_id={conn_id!r}, min_secondaries=1,
                                 deferrable=True, poke_interval=1, timeout=600)
''')
    airflow_stack.wait_dag(dag_id)
    run_id = airflow_stack.trigger(dag_id)
    airflow_stack.wait_task_state(dag_id, run_id, "cluster_healthy", ["deferred"], timeout=180)  # standby down
    standby.start()
    assert airflow_stack.wait_run(dag_id, run_id, timeout=180) == "success", airflow_stack.report(dag_id, run_id)
    log = airflow_stack.task_log(dag_id, run_id, "cluster_healthy", try_number=1)
    assert "is unreachable" in log and "is healthy" in log


def _backends(cluster: PgCluster, name: str) -> int:
    return int(cluster.psql(f"select count(*) from pg_stat_activity where application_name = '{name}'"))


def _waiting_on_a_lock(cluster: PgCluster, name: str) -> bool:
    return cluster.psql(
        f"select count(*) from pg_stat_activity where application_name = '{name}' and wait_event_type = 'Lock'"
    ) != "0"


@pytest.mark.parametrize("task", ["gap_check", "freshness_poke"])
def test_a_killed_check_leaves_no_query_behind(airflow_stack: Any, pg_cluster: PgCluster, stale_table: str, task: str):
    """Marked failed in the UI while its query waits for a lock: on_kill cancels it (libpq cancel), so no
    backend of the task is left in pg_stat_activity (issue 13 item 4 for the gap check and freshness)."""
    conn_id = f"kill_{uuid.uuid4().hex[:8]}"
    dag_id = f"specs_kill_{task}_{uuid.uuid4().hex[:6]}"
    _add_connection(airflow_stack, conn_id, host=pg_cluster.host, port=pg_cluster.port, schema=stale_table)
    if task == "gap_check":
        operator = (f"PartitionGapCheckOperator(task_id='check', conn_id={conn_id!r}, target_table='raw.orders', "
                    "schedule='@daily', start='2024-01-01', end='2024-01-10', on_holes='warn')")
        module, locked = "airflow_provider_dataeng.operators.gap_check", "dataeng.load_ledger"
        imported = "PartitionGapCheckOperator"
    else:
        operator = (f"FreshnessSensor(task_id='check', conn_id={conn_id!r}, table='raw.orders', "
                    "timestamp_column='loaded_at', error_after='1h', mode='poke', deferrable=False, poke_interval=1, "
                    "timeout=600)")
        module, locked, imported = "airflow_provider_dataeng.sensors.freshness", "raw.orders", "FreshnessSensor"
    airflow_stack.add_dag_file(f"{dag_id}.py", f'''
from datetime import datetime
from airflow.sdk import DAG
from {module} import {imported}

with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    {operator}
''')
    airflow_stack.wait_dag(dag_id)
    name = f"{dag_id}/check"
    with psycopg.connect(pg_cluster.dsn(stale_table)) as holder:
        holder.execute("create schema if not exists dataeng")
        holder.execute("create table if not exists dataeng.load_ledger (id bigint)")
        holder.commit()
        holder.execute(f"lock table {locked} in access exclusive mode")  # held until the end of the block
        run_id = airflow_stack.trigger(dag_id)
        wait_until(lambda: _waiting_on_a_lock(pg_cluster, name), 180, f"the task's query to wait on {locked}")
        response = airflow_stack.api("PATCH", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/check",
                                     json={"new_state": "failed"})
        assert response.status_code == 200, response.text
        started = time.monotonic()
        wait_until(lambda: _backends(pg_cluster, name) == 0, 10, f"no backend named {name!r} (on_kill cancelled it)")
        assert time.monotonic() - started <= 10
        holder.rollback()
    assert airflow_stack.wait_run(dag_id, run_id, timeout=120) == "failed"
