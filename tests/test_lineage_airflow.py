"""OpenLineage under the real scheduler (issue 13 item 7): an extract, a staging-swap publish, a quality task
and a dbt build run by the LocalExecutor; the OpenLineage provider's file transport
(``AIRFLOW__OPENLINEAGE__TRANSPORT``, set by the ``airflow_stack`` fixture) receives one START and one
COMPLETE per task, whose datasets carry the same namespace/name as the tasks' Assets (read back through
the REST API), the columns and types from the catalog, the checks as data-quality assertions, the rows
written, and for dbt the models' parents and relations from the manifest. A publish rejected by its checks
and a dbt build whose test fails emit FAIL events with the failed assertions.
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dataeng.lineage.datasets import dataset_id_of_uri
from devstack.airflow_env import REPO_ROOT
from tests.fixtures import dbt_shop

pytestmark = pytest.mark.airflow

TASKS = ("extract", "publish", "quality", "dbt")
CONF_INTERVAL = {"interval_start": "2024-01-01T00:00:00+00:00", "interval_end": "2024-01-02T00:00:00+00:00"}


def _add_connection(stack: Any, cluster: Any, dbname: str) -> str:
    conn_id = f"ol_{uuid.uuid4().hex[:10]}"
    resp = stack.api("POST", "/connections", json={
        "connection_id": conn_id, "conn_type": "postgres", "host": cluster.host, "port": cluster.port,
        "login": "postgres", "schema": dbname})
    assert resp.status_code in (200, 201), resp.text
    return conn_id


def _dag_source(dag_id: str, source_table: str, wh: str, state_dir: Path) -> str:
    return textwrap.dedent(f'''\
        from datetime import datetime, timezone

        from airflow.sdk import DAG

        from airflow_provider_dataeng.operators.dbt import DbtOperator
        from airflow_provider_dataeng.operators.extract import IdempotentExtractOperator
        from airflow_provider_dataeng.operators.publish import StagingSwapOperator
        from airflow_provider_dataeng.operators.quality import DataQualityOperator

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                 default_args={{"retries": 0}}):
            extract = IdempotentExtractOperator(
                task_id="extract", source_conn_id="shop_source", source_table={source_table!r},
                target_conn_id={wh!r}, target_table="lin.orders", mode="incremental_timestamp", lag="0s",
                checks=[{{"check": "row_count", "min": 1}}, {{"check": "unique", "columns": ["id"]}},
                        {{"check": "null_fraction", "column": "status", "max": 0.5}}])
            publish = StagingSwapOperator(
                task_id="publish", conn_id={wh!r}, target_table="lin.order_totals",
                select_sql="select status, sum(amount) as total, count(*)::int as orders from lin.orders "
                           "group by status",
                checks=[{{"check": "row_count", "min": 1}},
                        {{"check": "accepted_values", "column": "status", "values": ["placed", "paid"]}}])
            quality = DataQualityOperator(
                task_id="quality", conn_id={wh!r}, table="lin.order_totals",
                checks=[{{"check": "unique", "columns": ["status"]}},
                        {{"check": "sql", "name": "totals_positive", "sql": "select bool_and(total > 0) from {{table}}"}}])
            DbtOperator(
                task_id="dbt", conn_id={wh!r}, project_dir={str(dbt_shop.PROJECT_DIR)!r}, command="build",
                select=["stg_products", "dim_products"], state_dir={str(state_dir)!r},
                manifest_path={str(REPO_ROOT / "dbt_project" / "target" / "manifest.json")!r})
            extract >> publish >> quality
        ''')


def _events(path: Path, dag_id: str, tasks: tuple[str, ...] = TASKS, kinds: tuple[str, ...] = ("START", "COMPLETE"),
            timeout: float = 60) -> dict[str, dict[str, dict]]:
    """``{task_id: {eventType: event}}`` of the DAG's task events, once each task has every kind."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, dict[str, dict]] = {}
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            event = json.loads(line)
            name = event.get("job", {}).get("name", "")
            if name.startswith(f"{dag_id}."):
                task = name[len(dag_id) + 1:]
                assert event["eventType"] not in found.get(task, {}), f"two {event['eventType']} events for {task}"
                found.setdefault(task, {})[event["eventType"]] = event
        if all(set(kinds) <= set(found.get(t, {})) for t in tasks) or time.monotonic() > deadline:
            for t in tasks:
                assert set(kinds) <= set(found.get(t, {})), (t, kinds, found.get(t))
            return found
        time.sleep(1)


def _ids(datasets: list[dict]) -> list[tuple[str, str]]:
    return sorted((d["namespace"], d["name"]) for d in datasets)


def _schema(dataset: dict) -> dict[str, str]:
    return {f["name"]: f["type"] for f in dataset["facets"]["schema"]["fields"]}


