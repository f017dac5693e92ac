"""dbt under the real scheduler, driven through the REST API (issue 13 item 4): a dbt task marked failed, or
past its ``execution_timeout``, leaves no dbt session in ``pg_stat_activity`` within 10 s, and a rerun
succeeds. In-process dbt (``dbtRunner``) and the dbt CLI child process are both covered."""

from __future__ import annotations

import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_dataeng.dbt.workspace import copy_project
from tests.fixtures import dbt_shop
from tests.fixtures.extract import rows_of

pytestmark = pytest.mark.airflow

SLOW_MODEL = "{{ config(materialized='table') }}\nselect pg_sleep({{ var('sleep_s', 0) }}) is not null as slept\n"


def _add_connection(stack, cluster, dbname: str) -> str:
    conn_id = f"dbt_{uuid.uuid4().hex[:10]}"
    resp = stack.api("POST", "/connections", json={
        "connection_id": conn_id, "conn_type": "postgres", "host": cluster.host, "port": cluster.port,
        "login": "postgres", "schema": dbname})
    assert resp.status_code in (200, 201), resp.text
    return conn_id


def _dag_source(dag_id: str, conn_id: str, project: Path, *, use_subprocess: bool, **extra: str) -> str:
    options = "".join(f"        {k}={v},\n" for k, v in extra.items())
    return textwrap.dedent(f'''\
        from datetime import datetime, timedelta, timezone

        from airflow.sdk import DAG

        from airflow_provider_dataeng.operators.dbt import DbtOperator

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                 default_args={{"retries": 0}}):
            DbtOperator(
                task_id="dbt",
                conn_id={conn_id!r},
                project_dir={str(project)!r},
                command="run",
                select="slow_sleep",
                vars={{"sleep_s": "{{{{ dag_run.conf.get('sleep_s', 0) }}}}"}},
                use_subprocess={use_subprocess!r},
        ''') + options + "        )\n"


def _dbt_backends(cluster, dbname: str) -> list[tuple]:
    return rows_of(cluster, dbname, "select pid, application_name, state, query from pg_stat_activity"
                                    " where datname = current_database() and application_name like 'dbt-%'")


def _wait_sleeping(cluster, dbname: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(state == "active" and "pg_sleep" in (q or "") for _, _, state, q in _dbt_backends(cluster, dbname)):
            return
        time.sleep(0.5)
    raise AssertionError(f"dbt never ran pg_sleep on {dbname}: {_dbt_backends(cluster, dbname)}")


def _wait_gone(cluster, dbname: str, since: float, limit: float) -> float:
    while True:
        left = _dbt_backends(cluster, dbname)
        if not left:
            return time.monotonic() - since
        if time.monotonic() - since > limit:
            raise AssertionError(f"dbt sessions still there {limit}s after the kill: {left}")
        time.sleep(0.2)


@pytest.mark.parametrize(("how", "use_subprocess"), [("marked_failed", True), ("execution_timeout", False)])
def test_a_killed_dbt_task_leaves_no_session_and_a_rerun_succeeds(how, use_subprocess, airflow_stack, pg_cluster,
                                                                  pg_db, tmp_path: Path) -> None:
    stack = airflow_stack
    project = copy_project(dbt_shop.PROJECT_DIR, tmp_path / "project")
    (project / "models" / "slow").mkdir()
    (project / "models" / "slow" / "slow_sleep.sql").write_text(SLOW_MODEL)
    conn_id = _add_connection(stack, pg_cluster, pg_db)
    dag_id = f"dbt_kill_{how}_{uuid.uuid4().hex[:6]}"
    extra = {"execution_timeout": "timedelta(seconds=45)"} if how == "execution_timeout" else {}
    stack.add_dag_file(f"{dag_id}.py", _dag_source(dag_id, conn_id, project, use_subprocess=use_subprocess, **extra))
    stack.wait_dag(dag_id)

    long_run = stack.trigger(dag_id, conf={"sleep_s": 600})
    _wait_sleeping(pg_cluster, pg_db)
    if how == "marked_failed":
        resp = stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{long_run}/taskInstances/dbt", json={"new_state": "failed"})
        assert resp.status_code == 200, resp.text
        took = _wait_gone(pg_cluster, pg_db, time.monotonic(), 10)
        assert stack.wait_run(dag_id, long_run, timeout=60) == "failed"
    else:
        try:
            _wait_gone(pg_cluster, pg_db, time.monotonic(), 120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stack.report(dag_id, long_run, lines=80)}") from None
        gone_at = datetime.now(UTC)
        assert stack.wait_run(dag_id, long_run, timeout=60) == "failed"
        (ti,) = [t for t in stack.task_instances(dag_id, long_run) if t["task_id"] == "dbt"]
        timeout_at = datetime.fromisoformat(ti["start_date"].replace("Z", "+00:00")) + timedelta(seconds=45)
        took = (gone_at - timeout_at).total_seconds()
        assert took <= 10, f"dbt sessions left {took:.1f}s after the execution_timeout"
    log = stack.task_log(dag_id, long_run, "dbt")
    assert "database session(s) of dbt" in log or "Stopping dbt" in log, log
    print(f"{how}: no dbt session left {took:.1f}s after the kill")

    rerun = stack.trigger(dag_id)  # sleep_s 0
    assert stack.wait_run(dag_id, rerun, timeout=300) == "success", stack.report(dag_id, rerun)
    assert rows_of(pg_cluster, pg_db, "select slept from analytics.slow_sleep") == [(True,)]
