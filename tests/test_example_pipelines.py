"""The example pipelines under the real scheduler, driven through the REST API.

- The ELT chain (issue 13 item 2): the four daily extract DAGs run for the last complete day once unpaused,
  and their asset events queue ``dbt_marts``, which builds the marts.
- Issue 13's "done when": every example DAG triggered as the UI's Trigger button does (no logical date) gives
  a green run, every task succeeding (``warehouse_health`` reads a pg_auto_failover monitor, as under
  ``make airflow``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from devstack.airflow_stack import AirflowStack
from devstack.example_pipelines import discover, run_example_day
from devstack.formation import HOST, MONITOR_DB, MONITOR_USER, shared_formation
from devstack.pg import PgCluster
from devstack.shop import Shop, demo_days

UTC = timezone.utc


def _build_shop(source_cluster: PgCluster) -> None:
    shop = Shop(source_cluster.dsn("shop"), seed=7)
    with shop.connect() as conn:
        if conn.execute("select to_regclass('public.orders') is not null").fetchone()[0]:
            return
    now = datetime.now(UTC)
    shop.build([*demo_days(1), now.date()], until=now)


@pytest.mark.slow
def test_the_extracts_asset_events_trigger_dbt_marts_which_builds_the_marts(
    airflow_stack: AirflowStack, source_cluster: PgCluster, pg_cluster: PgCluster
):
    _build_shop(source_cluster)
    pipelines = discover()
    assert sorted(pipelines.extract) == ["customers", "orders", "payments", "products"]
    assert pipelines.dbt == ["dbt_marts"]

    day = run_example_day(airflow_stack, pipelines, timeout=900)

    assert day.error is None, day.error
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for run in day.extract_runs:
        assert (run.run_type, run.state) == ("scheduled", "success"), run
        start, end = (datetime.fromisoformat(v.replace("Z", "+00:00")) for v in run.data_interval)
        assert (start, end) == (today - timedelta(days=1), today), run  # the last complete day
    [dbt] = day.dbt_runs
    assert (dbt.run_type, dbt.state) == ("asset_triggered", "success"), dbt
    assert dbt.tasks and all(state == "success" for state in dbt.tasks.values()), dbt.tasks

    # The run was queued by the four raw tables' asset events.
    events = airflow_stack.api("GET", f"dags/dbt_marts/dagRuns/{dbt.run_id}/upstreamAssetEvents").json()
    names = {e.get("name") or e.get("uri") for e in events["asset_events"]}
    assert {n.rsplit("/", 2)[-2] + "." + n.rsplit("/", 1)[-1] for n in names} >= {
        "raw.orders", "raw.customers", "raw.products", "raw.payments"}, names

    # And dbt built the marts from the extracted rows.
    with psycopg.connect(pg_cluster.dsn("warehouse")) as conn:
        orders = conn.execute("select count(*) from raw.orders").fetchone()[0]
        schemas = [r[0] for r in conn.execute(
            "select table_schema from information_schema.tables where table_name = 'fct_orders'")]
        assert orders > 0 and schemas, (orders, schemas)
        fct = conn.execute(f'select count(*) from "{schemas[0]}".fct_orders').fetchone()[0]
    assert fct > 0


def _add_monitor_connection(stack: AirflowStack, conn_id: str, monitor_port: int) -> None:
    """``warehouse_monitor`` (the monitoring config's pg_auto_failover connection), created through the API."""
    response = stack.api("POST", "connections", json={
        "connection_id": conn_id, "conn_type": "pg_auto_failover", "host": HOST, "port": monitor_port,
        "login": MONITOR_USER, "schema": MONITOR_DB})
    assert response.status_code in (200, 201, 409), response.text


def _wait_green(stack: AirflowStack, runs: dict[str, str], timeout: float) -> None:
    for dag_id, run_id in runs.items():
        assert stack.wait_run(dag_id, run_id, timeout=timeout) == "success", stack.report(dag_id, run_id)
        run = stack.run(dag_id, run_id)
        assert (run["run_type"], run["logical_date"]) == ("manual", None), run
        states = stack.task_states(dag_id, run_id)
        assert states and all(s in ("success", "skipped") for s in states.values()), stack.report(dag_id, run_id)


@pytest.mark.slow
def test_every_example_dag_triggered_without_a_logical_date_runs_green(
    airflow_stack: AirflowStack, source_cluster: PgCluster
):
    stack = airflow_stack
    _build_shop(source_cluster)
    _add_monitor_connection(stack, "warehouse_monitor", shared_formation().monitor_port)
    pipelines = discover()
    every = pipelines.extract + pipelines.dbt + pipelines.other
    assert len(every) == len(set(every)) >= 6, every
    for dag_id in every:
        stack.wait_dag(dag_id, timeout=180, unpause=False)
    # While the extracts run, the DAGs that read their tables stay paused: the scheduler queues no
    # asset-triggered dbt_marts run for a paused DAG, so the only runs here are the Trigger button's.
    for dag_id in pipelines.dbt + pipelines.other:
        stack.unpause(dag_id, paused=True)
    try:
        extracts = {dag_id: stack.trigger(dag_id) for dag_id in pipelines.extract}
        for dag_id in pipelines.extract:
            stack.unpause(dag_id)
        _wait_green(stack, extracts, timeout=600)
        # Then what reads the extracted tables: dbt builds the marts, the checks find them fresh.
        readers = {dag_id: stack.trigger(dag_id) for dag_id in pipelines.dbt + pipelines.other}
        for dag_id in readers:
            stack.unpause(dag_id)
        _wait_green(stack, readers, timeout=900)
    finally:
        for dag_id in pipelines.other:  # hourly checks: no scheduled runs for the rest of the session
            stack.unpause(dag_id, paused=True)
