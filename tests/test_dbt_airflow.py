"""dbt under the real scheduler, driven through the REST API (issue 13 item 4): a dbt task marked failed, or
past its ``execution_timeout``, leaves no dbt session in ``pg_stat_activity`` within 10 s, and a rerun
succeeds. In-process dbt (``dbtRunner``, in a child of the warm dbt worker) and the dbt CLI child process are
both covered."""

from __future__ import annotations

import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_dataeng.dbt.workspace import copy_project
from tests.fixtures import dbt_shop
from tests.fixtures.backends import wait_active_query, wait_no_backends
from tests.fixtures.extract import rows_of

pytestmark = pytest.mark.airflow

DBT_SESSIONS = "dbt-%"  # application_name of dbt's database sessions
SLOW_MODEL = "{{ config(materialized='table') }}\nselect pg_sleep({{ var('sleep_s', 0) }}) is not null as slept\n"


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


# in-process dbt runs in a child of the warm dbt worker (the stack runs the LocalExecutor): on_kill and the
# timeout must stop that child too
@pytest.mark.parametrize(("how", "use_subprocess"), [("marked_failed", True), ("execution_timeout", False),
                                                     ("marked_failed", False)])
def test_a_killed_dbt_task_leaves_no_session_and_a_rerun_succeeds(how, use_subprocess, airflow_stack, pg_cluster,
                                                                  pg_db, tmp_path: Path) -> None:
    stack = airflow_stack
    project = copy_project(dbt_shop.PROJECT_DIR, tmp_path / "project")
    (project / "models" / "slow").mkdir()
    (project / "models" / "slow" / "slow_sleep.sql").write_text(SLOW_MODEL)
    conn_id = stack.add_postgres_connection(pg_cluster, pg_db, "dbt")
    dag_id = f"dbt_kill_{how}_{uuid.uuid4().hex[:6]}"
    extra = {"execution_timeout": "timedelta(seconds=45)"} if how == "execution_timeout" else {}
    stack.add_dag_file(f"{dag_id}.py", _dag_source(dag_id, conn_id, project, use_subprocess=use_subprocess, **extra))
    stack.wait_dag(dag_id)

    long_run = stack.trigger(dag_id, conf={"sleep_s": 600})
    wait_active_query(pg_cluster, pg_db, "pg_sleep", timeout=180, application_like=DBT_SESSIONS)
    if how == "marked_failed":
        resp = stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{long_run}/taskInstances/dbt", json={"new_state": "failed"})
        assert resp.status_code == 200, resp.text
        took = wait_no_backends([(pg_cluster, pg_db)], time.monotonic(), 10, DBT_SESSIONS)
        assert stack.wait_run(dag_id, long_run, timeout=60) == "failed"
    else:
        try:
            wait_no_backends([(pg_cluster, pg_db)], time.monotonic(), 120, DBT_SESSIONS)
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
    if not use_subprocess:  # the LocalExecutor's task ran dbt in a child of the warm dbt worker
        assert "dbt runs in warm worker process" in log, log
    print(f"{how}: no dbt session left {took:.1f}s after the kill")

    rerun = stack.trigger(dag_id)  # sleep_s 0
    assert stack.wait_run(dag_id, rerun, timeout=300) == "success", stack.report(dag_id, rerun)
    assert rows_of(pg_cluster, pg_db, "select slept from analytics.slow_sleep") == [(True,)]


def _render_dag_source(dag_id: str, conn_id: str, select: list[str]) -> str:
    return textwrap.dedent(f'''\
        from datetime import datetime, timezone

        from airflow.sdk import DAG

        from airflow_provider_dataeng.dbt.render import render_dbt
        from airflow_provider_dataeng.dbt.spec import DbtRenderSpec
        from airflow_provider_dataeng.factory.builder import build_rendered

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                 default_args={{"retries": 0}}, max_active_tasks=8):
            build_rendered(render_dbt("dbt", DbtRenderSpec(project_dir={str(dbt_shop.PROJECT_DIR)!r},
                                                           conn_id={conn_id!r}, select={select!r})))
        ''')


