"""OpenLineage without a scheduler: one identity for Assets and datasets, facets from check configs, and the
provider importing and parsing the example DAGs without the OpenLineage provider (an optional extra).

The events under the real scheduler: tests/test_lineage_airflow.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airflow_provider_dataeng.lineage.datasets import (
    dataset_id_of_uri,
    relation_dataset,
    sql_tables,
    table_dataset,
)
from airflow_provider_dataeng.publish.assets import table_asset
from airflow_provider_dataeng.publish.table_ref import TableRef
from devstack.airflow_env import REPO_ROOT

OL_MODULES = ("openlineage", "airflow.providers.openlineage", "airflow.providers.common.compat.openlineage")

# Installed first in the child: OpenLineage's modules cannot be imported ...
BLOCK_OPENLINEAGE = f"""
import sys, importlib.abc
BLOCKED = {OL_MODULES!r}
class _NoOpenLineage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"No module named {{name!r}} (OpenLineage is not installed here)")
        return None
sys.meta_path.insert(0, _NoOpenLineage())
# ... and their distributions are not installed: Airflow's provider discovery (entry points) skips them.
import importlib.metadata, importlib_metadata
def _hide(distributions):
    def visible(*args, **kwargs):
        for dist in distributions(*args, **kwargs):
            name = (dist.metadata["Name"] or "").lower().replace("_", "-")
            if not (name.startswith("openlineage-") or name == "apache-airflow-providers-openlineage"):
                yield dist
    return visible
for _module in (importlib.metadata, importlib_metadata):
    _module.distributions = _hide(_module.distributions)
"""

PARSE = """
import json, pkgutil, importlib, runpy, sys
import airflow_provider_dataeng
modules = [m.name for m in pkgutil.walk_packages(airflow_provider_dataeng.__path__, "airflow_provider_dataeng.")]
for name in modules:
    importlib.import_module(name)
dags = {k[5:]: v for k, v in runpy.run_path(%r).items() if k.startswith("dag__")}
blocked = %r
print(json.dumps({
    "modules": len(modules),
    "dags": sorted(dags),
    "errors": sorted(d for d, dag in dags.items() if "config-error" in (dag.tags or ())),
    "lineage_methods": sorted({type(t).__name__ for dag in dags.values() for t in dag.tasks
                               if callable(getattr(t, "get_openlineage_facets_on_complete", None))}),
    "ol_imported": sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in blocked)),
}))
"""


def _parse_in_child(block: bool) -> dict:
    code = (BLOCK_OPENLINEAGE if block else "") + PARSE % (str(REPO_ROOT / "dags" / "dataeng_dags.py"), OL_MODULES)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                          cwd=str(REPO_ROOT))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("block", [True, False], ids=["openlineage-blocked", "openlineage-installed"])
def test_the_provider_imports_and_dags_parse_without_importing_openlineage(block: bool) -> None:
    out = _parse_in_child(block)
    # Installed, Airflow's own provider discovery reads the provider's get_provider_info; nothing else of
    # OpenLineage (no client, no extractors, no facets) is imported to parse DAGs.
    discovery = [] if block else ["airflow.providers.openlineage", "airflow.providers.openlineage.get_provider_info"]
    assert out["ol_imported"] == discovery
    assert out["modules"] > 40 and out["errors"] == []
    assert {"orders", "customers", "products", "payments", "dbt_marts"} <= set(out["dags"])
    assert {"IdempotentExtractOperator", "DbtOperator"} <= set(out["lineage_methods"])


@pytest.mark.parametrize("conn_id, table", [
    ("warehouse", "raw.orders"), ("shop_source", "public.customers"), ("wh", TableRef("analytics", "dim_x")),
])
def test_datasets_and_assets_share_one_identity(conn_id: str, table: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.postgres.assets import postgres

    monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)

    asset = table_asset(conn_id, table)  # type: ignore[arg-type]
    ds = table_dataset(conn_id, table)  # type: ignore[arg-type]
    ref = TableRef.parse(table) if isinstance(table, str) else table
    assert ds.namespace == f"postgres://{conn_id}:5432"
    assert ds.name == f"{conn_id}.{ref.schema}.{ref.table}"  # no AIRFLOW_CONN_*: the database is the conn id
    assert dataset_id_of_uri(asset.uri) == ds
    convert = getattr(postgres, "convert_asset_to_openlineage", None)  # postgres provider 6.4+
    if convert is not None:
        provider = convert(asset, None)
        assert (ds.namespace, ds.name) == (provider.namespace, provider.name)


def test_the_dataset_name_is_the_decoded_table_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WH_X", "postgres://u:secret@db1,db2:5432/Ware%20House")
    ds = table_dataset("wh_x", TableRef("Raw Data", "orders/2024.v1"))
    assert ds.namespace == "postgres://wh_x:5432"  # the conn id, not a host: stable across failover
    assert ds.name == "Ware House.Raw Data.orders/2024.v1"
    assert ds.table == TableRef("Raw Data", "orders/2024.v1")
    assert "secret" not in ds.namespace + ds.name
    rel = relation_dataset('"analytics"."Mart"."dim ""x"""', "wh_x")
    assert (rel.namespace, rel.name) == ("postgres://wh_x:5432", 'Ware House.Mart.dim "x"')


