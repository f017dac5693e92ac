"""When dbt tests run (test_behavior: build, after_each, after_all, none), that a failing test stops only
the models downstream of it, and that the task log shows the failing test's SQL and rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_provider_dataeng.dbt.render import Rendering, render_dbt
from airflow_provider_dataeng.dbt.results import DbtRunError
from airflow_provider_dataeng.dbt.runner import DbtRunner
from airflow_provider_dataeng.dbt.spec import DbtRenderSpec
from tests.fixtures import dbt_shop
from tests.fixtures.dbt_manifest import example_manifest

STAGING = {"stg_orders", "stg_customers", "stg_products", "stg_payments"}
MARTS = {"fct_orders", "daily_revenue", "customer_lifetime_value", "dim_products"}
DOWNSTREAM_OF_STG_ORDERS = {"fct_orders", "daily_revenue", "customer_lifetime_value"}
LOST_ORDER = ("insert into raw.orders values (6, 1, 'lost', 60.00, '2024-01-02 10:00+00', '2024-01-02 10:00+00', "
              "null, '2024-01-02') returning id")


def _render(**kw) -> Rendering:
    spec = DbtRenderSpec(project_dir=str(dbt_shop.PROJECT_DIR), manifest_path=str(example_manifest()),
                         conn_id="warehouse", **kw)
    return render_dbt("dbt", spec)


def _by_id(rendering: Rendering) -> dict:
    return {t.task_id: t for t in rendering.tasks}


def test_build_runs_each_models_tests_in_its_task() -> None:
    tasks = _by_id(_render(test_behavior="build"))
    assert set(tasks) == STAGING | MARTS
    assert sum(len(t.spec.select) - 1 for t in tasks.values()) == 30  # every test once, beside its model
    assert all(t.spec.command == "build" for t in tasks.values())


def test_after_each_puts_a_test_task_between_a_model_and_its_downstream_models() -> None:
    rendering = _render(test_behavior="after_each")
    tasks = _by_id(rendering)
    assert set(tasks) == STAGING | MARTS | {f"{m}__test" for m in STAGING | MARTS}  # every model has tests
    orders, orders_test = tasks["stg_orders"], tasks["stg_orders__test"]
    assert orders.spec.select == ["dataeng_shop.staging.stg_orders"] and orders.spec.command == "build"
    assert orders_test.spec.command == "test" and orders_test.upstream == ("stg_orders",)
    assert orders_test.outlets == () and orders.outlets  # the model's Asset is the model task's
    assert any("accepted_values_stg_orders_status" in s for s in orders_test.spec.select)
    # downstream models wait for their parents' tests
    assert set(tasks["fct_orders"].upstream) == {"stg_orders__test", "stg_payments__test"}
    assert sum(len(t.spec.select) for t in tasks.values() if t.spec.command == "test") == 30
    assert all(t.task_id.endswith("__test") for t in tasks.values() if t.spec.command == "test")


def test_after_all_and_none() -> None:
    tasks = _by_id(_render(test_behavior="after_all"))
    assert set(tasks) == STAGING | MARTS | {"tests"}
    assert len(tasks["tests"].spec.select) == 30 and tasks["tests"].spec.command == "test"
    assert set(tasks["tests"].upstream) == {"daily_revenue", "customer_lifetime_value", "dim_products"}
    assert all(len(t.spec.select) == 1 for name, t in tasks.items() if name != "tests")
    tasks = _by_id(_render(test_behavior="none"))
    assert set(tasks) == STAGING | MARTS and all(len(t.spec.select) == 1 for t in tasks.values())
    single = _render(render="single", test_behavior="none").tasks[0]
    assert single.spec.exclude == ["resource_type:test"]
    with pytest.raises(ValueError, match="test_behavior='after_all': render='single' supports build or none"):
        _render(render="single", test_behavior="after_all")


@pytest.fixture
def shop(pg_cluster) -> Iterator[tuple[str, str, object]]:
    with dbt_shop.warehouse(pg_cluster, "dbt_tb", setup_sql=LOST_ORDER) as (conn_id, dbname):
        yield conn_id, dbname, pg_cluster


@pytest.mark.slow
def test_the_log_shows_the_failing_tests_sql_and_rows(shop, tmp_path: Path) -> None:
    conn_id, _, _ = shop
    log, handler = dbt_shop.capture_log("dbt-tb")
    with pytest.raises(DbtRunError):
        DbtRunner(conn_id, dbt_shop.PROJECT_DIR, log=log).run("build", run_dir=tmp_path / "t1", select="stg_orders")
    sql_line = next(line for line in handler.lines if line.startswith("Failing test test.dataeng_shop.accepted_values"))
    assert "(1 failing row(s))" in sql_line and "'delivered'" in sql_line and "stg_orders" in sql_line
    rows = next(line for line in handler.lines if line.startswith("First 1 failing row(s) of test.dataeng_shop.accepted"))
    table = rows.split("\n")[1:]
    assert table[0].split() == ["value_field", "n_records"] and table[2].split() == ["lost", "1"]


@pytest.mark.slow
def test_a_failing_test_stops_only_its_downstream_models(shop, tmp_path: Path, monkeypatch) -> None:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_dataeng.factory.builder import build_rendered
    from devstack.airflow_env import run_dag

    conn_id, dbname, cluster = shop
    monkeypatch.setenv("DATAENG_DBT_STATE_DIR", str(tmp_path / "state"))
    spec = DbtRenderSpec(project_dir=str(dbt_shop.PROJECT_DIR), manifest_path=str(example_manifest()),
                         conn_id=conn_id, test_behavior="after_each")
    with DAG(f"dbt_tb_{uuid.uuid4().hex[:6]}", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)) as dag:
        build_rendered(render_dbt("dbt", spec), {"retries": 0})
    states = {k.split(".", 1)[1]: v for k, v in run_dag(dag, logical_date=datetime(2024, 1, 5, tzinfo=timezone.utc)).items()}
    assert states["stg_orders"] == "success" and states["stg_orders__test"] == "failed"
    # stg_payments waits for stg_orders' tests too (its relationships test references stg_orders)
    assert {n for n, st in states.items() if st == "upstream_failed"} == {
        "stg_payments", "stg_payments__test", "fct_orders", "fct_orders__test", "daily_revenue",
        "daily_revenue__test", "customer_lifetime_value", "customer_lifetime_value__test"}
    assert {n for n, st in states.items() if st == "success"} == {
        "stg_customers", "stg_customers__test", "stg_orders", "stg_products", "stg_products__test", "dim_products",
        "dim_products__test"}
    assert dbt_shop.query(cluster, dbname, "select count(*) from analytics.dim_products") == [(2,)]
