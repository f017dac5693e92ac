"""The example ELT chain under the real scheduler (issue 13 item 2): the four daily extract DAGs run for the
last complete day once unpaused, and their asset events queue ``dbt_marts``, which builds the marts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from devstack.airflow_stack import AirflowStack
from devstack.example_pipelines import discover, run_example_day
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
