"""render_dbt over the example project's manifest: tasks, edges and Asset outlets in every granularity,
selection semantics, and the DbtOperator / profile contracts that need no database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from airflow_provider_dataeng.dbt.manifest import load_manifest, parse_manifest
from airflow_provider_dataeng.dbt.profile import PASSWORD_ENV, DbtProfile
from airflow_provider_dataeng.dbt.relations import parse_relation_name, relation_asset, relation_asset_uri
from airflow_provider_dataeng.dbt.render import render_dbt
from airflow_provider_dataeng.dbt.runner import DbtRunner
from airflow_provider_dataeng.dbt.selection import SelectionError, select_nodes
from airflow_provider_dataeng.dbt.spec import DbtRenderSpec
from airflow_provider_dataeng.factory.builder import build_rendered
from airflow_provider_dataeng.operators.dbt import DbtOperator
from devstack.airflow_env import register_connection, unregister_connection
from tests.fixtures.dbt_manifest import example_manifest
from tests.fixtures.dbt_shop import PROJECT_DIR

STAGING = {"stg_orders", "stg_customers", "stg_products", "stg_payments"}
MARTS = {"fct_orders", "daily_revenue", "customer_lifetime_value", "dim_products"}


@pytest.fixture(scope="module")
def manifest_path() -> Path:
    return example_manifest()


def _dag(manifest_path: Path, render: str, **kw):
    from airflow.providers.common.compat.sdk import DAG

    operator_kwargs = kw.pop("operator_kwargs", {"threads": 2})
    conn_id = kw.pop("conn_id", "warehouse")
    spec = DbtRenderSpec(project_dir=str(PROJECT_DIR), manifest_path=str(manifest_path), conn_id=conn_id,
                         render=render, **operator_kwargs, **kw)
    with DAG(f"dbt_{render}_{kw.get('group_by', 'x')}", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        entries, exits = build_rendered(render_dbt("dbt", spec))
    return dag, entries, exits


def _edges(dag) -> set[tuple[str, str]]:
    return {(up, t.task_id.split(".", 1)[-1]) for t in dag.tasks for up in
            (u.split(".", 1)[-1] for u in t.upstream_task_ids)}


def _uri(table: str, schema: str = "analytics", namespace: str = "warehouse") -> str:
    return f"postgres://{namespace}:5432/warehouse/{schema}/{table}"  # Airflow's normalizer adds the port


EXPECTED_URIS = {_uri(m, "analytics_staging") for m in STAGING} | {_uri(m) for m in MARTS}


def test_model_mode_one_task_per_model_with_its_tests_and_manifest_edges(manifest_path: Path) -> None:
    dag, entries, exits = _dag(manifest_path, "model")
    tasks = {t.task_id.split(".", 1)[1]: t for t in dag.tasks}
    assert set(tasks) == STAGING | MARTS
    assert all(t.task_id.startswith("dbt.") for t in dag.tasks)
    model_edges = {
        ("stg_orders", "fct_orders"), ("stg_payments", "fct_orders"), ("fct_orders", "daily_revenue"),
        ("fct_orders", "customer_lifetime_value"), ("stg_customers", "customer_lifetime_value"),
        ("stg_products", "dim_products"),
    }
    # plus the edges that let multi-parent tests run in the task of the model they are defined on:
    # relationships(stg_orders.customer_id -> stg_customers), relationships(stg_payments -> stg_orders)
    assert _edges(dag) == model_edges | {("stg_customers", "stg_orders"), ("stg_orders", "stg_payments")}
    assert {t.task_id for t in entries} == {"dbt.stg_customers", "dbt.stg_products"}
    assert {t.task_id for t in exits} == {"dbt.daily_revenue", "dbt.customer_lifetime_value", "dbt.dim_products"}
    # each task builds exactly its model and the tests on it (explicitly, no indirect selection)
    orders = tasks["stg_orders"]
    assert orders.command == "build" and orders.indirect_selection == "empty"
    assert orders.select[0] == "dataeng_shop.staging.stg_orders"
    tests = {s.rsplit(".", 1)[1] for s in orders.select[1:]}
    assert "unique_stg_orders_order_id" in tests
    assert "relationships_stg_orders_customer_id__customer_id__ref_stg_customers_" in tests
    assert "accepted_values_stg_orders_status__placed__paid__shipped__delivered__cancelled__returned" in tests
    assert all("stg_payments" not in s for s in orders.select)
    # the singular test (parents daily_revenue and fct_orders) runs after its last parent
    assert "dataeng_shop.assert_daily_revenue_reconciles" in tasks["daily_revenue"].select
    # every selected test is run by exactly one task
    all_selects = [s for t in tasks.values() for s in t.select[1:]]
    assert len(all_selects) == len(set(all_selects)) == 30
    # each task emits its own model's Asset, URI from relation_name
    for name, task in tasks.items():
        schema = "analytics_staging" if name in STAGING else "analytics"
        assert [a.uri for a in task.outlets] == [_uri(name, schema)]
    assert tasks["stg_orders"].threads == 2 and tasks["stg_orders"].conn_id == "warehouse"


@pytest.mark.parametrize(
    ("group_by", "groups"),
    [("folder", {"staging": STAGING, "marts": MARTS}),
     ("tag", {"staging": STAGING, "marts": MARTS}),
     ("selector", {"staging_layer": STAGING, "marts_layer": MARTS})],
)
def test_group_mode_one_task_per_group(manifest_path: Path, group_by: str, groups: dict[str, set[str]]) -> None:
    dag, entries, exits = _dag(manifest_path, "group", group_by=group_by)
    tasks = {t.task_id.split(".", 1)[1]: t for t in dag.tasks}
    assert set(tasks) == set(groups)
    first, second = list(groups)
    assert _edges(dag) == {(first, second)}
    assert [t.task_id for t in entries] == [f"dbt.{first}"] and [t.task_id for t in exits] == [f"dbt.{second}"]
    for group, models in groups.items():
        task = tasks[group]
        assert {s.rsplit(".", 1)[1] for s in task.select if s.rsplit(".", 1)[1] in STAGING | MARTS} == models
        schema = "analytics_staging" if group == first else "analytics"
        assert {a.uri for a in task.outlets} == {_uri(m, schema) for m in models}


def test_single_mode_one_task_all_assets_and_the_selection_passed_to_dbt(manifest_path: Path) -> None:
    dag, entries, exits = _dag(manifest_path, "single", select=["tag:marts", "stg_orders"], exclude="dim_products")
    assert [t.task_id for t in dag.tasks] == ["dbt"] and entries == exits == dag.tasks
    task = dag.tasks[0]
    assert task.select == ["tag:marts", "stg_orders"] and task.exclude == ["dim_products"]
    assert {a.uri for a in task.outlets} == {_uri(m) for m in MARTS - {"dim_products"}} | {
        _uri("stg_orders", "analytics_staging")}


def test_asset_uris_are_the_same_in_every_mode(manifest_path: Path) -> None:
    seen = []
    for render, kw in (("model", {}), ("group", {"group_by": "folder"}), ("group", {"group_by": "tag"}),
                       ("single", {})):
        dag, _, _ = _dag(manifest_path, render, **kw)
        seen.append({a.uri for t in dag.tasks for a in t.outlets})
    assert all(s == EXPECTED_URIS for s in seen)
    dag, _, _ = _dag(manifest_path, "model", operator_kwargs={"asset_namespace": "wh2"})
    assert {a.uri for t in dag.tasks for a in t.outlets} == {u.replace("//warehouse:", "//wh2:") for u in EXPECTED_URIS}


def test_edges_skip_over_unselected_models(manifest_path: Path) -> None:
    dag, entries, _ = _dag(manifest_path, "model", select=["+daily_revenue"], exclude=["fct_orders"])
    tasks = {t.task_id.split(".", 1)[1] for t in dag.tasks}
    assert tasks == {"stg_orders", "stg_payments", "daily_revenue"}
    # daily_revenue <- fct_orders (excluded) <- stg_orders, stg_payments: the order is kept
    assert {("stg_orders", "daily_revenue"), ("stg_payments", "daily_revenue")} <= _edges(dag)


def test_selection_semantics(manifest_path: Path) -> None:
    m = load_manifest(manifest_path)

    def names(*args, **kw) -> set[str]:
        return {u.split(".")[-1] for u in select_nodes(m, *args, **kw)}

    assert names() == STAGING | MARTS
    assert names("+fct_orders") == {"fct_orders", "stg_orders", "stg_payments"}
    assert names("stg_orders+") == {"stg_orders", "fct_orders", "daily_revenue", "customer_lifetime_value"}
    assert names("stg_orders+1") == {"stg_orders", "fct_orders"}
    assert names("1+customer_lifetime_value") == {"customer_lifetime_value", "fct_orders", "stg_customers"}
    assert names("@stg_payments") == {"stg_payments", "fct_orders", "daily_revenue", "customer_lifetime_value",
                                      "stg_orders", "stg_customers"}
    assert names("tag:marts") == MARTS
    assert names("path:models/staging") == STAGING == names("models/staging/")
    assert names("staging") == STAGING  # fqn prefix
    assert names("stg_*") == STAGING
    assert names("tag:marts,+daily_revenue") == {"fct_orders", "daily_revenue"}
    assert names("tag:marts", exclude="fct_orders+") == {"dim_products"}
    assert names("source:raw.orders+") == {"stg_orders", "fct_orders", "daily_revenue", "customer_lifetime_value"}
    assert names("config.materialized:incremental") == {"fct_orders"}
    assert names(selector="staging_layer") == STAGING and names(selector="marts_layer") == MARTS
    assert select_nodes(m, "unique_stg_orders_order_id", resource_types=None) == {
        "test.dataeng_shop.unique_stg_orders_order_id.e3b841c71a"}
    with pytest.raises(SelectionError, match="state"):
        select_nodes(m, "state:modified")
    with pytest.raises(SelectionError, match="no such selector"):
        select_nodes(m, selector="nope")


def test_render_rejects_bad_input_with_the_field_name(manifest_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"render\n.*'model', 'group' or 'single'"):
        _dag(manifest_path, "models")
    with pytest.raises(ValueError, match=r"group_by\n.*'folder', 'tag' or 'selector'"):
        _dag(manifest_path, "group", group_by="schema")
    with pytest.raises(ValueError, match="matches no model"):
        _dag(manifest_path, "model", select="does_not_exist")
    with pytest.raises(ValueError, match=r"command='seed': render='model' supports build or run"):
        _dag(manifest_path, "model", operator_kwargs={"command": "seed"})
    with pytest.raises(FileNotFoundError, match="manifest_path=.*parse_project"):
        _dag(tmp_path / "missing.json", "model")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        _dag(tmp_path / "bad.json", "model")


def test_manifest_loader_keeps_only_what_rendering_needs(manifest_path: Path) -> None:
    m = load_manifest(manifest_path)
    assert load_manifest(manifest_path) is m  # cached per (path, mtime, size)
    node = m.nodes["model.dataeng_shop.fct_orders"]
    assert node.relation_name == '"warehouse"."analytics"."fct_orders"'
    assert set(node.depends_on) == {"model.dataeng_shop.stg_orders", "model.dataeng_shop.stg_payments"}
    assert node.materialized == "incremental" and node.path == "models/marts/fct_orders.sql"
    assert set(m.selectors) == {"staging_layer", "marts_layer"}
    assert parse_manifest(json.dumps({"nodes": {}})).nodes == {}
    assert parse_relation_name('"db"."we""ird"."t"') == ("db", 'we"ird', "t")
    # the project's convention for warehouse tables (the extracts' outlets use it too)
    assert relation_asset_uri('"warehouse"."raw"."orders"', "warehouse") == "postgres://warehouse:5432/warehouse/raw/orders"
    from airflow_provider_dataeng.publish.assets import table_asset

    assert table_asset("warehouse", "raw.orders", database="warehouse") == relation_asset('"warehouse"."raw"."orders"',
                                                                                       "warehouse")


def test_dbt_operator_validates_at_parse_time_and_never_connects(manifest_path: Path) -> None:
    with pytest.raises(ValueError, match="DbtOperator 'x': command='deploy': Input should be 'build', 'run'"):
        DbtOperator(task_id="x", conn_id="c", project_dir=PROJECT_DIR, command="deploy")
    with pytest.raises(ValueError, match="threads=0: Input should be greater than or equal to 1"):
        DbtOperator(task_id="x", conn_id="c", project_dir=PROJECT_DIR, threads=0)
    with pytest.raises(ValueError, match="vars='a: 1': Input should be a valid dictionary"):
        DbtOperator(task_id="x", conn_id="c", project_dir=PROJECT_DIR, vars="a: 1")
    # a templated value is validated after templating, at run time
    DbtOperator(task_id="y", conn_id="c", project_dir=PROJECT_DIR, threads="{{ params.threads }}")
    # a connection id that does not exist: building the operator must not look it up
    op = DbtOperator(task_id="x", conn_id="no_such_conn", project_dir=PROJECT_DIR, select="tag:marts",
                     manifest_path=manifest_path)
    assert {a.uri for a in op.outlets} == {_uri(m, namespace="no_such_conn") for m in MARTS}
    assert {a.name for a in op.outlets} == {a.uri for a in op.outlets}  # table_asset: the name is the URI


def test_generated_profile_references_the_password_and_never_contains_it() -> None:
    secret = "pw-Not-In-Files-7781"
    register_connection("dbt_profile_case", host="db1:6432,db2:6432", login="etl", password=secret,
                        schema="warehouse", extra={"target_session_attrs": "read-write", "sslmode": "prefer"})
    try:
        runner = DbtRunner("dbt_profile_case", PROJECT_DIR, target_schema="marts_x", threads=3)
        with runner.profiles() as (profiles_dir, env, password):
            text = (profiles_dir / "profiles.yml").read_text()
            assert secret not in text
            doc = yaml.safe_load(text)["dataeng"]["outputs"]["airflow"]
            assert doc["host"] == "db1,db2" and doc["port"] == 6432  # one port shared by all hosts
            assert doc["user"] == "etl" and doc["dbname"] == "warehouse" and doc["schema"] == "marts_x"
            assert doc["threads"] == 3 and doc["sslmode"] == "prefer"
            assert doc["password"] == "{{ env_var('DBT_ENV_SECRET_PASSWORD', '') }}"
            assert env[PASSWORD_ENV] == secret == password and env["PGTARGETSESSIONATTRS"] == "read-write"
            assert oct((profiles_dir / "profiles.yml").stat().st_mode & 0o777) == "0o600"
        assert not profiles_dir.exists()  # removed after the run
    finally:
        unregister_connection("dbt_profile_case")
    assert "password" not in DbtProfile("h", 1, "u", "d", "s").env()


def test_model_assets_are_the_tables_identity_with_the_connections_database(manifest_path: Path) -> None:
    from airflow_provider_dataeng.publish.assets import table_asset

    register_connection("dbt_assets_wh", host="db1", schema="prod_wh")
    try:
        dag, _, _ = _dag(manifest_path, "model", conn_id="dbt_assets_wh")
        outlets = {a for t in dag.tasks for a in t.outlets}
        # the same Asset as an extract or publish of that table through this connection
        assert table_asset("dbt_assets_wh", "analytics.fct_orders") in outlets
        assert {a.uri for a in outlets} == {u.replace("//warehouse:5432/warehouse/", "//dbt_assets_wh:5432/prod_wh/")
                                            for u in EXPECTED_URIS}
    finally:
        unregister_connection("dbt_assets_wh")


def test_sources_with_freshness_become_deferrable_sensors_upstream_of_their_models(manifest_path: Path) -> None:
    from airflow_provider_dataeng.sensors.freshness import FreshnessSensor

    dag, entries, _ = _dag(manifest_path, "model",
                           source_freshness={"poke_interval": "5m", "timeout": "2h"})
    tasks = {t.task_id.split(".", 1)[1]: t for t in dag.tasks}
    sensors = {name: t for name, t in tasks.items() if isinstance(t, FreshnessSensor)}
    assert set(sensors) == {f"freshness__raw__{t}" for t in ("orders", "customers", "products", "payments")}
    orders = sensors["freshness__raw__orders"]
    # one definition: the thresholds and the load-time column come from the dbt YAML (sources.yml)
    assert orders.table == "raw.orders" and orders.timestamp_column == "_interval_start"
    assert orders.warn_after == timedelta(hours=50) and orders.error_after == timedelta(hours=72)
    assert orders.deferrable is True and orders.poke_interval == 300 and orders.timeout == 7200
    assert orders.conn_id == "warehouse"
    # a table may name its own load-time column (append-only payments: the payment time, not the partition)
    assert sensors["freshness__raw__payments"].timestamp_column == "paid_at"
    # each sensor runs right before the models that read the source, and only those
    assert tasks["stg_orders"].upstream_task_ids >= {"dbt.freshness__raw__orders"}
    assert {t.task_id for t in orders.downstream_list} == {"dbt.stg_orders"}
    assert "dbt.freshness__raw__orders" not in tasks["dim_products"].upstream_task_ids
    assert {t.task_id for t in entries} == {f"dbt.{s}" for s in sensors}
    # selecting only the marts: the sensors guard the marts that read sources through unselected staging
    dag, _, _ = _dag(manifest_path, "model", select="tag:marts", source_freshness=True)
    tasks = {t.task_id.split(".", 1)[1]: t for t in dag.tasks}
    assert tasks["fct_orders"].upstream_task_ids == {"dbt.freshness__raw__orders", "dbt.freshness__raw__payments"}
    # not asked for: no sensors
    dag, _, _ = _dag(manifest_path, "model")
    assert not any(isinstance(t, FreshnessSensor) for t in dag.tasks)
