"""One table, one Asset, when the warehouse connection lives in Airflow's metadata DB (not the environment):
the pipeline configs' ``databases:`` (one line in defaults.yaml) names the database at parse time, and the
extract and publish outlets, the dbt models' outlets, ``schedule: {after: ...}`` / ``{tables: ...}`` and
the OpenLineage datasets (also at run time, outside the factory) all agree on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dataeng.dbt.relations import relation_asset_uri
from airflow_provider_dataeng.publish.assets import (
    asset_databases,
    configured_databases,
    resolve_database,
    table_asset_uri,
)
from tests.fixtures.factory_configs import DEFAULTS, EMPTY, REPO_ROOT, dagbag, write_dags_folder

CONN = "ui_warehouse"  # defined in Airflow's UI: no AIRFLOW_CONN_UI_WAREHOUSE at parse time
MANIFEST = REPO_ROOT / "dbt_project" / "target" / "manifest.json"

ORDERS = f"""\
schedule: "@daily"
tasks:
  extract:
    type: extract
    source_conn_id: shop_source
    target_conn_id: {CONN}
    source_table: public.orders
    target_table: raw.orders
  totals:
    type: publish
    conn_id: {CONN}
    target_table: mart.order_totals
    select_sql: select count(*) as n from raw.orders
    depends_on: [extract]
"""
MARTS = f"""\
schedule: {{after: [orders]}}
tasks:
  dbt:
    type: dbt
    conn_id: {CONN}
    project_dir: {REPO_ROOT / "dbt_project"}
    manifest_path: {MANIFEST}
    render: model
    select: [stg_orders]
"""
BY_TABLE = f"""\
schedule: {{tables: [raw.orders], conn_id: {CONN}}}
tasks: {{a: {{operator: {EMPTY}}}}}
"""


def _folder(tmp_path: Path, defaults_extra: str = "") -> Any:
    if not MANIFEST.is_file():
        pytest.skip("no dbt manifest (make manifest)")
    folder = write_dags_folder(tmp_path, {"orders.yaml": ORDERS, "marts.yaml": MARTS, "by_table.yaml": BY_TABLE},
                               defaults=DEFAULTS + defaults_extra)
    bag = dagbag(folder)
    assert not bag.import_errors, bag.import_errors
    for dag in bag.dags.values():
        assert "Invalid" not in (dag.doc_md or ""), dag.doc_md
    return bag


def _databases(uris: set[str]) -> set[str]:
    return {u.split("/")[3] for u in uris}


def test_one_line_in_defaults_names_the_database_everywhere(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(f"AIRFLOW_CONN_{CONN.upper()}", raising=False)
    bag = _folder(tmp_path, f"databases: {{{CONN}: analytics}}\n")
    orders, marts, by_table = bag.dags["orders"], bag.dags["marts"], bag.dags["by_table"]
    extract, totals = orders.get_task("extract"), orders.get_task("totals")
    assert [a.uri for a in extract.outlets] == [f"postgres://{CONN}:5432/analytics/raw/orders"]
    assert [a.uri for a in totals.outlets] == [f"postgres://{CONN}:5432/analytics/mart/order_totals"]
    # dbt's models: the manifest names database "warehouse"; the setting wins, as for the extract
    model_uris = {a.uri for t in marts.tasks for a in t.outlets}
    assert model_uris and _databases(model_uris) == {"analytics"}, model_uris
    # schedules by pipeline and by table wait for exactly the extract's Asset
    after = {a.uri for a in marts.timetable.asset_condition.objects}
    assert {a.uri for a in extract.outlets} | {a.uri for a in totals.outlets} == after
    assert {a.uri for a in by_table.timetable.asset_condition.objects} == {extract.outlets[0].uri}

    # OpenLineage, called at run time (outside the factory's build): the same names
    from airflow_provider_dataeng.lineage.dbt import dbt_lineage
    from airflow_provider_dataeng.lineage.tasks import extract_lineage, publish_lineage

    assert configured_databases() == {}  # nothing leaks out of the build
    ol = extract_lineage(extract)
    assert [(d.namespace, d.name) for d in ol.outputs] == [(f"postgres://{CONN}:5432", "analytics.raw.orders")]
    ol = publish_lineage(totals)
    assert [(d.namespace, d.name) for d in ol.outputs] == [(f"postgres://{CONN}:5432", "analytics.mart.order_totals")]
    assert [(d.namespace, d.name) for d in ol.inputs] == [(f"postgres://{CONN}:5432", "analytics.raw.orders")]
    model = next(t for t in marts.tasks if t.outlets)
    ol = dbt_lineage(model)
    assert {d.name.split(".")[0] for d in [*ol.inputs, *ol.outputs]} == {"analytics"}, ol
    assert {f"postgres://{CONN}:5432/" + d.name.replace(".", "/") for d in ol.outputs} == {a.uri for a in model.outlets}


def test_without_the_setting_the_connection_id_is_the_fallback_and_dbt_disagrees(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect the setting fixes (and the run-time check reports): two Assets for one table."""
    monkeypatch.delenv(f"AIRFLOW_CONN_{CONN.upper()}", raising=False)
    bag = _folder(tmp_path)
    assert [a.uri for a in bag.dags["orders"].get_task("extract").outlets] == [
        f"postgres://{CONN}:5432/{CONN}/raw/orders"]
    assert _databases({a.uri for t in bag.dags["marts"].tasks for a in t.outlets}) == {"warehouse"}
    assert resolve_database(CONN).origin == "conn_id"