def _assertions(dataset: dict) -> dict[str, tuple]:
    return {a["name"]: (a["assertion"], a["success"], a.get("column"))
            for a in dataset["facets"]["dataQualityAssertions"]["assertions"]}


def test_extract_publish_quality_and_dbt_emit_openlineage_events(airflow_stack, source_cluster, pg_cluster, pg_db,
                                                                 tmp_path: Path) -> None:
    stack = airflow_stack
    schema = f"lin_{uuid.uuid4().hex[:8]}"
    source_cluster.psql(
        f"""create schema {schema};
            create table {schema}.orders (id int primary key, status text, amount numeric(10,2),
                                          updated_at timestamptz not null);
            insert into {schema}.orders values (1, 'placed', 10.50, '2024-01-01 08:00+00'),
              (2, 'paid', 20.00, '2024-01-01 09:00+00'), (3, 'paid', 5.25, '2024-01-01 10:00+00'),
              (4, 'paid', 1.00, '2024-01-03 10:00+00')""", "shop")
    dbt_shop.create_raw_tables(pg_cluster, pg_db)
    wh = _add_connection(stack, pg_cluster, pg_db)
    dag_id = f"lineage_{uuid.uuid4().hex[:8]}"
    stack.add_dag_file(f"{dag_id}.py", _dag_source(dag_id, f"{schema}.orders", wh, tmp_path / "dbt-state"))
    stack.wait_dag(dag_id)
    run_id = stack.trigger(dag_id, conf=CONF_INTERVAL)
    assert stack.wait_run(dag_id, run_id, timeout=300) == "success", stack.report(dag_id, run_id)

    events = _events(Path(stack.home) / "openlineage.jsonl", dag_id)
    print(json.dumps(events, indent=1))  # shown when an assertion below fails
    for task in TASKS:
        assert events[task]["START"]["run"]["runId"] == events[task]["COMPLETE"]["run"]["runId"]

    # The Assets the scheduler knows for this DAG's outlets, and the datasets the events name: one identity.
    assets = stack.api("GET", "/assets", params={"dag_ids": dag_id, "limit": 100}).json()["assets"]
    asset_ids = {dataset_id_of_uri(a["uri"]).key for a in assets}
    print("assets:", sorted(asset_ids))
    source = ("postgres://shop_source:5432", f"shop.{schema}.orders")  # the env connection's database
    orders = (f"postgres://{wh}:5432", f"{wh}.lin.orders")  # an API connection: the database is the conn id
    totals = (f"postgres://{wh}:5432", f"{wh}.lin.order_totals")
    dim, stg = ((f"postgres://{wh}:5432", f"warehouse.{s}") for s in
                ("analytics.dim_products", "analytics_staging.stg_products"))
    assert {orders, totals, dim, stg} <= asset_ids, (asset_ids, assets)

    # extract: source -> partitioned target; schema from both catalogs, three checks, 3 rows of 2024-01-01
    start, done = events["extract"]["START"], events["extract"]["COMPLETE"]
    assert (_ids(start["inputs"]), _ids(start["outputs"])) == ([source], [orders])
    assert (_ids(done["inputs"]), _ids(done["outputs"])) == ([source], [orders])
    assert _schema(done["inputs"][0]) == {"id": "integer", "status": "text", "amount": "numeric(10,2)",
                                          "updated_at": "timestamp with time zone"}
    out = done["outputs"][0]
    assert {"id": "integer", "status": "text", "amount": "numeric(10,2)"}.items() <= _schema(out).items()
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 3
    assert _assertions(out) == {"row_count": ("row_count", True, None), "unique(id)": ("unique", True, "id"),
                                "null_fraction(status)": ("null_fraction", True, "status")}

    # publish: the tables its select reads (the extract's output) -> the swapped-in table
    done = events["publish"]["COMPLETE"]
    assert (_ids(done["inputs"]), _ids(done["outputs"])) == ([orders], [totals])
    assert "from lin.orders" in done["job"]["facets"]["sql"]["query"]
    out = done["outputs"][0]
    assert _schema(out) == {"status": "text", "total": "numeric", "orders": "integer"}
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert _assertions(out) == {"row_count": ("row_count", True, None),
                                "accepted_values(status)": ("accepted_values", True, "status")}

    # quality: the checked table is an input carrying the assertions (a sql check with its query)
    done = events["quality"]["COMPLETE"]
    assert (_ids(done["inputs"]), done["outputs"]) == ([totals], [])
    assert _assertions(done["inputs"][0]) == {"unique(status)": ("unique", True, "status"),
                                              "totals_positive": ("sql", True, None)}
    sql_check = [a for a in done["inputs"][0]["facets"]["dataQualityAssertions"]["assertions"]
                 if a["name"] == "totals_positive"][0]
    assert sql_check["content"] == "select bool_and(total > 0) from {table}"

    # dbt: per model, the relation is an output and its parents outside the task are inputs; tests are
    # assertions on the model they test; schemas from the warehouse catalog
    start, done = events["dbt"]["START"], events["dbt"]["COMPLETE"]
    raw_products = (f"postgres://{wh}:5432", "warehouse.raw.products")
    assert (_ids(start["inputs"]), _ids(start["outputs"])) == ([raw_products], sorted([dim, stg]))
    assert (_ids(done["inputs"]), _ids(done["outputs"])) == ([raw_products], sorted([dim, stg]))
    by_name = {d["name"]: d for d in done["outputs"]}
    assert _assertions(by_name[dim[1]]) == {
        "unique_dim_products_product_id": ("unique", True, "product_id"),
        "not_null_dim_products_product_id": ("not_null", True, "product_id")}
    assert {"price": ("not_null", True, "price")}.items() <= {
        a[2]: a for a in _assertions(by_name[stg[1]]).values()}.items()
    assert "product_id" in _schema(by_name[dim[1]])
    assert _schema(done["inputs"][0])["price"] == "numeric(10,2)"