def _lock_waiters(cluster, dbname: str, holder_pid: int) -> int:
    return rows_of(cluster, dbname, "select count(*) from pg_stat_activity where datname = current_database()"
                                    f" and wait_event_type = 'Lock' and pid <> {int(holder_pid)}")[0][0]


def test_parallel_model_tasks_create_their_shared_schema_once(airflow_stack, pg_cluster, pg_db) -> None:
    """Issue 13: the four staging model tasks start together on a database without ``analytics_staging``
    while another session is creating that schema (the race's losing interleaving, held open by the test).
    Every task must succeed on its first try once that session commits (no retry, no failure)."""
    import psycopg

    stack = airflow_stack
    dbt_shop.create_raw_tables(pg_cluster, pg_db)
    conn_id = stack.add_postgres_connection(pg_cluster, pg_db, "dbt")
    dag_id = f"dbt_parallel_schema_{uuid.uuid4().hex[:6]}"
    stack.add_dag_file(f"{dag_id}.py", _render_dag_source(dag_id, conn_id, ["tag:staging"]))
    stack.wait_dag(dag_id)

    with psycopg.connect(pg_cluster.dsn(pg_db)) as holder:  # a transaction: the schema stays uncommitted
        holder.execute("create schema analytics_staging")
        holder_pid = holder.info.backend_pid
        run_id = stack.trigger(dag_id)
        deadline, waiting, most = time.monotonic() + 240, 0, 0
        settle = deadline
        while time.monotonic() < deadline and waiting < 4:  # the model tasks block on the schema
            if most >= 2 and time.monotonic() > settle:
                break  # several at once, and no more within 20 s (the executor's slots are taken)
            state = stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
            assert state in ("queued", "running"), stack.report(dag_id, run_id)
            waiting = _lock_waiters(pg_cluster, pg_db, holder_pid)
            if waiting > most:
                most, settle = waiting, time.monotonic() + 20
            time.sleep(0.5)
        waiting = most
        assert waiting >= 2, f"only {waiting} task(s) ever waited on the schema at once: no concurrency shown"
        holder.commit()

    assert stack.wait_run(dag_id, run_id, timeout=300) == "success", stack.report(dag_id, run_id)
    tis = [t for t in stack.task_instances(dag_id, run_id) if t["task_id"].startswith("dbt.")]
    assert sorted(t["task_id"] for t in tis) == ["dbt.stg_customers", "dbt.stg_orders", "dbt.stg_payments",
                                                  "dbt.stg_products"]
    assert {(t["state"], t["try_number"]) for t in tis} == {("success", 1)}
    views = rows_of(pg_cluster, pg_db, "select table_name from information_schema.views"
                                       " where table_schema = 'analytics_staging' order by 1")
    assert [v for (v,) in views] == ["stg_customers", "stg_orders", "stg_payments", "stg_products"]
    print(f"{waiting} model tasks waited on analytics_staging at once; all succeeded on try 1")


def _freshness_dag_source(dag_id: str, conn_id: str) -> str:
    return textwrap.dedent(f'''\
        from datetime import datetime, timezone

        from airflow.sdk import DAG

        from airflow_provider_dataeng.dbt.render import render_dbt
        from airflow_provider_dataeng.dbt.spec import DbtRenderSpec
        from airflow_provider_dataeng.factory.builder import build_rendered

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                 default_args={{"retries": 0}}, max_active_runs=1):
            build_rendered(render_dbt("dbt", DbtRenderSpec(
                project_dir={str(dbt_shop.PROJECT_DIR)!r}, conn_id={conn_id!r},
                select=["stg_orders", "stg_customers"],
                source_freshness={{"deferrable": True, "poke_interval": "2s", "timeout": "45s"}})))
        ''')


