"""dbt is an optional extra: without dbt importable the provider imports, the example DAGs parse, and a dbt
task runs a dbt executable installed elsewhere (``dbt_executable_path``), all in a child interpreter where
every ``dbt*`` import fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from devstack.airflow_env import REPO_ROOT, register_cluster_connection, unregister_connection
from tests.fixtures import dbt_shop

# Installed first in the child: any import of dbt, dbt_common, dbt_adapters, dbt_semantic_interfaces... fails.
BLOCK_DBT = """
import sys, importlib.abc
class _NoDbt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].startswith("dbt"):
            raise ImportError(f"No module named {name!r} (dbt is not installed here)")
        return None
sys.meta_path.insert(0, _NoDbt())
"""

PARSE_WITHOUT_DBT = """
import json, pkgutil, importlib
import airflow_provider_dataeng
modules = [m.name for m in pkgutil.walk_packages(airflow_provider_dataeng.__path__, "airflow_provider_dataeng.")]
for name in modules:
    importlib.import_module(name)
import runpy
dags = {{k[5:]: v for k, v in runpy.run_path({dag_file!r}).items() if k.startswith("dag__")}}
print(json.dumps({{
    "modules": len(modules),
    "dags": sorted(dags),
    "errors": sorted(d for d, dag in dags.items() if "config-error" in (dag.tags or ())),
    "dbt_tasks": sorted(t.task_id for t in dags["dbt_marts"].tasks),
    "dbt_imported": sorted(m for m in sys.modules if m.split(".")[0].startswith("dbt")),
}}))
"""

RUN_WITHOUT_DBT = """
import json, sys
from datetime import datetime, timezone
from pathlib import Path
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_dataeng.dbt.runner import DbtRunner
from airflow_provider_dataeng.operators.dbt import DbtOperator
from devstack.airflow_env import run_dag

out = {{}}
try:  # in-process dbt is impossible here: a clear error, not an ImportError deep in a stack
    DbtRunner({conn!r}, {project!r}).run("run", run_dir=Path({tmp!r}) / "in-process", select="stg_products")
except RuntimeError as exc:
    out["in_process_error"] = str(exc)
with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)) as dag:
    DbtOperator(task_id="products", conn_id={conn!r}, project_dir={project!r}, command="build",
                select=["stg_products", "dim_products"], dbt_executable_path={dbt!r}, state_dir={tmp!r})
out["states"] = run_dag(dag, logical_date=datetime(2024, 1, 5, tzinfo=timezone.utc))
out["dbt_imported"] = sorted(m for m in sys.modules if m.split(".")[0].startswith("dbt"))
print(json.dumps(out))
"""


def _child(code: str, extra_env: dict[str, str] | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(extra_env or {})}
    proc = subprocess.run([sys.executable, "-c", BLOCK_DBT + code], env=env, capture_output=True, text=True, timeout=600,
                          cwd=str(REPO_ROOT))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_provider_imports_and_the_example_dags_parse_without_dbt() -> None:
    out = _child(PARSE_WITHOUT_DBT.format(dag_file=str(REPO_ROOT / "dags" / "dataeng_dags.py")))
    assert out["dbt_imported"] == []
    assert out["modules"] > 40
    assert out["errors"] == []
    assert {"orders", "customers", "products", "payments", "dbt_marts"} <= set(out["dags"])
    assert "dbt.stg_orders" in out["dbt_tasks"] and "dbt.daily_revenue" in out["dbt_tasks"]


@pytest.mark.slow
def test_a_dbt_task_runs_a_dbt_from_another_environment_when_dbt_is_not_importable(pg_cluster, tmp_path: Path) -> None:
    dbname = f"dbt_venv_{uuid.uuid4().hex[:8]}"
    conn_id = f"dbt_venv_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(dbname)
    dbt_shop.create_raw_tables(pg_cluster, dbname)
    register_cluster_connection(conn_id, pg_cluster, dbname)
    try:
        dbt = Path(sys.executable).with_name("dbt")  # its own interpreter process, outside the blocked one
        out = _child(RUN_WITHOUT_DBT.format(conn=conn_id, project=str(dbt_shop.PROJECT_DIR), tmp=str(tmp_path),
                                            dag_id=f"dbt_no_import_{uuid.uuid4().hex[:6]}", dbt=str(dbt)))
        assert "install airflow-provider-dataeng[dbt], or set dbt_executable_path" in out["in_process_error"]
        assert out["states"] == {"products": "success"}
        assert out["dbt_imported"] == []
        assert dbt_shop.query(pg_cluster, dbname, "select count(*) from analytics.dim_products") == [(2,)]
    finally:
        unregister_connection(conn_id)
        pg_cluster.drop_database(dbname)