def _failing_dag_source(dag_id: str, wh: str, state_dir: Path) -> str:
    return textwrap.dedent(f'''\
        from datetime import datetime, timezone

        from airflow.sdk import DAG

        from airflow_provider_dataeng.operators.dbt import DbtOperator
        from airflow_provider_dataeng.operators.publish import StagingSwapOperator

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                 default_args={{"retries": 0}}):
            StagingSwapOperator(
                task_id="publish", conn_id={wh!r}, target_table="lin.rejected",
                select_sql="select distinct id, name from raw.products",
                checks=[{{"check": "row_count", "min": 100}}, {{"check": "unique", "columns": ["id"]}}])
            DbtOperator(task_id="dbt", conn_id={wh!r}, project_dir={str(dbt_shop.PROJECT_DIR)!r},
                        command="build", select=["stg_products"], state_dir={str(state_dir)!r},
                        manifest_path={str(REPO_ROOT / "dbt_project" / "target" / "manifest.json")!r})
        ''')


def test_failed_checks_and_dbt_tests_are_failed_assertions_in_the_fail_events(airflow_stack, pg_cluster, pg_db,
                                                                             tmp_path: Path) -> None:
    stack = airflow_stack
    dbt_shop.create_raw_tables(pg_cluster, pg_db)
    pg_cluster.psql("insert into raw.products values (3, 'Box', 'office', null, '2024-01-01 00:00+00', "
                    "'2024-01-01')", pg_db)  # stg_products' not_null(price) fails
    wh = _add_connection(stack, pg_cluster, pg_db)
    dag_id = f"lineage_fail_{uuid.uuid4().hex[:8]}"
    stack.add_dag_file(f"{dag_id}.py", _failing_dag_source(dag_id, wh, tmp_path / "dbt-state"))
    stack.wait_dag(dag_id)
    run_id = stack.trigger(dag_id)
    assert stack.wait_run(dag_id, run_id, timeout=300) == "failed", stack.report(dag_id, run_id)
    assert stack.task_states(dag_id, run_id) == {"publish": "failed", "dbt": "failed"}

    events = _events(Path(stack.home) / "openlineage.jsonl", dag_id, ("publish", "dbt"), ("START", "FAIL"))
    print(json.dumps(events, indent=1))  # shown when an assertion below fails
    # the publish was rejected by its checks: the target is named, with the failed assertion, no rows written
    fail = events["publish"]["FAIL"]
    rejected = (f"postgres://{wh}:5432", f"{wh}.lin.rejected")
    assert (_ids(fail["inputs"]), _ids(fail["outputs"])) == ([(f"postgres://{wh}:5432", f"{wh}.raw.products")],
                                                             [rejected])
    assert _assertions(fail["outputs"][0]) == {"row_count": ("row_count", False, None),
                                               "unique(id)": ("unique", True, "id")}
    assert "outputStatistics" not in fail["outputs"][0]["outputFacets"]
    # dbt built the view, then its not_null(price) test failed
    fail = events["dbt"]["FAIL"]
    assert _ids(fail["outputs"]) == [(f"postgres://{wh}:5432", "warehouse.analytics_staging.stg_products")]
    assert _assertions(fail["outputs"][0]) == {
        "not_null_stg_products_price": ("not_null", False, "price"),
        "not_null_stg_products_product_id": ("not_null", True, "product_id"),
        "unique_stg_products_product_id": ("unique", True, "product_id")}
