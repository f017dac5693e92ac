"""Publish and quality tasks killed under the real scheduler (issue 13 item 4), driven through the REST API.

A publish whose SELECT is running, and a quality check whose query is running, are marked failed through the
API: ``on_kill`` cancels the statement on the server (libpq cancel), so no backend of theirs is left within
10 s, the live table is intact, no staging table is left, and a rerun succeeds.
"""

from __future__ import annotations

import textwrap
import time
import uuid

import pytest

from tests.fixtures.extract import fingerprint, rows_of

pytest.importorskip("devstack.airflow_stack", reason="the real-Airflow stack (devstack) is not there yet")
pytestmark = pytest.mark.airflow


def _dag_source(dag_id: str, conn_id: str) -> str:
    return textwrap.dedent(f'''\
        from datetime import datetime, timezone

        from airflow.sdk import DAG

        from airflow_provider_dataeng.operators.publish import StagingSwapOperator
        from airflow_provider_dataeng.operators.quality import DataQualityOperator

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc), catchup=False,
                 default_args={{"retries": 0}}):
            StagingSwapOperator(
                task_id="publish", conn_id={conn_id!r}, target_table="mart.totals",
                select_sql="select g as id, 'v' || g as v from generate_series(1, 100) g where slow('publish')",
                checks=[{{"check": "row_count", "min": 100}}],
            ) >> DataQualityOperator(
                task_id="quality", conn_id={conn_id!r}, table="mart.totals",
                checks=[{{"check": "sql", "name": "slow_check", "sql": "select slow('check') from {{table}} limit 1"}}],
            )
        ''')


def _backends(cluster, dbname: str) -> list[tuple]:
    return rows_of(cluster, dbname, "select pid, application_name, state, left(query, 300) from pg_stat_activity"
                                    " where datname = current_database() and pid <> pg_backend_pid()")


def _kill_while_running(stack, cluster, dbname: str, dag_id: str, run_id: str, task_id: str) -> float:
    deadline = time.monotonic() + 120
    while not any(state == "active" and "slow(" in (q or "") for _, _, state, q in _backends(cluster, dbname)):
        assert time.monotonic() < deadline, f"{task_id} never ran its query: {_backends(cluster, dbname)}"
        time.sleep(0.5)
    resp = stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json={"new_state": "failed"})
    assert resp.status_code == 200, resp.text
    since = time.monotonic()
    while left := _backends(cluster, dbname):
        assert time.monotonic() - since <= 10, f"backends still there 10s after the kill: {left}"
        time.sleep(0.2)
    return time.monotonic() - since


def test_killed_publish_and_quality_tasks_leave_no_backend_and_live_data_intact(airflow_stack, pg_cluster, pg_db):
    stack = airflow_stack
    pg_cluster.psql("""create table knobs (task text primary key, delay float8 not null);
                       insert into knobs values ('publish', 0), ('check', 0);
                       create function slow(t text) returns boolean language plpgsql volatile as
                         $$ declare d float8; begin select delay into d from public.knobs where task = t;
                            if d > 0 then perform pg_sleep(d); end if; return true; end $$;""", pg_db)
    conn_id = f"p_{uuid.uuid4().hex[:10]}"
    resp = stack.api("POST", "/connections", json={
        "connection_id": conn_id, "conn_type": "postgres", "host": pg_cluster.host, "port": pg_cluster.port,
        "login": "postgres", "schema": pg_db})
    assert resp.status_code in (200, 201), resp.text
    dag_id = f"publish_kill_{uuid.uuid4().hex[:6]}"
    stack.add_dag_file(f"{dag_id}.py", _dag_source(dag_id, conn_id))
    stack.wait_dag(dag_id)

    first = stack.trigger(dag_id)
    assert stack.wait_run(dag_id, first, timeout=180) == "success", stack.task_log(dag_id, first, "publish")
    live = fingerprint(pg_cluster, pg_db, "select id, v from mart.totals")
    assert live[0] == 100

    pg_cluster.psql("update knobs set delay = 60 where task = 'publish'", pg_db)  # its SELECT runs a minute
    long_run = stack.trigger(dag_id)
    took = _kill_while_running(stack, pg_cluster, pg_db, dag_id, long_run, "publish")
    print(f"publish: no backend left {took:.1f}s after it was marked failed")
    assert stack.wait_run(dag_id, long_run, timeout=60) == "failed"
    assert fingerprint(pg_cluster, pg_db, "select id, v from mart.totals") == live
    assert rows_of(pg_cluster, pg_db, "select count(*) from pg_class where relname like '%staging%'") == [(0,)]
    statuses = rows_of(pg_cluster, pg_db, f"select status from dataeng.load_ledger where run_id = '{long_run}'")
    assert set(statuses) <= {("failed",)}  # never 'published'; 'failed' when the task lived to write it

    # The quality task: the publish is fast again, the check is slow.
    pg_cluster.psql("update knobs set delay = case task when 'check' then 60 else 0 end", pg_db)
    quality_run = stack.trigger(dag_id)
    took = _kill_while_running(stack, pg_cluster, pg_db, dag_id, quality_run, "quality")
    print(f"quality: no backend left {took:.1f}s after it was marked failed")
    assert stack.wait_run(dag_id, quality_run, timeout=60) == "failed"

    pg_cluster.psql("update knobs set delay = 0", pg_db)
    rerun = stack.trigger(dag_id)
    assert stack.wait_run(dag_id, rerun, timeout=180) == "success", stack.task_log(dag_id, rerun, "quality")
    assert fingerprint(pg_cluster, pg_db, "select id, v from mart.totals")[0] == 100