def test_query_inputs_fold_unquoted_names_like_postgres() -> None:
    found = sql_tables('select o.*, c.name from Shop.Orders o join "Cust"."Customers" c using (id) '
                       "where o.id in (select id from t3) and exists (select 1 from db2.s.t)")
    assert sorted(found, key=str) == sorted([
        (None, TableRef("shop", "orders")), (None, TableRef("Cust", "Customers")), (None, TableRef("public", "t3")),
        ("db2", TableRef("s", "t"))], key=str)


def test_assertions_name_kind_column_and_query_of_each_check() -> None:
    from openlineage.client.serde import Serde

    from airflow_provider_dataeng.lineage.facets import assertions_facet

    checks = [{"check": "row_count", "min": 1}, {"check": "unique", "columns": ["a", "b"]},
              {"check": "null_fraction", "column": "email", "max": 0.1},
              {"check": "sql", "name": "positive", "sql": "select bool_and(x > 0) from {table}"}]
    results = [{"check": "row_count", "observed": 5, "threshold": ">= 1", "passed": True},
               {"check": "unique(a, b)", "observed": 2, "threshold": "<= 0 duplicate rows", "passed": False},
               {"check": "null_fraction(email)", "observed": 0.0, "threshold": "<= 0.1", "passed": True},
               {"check": "positive", "observed": False, "threshold": "true", "passed": False}]
    facet = json.loads(Serde.to_json(assertions_facet(results, checks)))
    got = {a["name"]: (a["assertion"], a["success"], a.get("column"), a.get("actual"), a.get("expected"))
           for a in facet["assertions"]}
    assert got == {"row_count": ("row_count", True, None, "5", ">= 1"),
                   "unique(a, b)": ("unique", False, None, "2", "<= 0 duplicate rows"),
                   "null_fraction(email)": ("null_fraction", True, "email", "0.0", "<= 0.1"),
                   "positive": ("sql", False, None, "False", "true")}
    assert [a.get("content") for a in facet["assertions"]][-1] == "select bool_and(x > 0) from {table}"
    assert facet["_schemaURL"].endswith("DataQualityAssertionsDatasetFacet")
    assert assertions_facet([], checks) is None


def test_a_failed_quality_task_reports_its_failed_assertions(warehouse_conn_id: str, db: object) -> None:
    """A failed DataQualityOperator has no return value; its lineage still carries every check's outcome."""
    from openlineage.client.serde import Serde

    from airflow_provider_dataeng.lineage.tasks import quality_lineage
    from airflow_provider_dataeng.operators.quality import DataQualityOperator
    from airflow_provider_dataeng.publish.errors import ChecksFailed

    db.execute("create schema mart")
    db.execute("create table mart.q as select g as id from generate_series(1, 3) g")
    op = DataQualityOperator(task_id="q", conn_id=warehouse_conn_id, table="mart.q",
                             checks=[{"check": "row_count", "min": 100}, {"check": "unique", "columns": ["id"]}])
    with pytest.raises(ChecksFailed):
        op.execute({})

    class FailedTry:  # a failed try pushes no return value
        task_id = "q"

        def xcom_pull(self, **kwargs: object) -> None:
            return None

    lineage = quality_lineage(op, FailedTry())
    (table,) = lineage.inputs
    assert table.name.endswith(".mart.q")
    facet = json.loads(Serde.to_json(table.facets["dataQualityAssertions"]))
    assert {(a["assertion"], a["success"], a.get("actual")) for a in facet["assertions"]} == {
        ("row_count", False, "3"), ("unique", True, "0")}
    assert [f.name for f in table.facets["schema"].fields] == ["id"]