def exec_sql(cluster, dbname: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(cluster.dsn(dbname), autocommit=True) as conn:
        conn.execute(statement)


def _ti_states(stack, dag_id: str, run_id: str) -> dict[str, str | None]:
    return {t["task_id"].split(".", 1)[-1]: t["state"] for t in stack.task_instances(dag_id, run_id)}


def _wait_ti(stack, dag_id: str, run_id: str, task: str, state: str, timeout: float = 240) -> dict[str, str | None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = _ti_states(stack, dag_id, run_id)
        if states.get(task) == state:
            return states
        assert states.get(task) not in ("success", "failed", "upstream_failed"), (task, states)
        time.sleep(0.5)
    raise AssertionError(f"{task} never reached {state}: {_ti_states(stack, dag_id, run_id)}\n"
                         f"{stack.report(dag_id, run_id)}")


def test_source_freshness_sensors_defer_in_the_triggerer_and_gate_the_models_reading_them(
        airflow_stack, pg_cluster, pg_db) -> None:
    """Issue 16 item 4 under the real scheduler and triggerer: thresholds from sources.yml (warn 50 h, error
    72 h on ``_interval_start``). raw.orders is stale (2024 rows): its sensor is ``deferred`` and
    ``stg_orders`` waits; a fresh partition lands and the sensor completes, then ``stg_orders`` builds it.
    raw.customers is 60 h old: a warning, its model runs. Stale again: the sensor fails at its timeout
    with the observed lag, and ``stg_orders`` does not run."""
    stack = airflow_stack
    dbt_shop.create_raw_tables(pg_cluster, pg_db)
    exec_sql(pg_cluster, pg_db, "insert into raw.customers values (9, 'Late', 'late@example.com', 'DE', now(), now(),"
                                " now() - interval '60 hours')")
    conn_id = stack.add_postgres_connection(pg_cluster, pg_db, "dbt")
    dag_id = f"dbt_source_freshness_{uuid.uuid4().hex[:6]}"
    stack.add_dag_file(f"{dag_id}.py", _freshness_dag_source(dag_id, conn_id))
    stack.wait_dag(dag_id)

    run_id = stack.trigger(dag_id)
    states = _wait_ti(stack, dag_id, run_id, "freshness__raw__orders", "deferred")
    assert states["stg_orders"] in (None, "scheduled", "queued", "none"), states  # gated by its sensor
    exec_sql(pg_cluster, pg_db, "insert into raw.orders values (9, 1, 'paid', 9.00, now(), now(), 'fresh', now())")
    assert stack.wait_run(dag_id, run_id, timeout=300) == "success", stack.report(dag_id, run_id)
    tis = {t["task_id"].split(".", 1)[-1]: t for t in stack.task_instances(dag_id, run_id)}
    assert {k: (t["state"], t["try_number"]) for k, t in tis.items()} == {
        "freshness__raw__orders": ("success", 1), "freshness__raw__customers": ("success", 1),
        "stg_orders": ("success", 1), "stg_customers": ("success", 1)}
    orders_log = stack.task_log(dag_id, run_id, "dbt.freshness__raw__orders")
    assert "Pausing task as DEFERRED" in orders_log and "Freshness SLA breached" not in orders_log, orders_log[-3000:]
    assert "raw.orders is fresh" in orders_log, orders_log[-3000:]
    assert "Freshness warning" in stack.task_log(dag_id, run_id, "dbt.freshness__raw__customers")
    assert rows_of(pg_cluster, pg_db, "select note from analytics_staging.stg_orders where order_id = 9") == \
        [("fresh",)]

    exec_sql(pg_cluster, pg_db, "delete from raw.orders where id = 9")
    stale_run = stack.trigger(dag_id)
    _wait_ti(stack, dag_id, stale_run, "freshness__raw__orders", "deferred")
    assert stack.wait_run(dag_id, stale_run, timeout=300) == "failed"
    assert _ti_states(stack, dag_id, stale_run) == {
        "freshness__raw__orders": "failed", "freshness__raw__customers": "success",
        "stg_orders": "upstream_failed", "stg_customers": "success"}
    log = stack.task_log(dag_id, stale_run, "dbt.freshness__raw__orders")
    assert "Freshness SLA breached" in log and "exceeds error_after 3d" in log, log[-3000:]