def test_a_setting_that_contradicts_the_environment_connection_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", "postgres://u:secret@db1,db2:5432/prod")
    folder = write_dags_folder(tmp_path, {"orders.yaml": ORDERS}, defaults=DEFAULTS + f"databases: {{{CONN}: analytics}}\n")
    doc = dagbag(folder).dags["orders"].doc_md
    assert "defaults.yaml" in doc and f"databases.{CONN}" in doc and "reaches database 'prod'" in doc, doc
    assert "secret" not in doc


def test_resolution_order_and_dbt_relations_share_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ENV_WH", "postgres://u@h:5432/envdb")
    assert table_asset_uri("env_wh", "raw.t") == "postgres://env_wh:5432/envdb/raw/t"
    assert table_asset_uri("ui_wh", "raw.t") == "postgres://ui_wh:5432/ui_wh/raw/t"
    with asset_databases({"ui_wh": "real", "env_wh": "configured"}):
        assert table_asset_uri("ui_wh", "raw.t") == "postgres://ui_wh:5432/real/raw/t"
        assert resolve_database("env_wh").origin == "config"
        assert table_asset_uri("ui_wh", "raw.t", database="arg") == "postgres://ui_wh:5432/arg/raw/t"
        # dbt's relation (manifest database "warehouse") through the same resolution
        assert relation_asset_uri('"warehouse"."raw"."t"', "ui_wh") == table_asset_uri("ui_wh", "raw.t")
        with asset_databases({"other": "x"}):  # nested: merged
            assert configured_databases() == {"ui_wh": "real", "env_wh": "configured", "other": "x"}
    assert configured_databases() == {}


def test_publish_fails_before_writing_when_its_connection_reaches_another_database(warehouse_conn_id: str, db: Any,
                                                                                   pg_db: str) -> None:
    """Real PostgreSQL, real task runs: a configured database the connection does not reach fails the task
    (AirflowFailException: no retry) before any DDL or ledger row; the right one publishes."""
    from datetime import datetime, timedelta, timezone

    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_dataeng.operators.publish import StagingSwapOperator
    from devstack.airflow_env import run_dag

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    states = {}
    for name, database in (("wrong", f"not_{pg_db}"), ("right", pg_db)):
        with asset_databases({warehouse_conn_id: database}), DAG(
                f"asset_db_{name}", schedule=timedelta(days=1), start_date=start, catchup=False) as dag:
            swap = StagingSwapOperator(task_id="swap", conn_id=warehouse_conn_id, target_table=f"mart.{name}",
                                       select_sql="select 1 as id", retries=3)
        assert swap.outlets[0].uri == f"postgres://{warehouse_conn_id}:5432/{database}/mart/{name}"
        states[name] = run_dag(dag, logical_date=start)
    assert states == {"wrong": {"swap": "failed"}, "right": {"swap": "success"}}
    assert db.execute("select to_regclass('mart.wrong'), to_regclass('mart.right') is not null").fetchone() == (None, True)
    assert db.execute("select array_agg(target_table) from dataeng.load_ledger").fetchone()[0] == ["right"]


def test_mapped_tasks_use_their_pipelines_setting_when_they_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapped task is built from its partial arguments when it runs (outside the factory's build): its
    lineage and its run-time database check still use the pipeline's configured database. (A mapped task
    declares no outlet Asset: its target is only known when it runs.)"""
    monkeypatch.delenv(f"AIRFLOW_CONN_{CONN.upper()}", raising=False)
    mapped = f"""\
schedule: "@daily"
tasks:
  load:
    type: extract
    source_conn_id: shop_source
    target_conn_id: {CONN}
    expand_kwargs: [{{source_table: public.a, target_table: raw.a}}, {{source_table: public.b, target_table: raw.b}}]
"""
    folder = write_dags_folder(tmp_path, {"many.yaml": mapped}, defaults=DEFAULTS + f"databases: {{{CONN}: analytics}}\n")
    task = dagbag(folder).dags["many"].get_task("load")
    assert configured_databases() == {}
    op = task.unmap({"source_table": "public.b", "target_table": "raw.b"})
    assert op.asset_databases == {CONN: "analytics"}
    from airflow_provider_dataeng.lineage.tasks import extract_lineage

    assert [d.name for d in extract_lineage(op).outputs] == ["analytics.raw.b"]
