"""The extract under the real scheduler, driven through the REST API as a user would (issue 13 items 3 and 4).

- A run without a data interval (the UI's Trigger button: no logical date) extracts the DAG's last complete
  interval; a run with ``interval_start``/``interval_end`` in its conf extracts that one; the log says which.
- A long extract marked failed through the API, and one that hits ``execution_timeout``, leave no backend on
  the source or the warehouse within 10 s (libpq cancel from ``on_kill``), the live partition intact, and a
  rerun succeeds.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.fixtures.extract import fingerprint, rows_of

pytestmark = pytest.mark.airflow

UTC = timezone.utc
CONF_INTERVAL = {"interval_start": "2024-01-01T00:00:00+00:00", "interval_end": "2024-01-02T00:00:00+00:00"}
D1 = datetime(2024, 1, 1, tzinfo=UTC)


def _add_connection(stack, cluster, dbname: str) -> str:
    conn_id = f"x_{uuid.uuid4().hex[:10]}"
    resp = stack.api("POST", "/connections", json={
        "connection_id": conn_id, "conn_type": "postgres", "host": cluster.host, "port": cluster.port,
        "login": "postgres", "schema": dbname})
    assert resp.status_code in (200, 201), resp.text
    return conn_id


def _dag_source(dag_id: str, source_conn: str, target_conn: str, source_sql: str, **extra: str) -> str:
    options = "".join(f"        {k}={v},\n" for k, v in extra.items())
    return textwrap.dedent(f'''\
        from datetime import datetime, timedelta, timezone

        from airflow.sdk import DAG, CronDataIntervalTimetable

        from airflow_provider_dataeng.operators.extract import IdempotentExtractOperator

        # start_date in the future: the scheduler creates no run of its own; only the test's triggers run
        with DAG({dag_id!r}, schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
                 start_date=datetime(2100, 1, 1, tzinfo=timezone.utc), catchup=False,
                 default_args={{"retries": 0}}):
            IdempotentExtractOperator(
                task_id="extract",
                source_conn_id={source_conn!r},
                target_conn_id={target_conn!r},
                source_sql={source_sql!r},
                target_table="raw.orders",
        ''') + options + "        )\n"


@pytest.fixture
def stack_env(airflow_stack, source_cluster, source_db, pg_cluster, pg_db):
    source_cluster.psql(
        """create table orders (id int primary key, note text, updated_at timestamptz not null);
           create table knobs (delay float8 not null); insert into knobs values (0);
           create function slow(d float8) returns boolean language plpgsql volatile as
             $$ begin if d > 0 then perform pg_sleep(d); end if; return true; end $$;""",
        source_db)
    return {
        "stack": airflow_stack,
        "src": _add_connection(airflow_stack, source_cluster, source_db),
        "wh": _add_connection(airflow_stack, pg_cluster, pg_db),
    }


def _ledger(pg_cluster, pg_db, run_id: str) -> list[tuple]:
    return rows_of(pg_cluster, pg_db, "select status, partition_start, partition_end, rows from dataeng.load_ledger"
                                      f" where run_id = '{run_id}' order by id")


def test_manual_runs_take_the_last_complete_interval_or_the_conf(stack_env, source_cluster, source_db, pg_cluster,
                                                                 pg_db):
    stack = stack_env["stack"]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    source_cluster.psql(
        f"""insert into orders values
            (1, 'two days ago', '{(yesterday - timedelta(hours=1)).isoformat()}'),
            (2, 'yesterday', '{(yesterday + timedelta(hours=1)).isoformat()}'),
            (3, 'yesterday', '{(today - timedelta(seconds=1)).isoformat()}'),
            (4, 'conf day', '2024-01-01 12:00+00')""", source_db)
    dag_id = f"extract_manual_{uuid.uuid4().hex[:8]}"
    stack.add_dag_file(f"{dag_id}.py", _dag_source(
        dag_id, stack_env["src"], stack_env["wh"], "select id, note, updated_at from orders",
        mode='"incremental_timestamp"', lag='"0s"'))
    stack.wait_dag(dag_id)

    run_id = stack.trigger(dag_id)  # the UI's Trigger button: no logical date
    assert stack.wait_run(dag_id, run_id, timeout=180) == "success", stack.task_log(dag_id, run_id, "extract")
    log = stack.task_log(dag_id, run_id, "extract")
    assert f"Interval [{yesterday.isoformat()}, {today.isoformat()}): the DAG's last complete interval" in log, log
    assert _ledger(pg_cluster, pg_db, run_id) == [("published", yesterday, today, 2)]
    assert rows_of(pg_cluster, pg_db, "select id from raw.orders where _interval_start = "
                                      f"'{yesterday.isoformat()}' order by id") == [(2,), (3,)]

    run_id = stack.trigger(dag_id, conf=CONF_INTERVAL)
    assert stack.wait_run(dag_id, run_id, timeout=180) == "success", stack.task_log(dag_id, run_id, "extract")
    log = stack.task_log(dag_id, run_id, "extract")
    assert "Interval [2024-01-01T00:00:00+00:00, 2024-01-02T00:00:00+00:00): interval from the run's conf" in log
    assert _ledger(pg_cluster, pg_db, run_id) == [("published", D1, D1 + timedelta(days=1), 1)]


def _backends(cluster, dbname: str) -> list[tuple]:
    return rows_of(cluster, dbname, "select pid, application_name, state, left(query, 300) from pg_stat_activity"
                                    " where datname = current_database() and pid <> pg_backend_pid()")


def _wait_running_query(cluster, dbname: str, needle: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(state == "active" and needle in (q or "") for _, _, state, q in _backends(cluster, dbname)):
            return
        time.sleep(0.5)
    raise AssertionError(f"no active query with {needle!r} on {dbname}: {_backends(cluster, dbname)}")


def _wait_no_backends(clusters: list[tuple], since: float, limit: float = 10.0) -> float:
    """Seconds from ``since`` until neither database has a backend of the task; fails after ``limit``."""
    while True:
        left = {db: _backends(c, db) for c, db in clusters}
        if not any(left.values()):
            return time.monotonic() - since
        if time.monotonic() - since > limit:
            raise AssertionError(f"backends still there {limit}s after the kill: {left}")
        time.sleep(0.2)


@pytest.mark.parametrize("how", ["marked_failed", "execution_timeout"])
def test_killed_extract_leaves_no_backend_and_live_data_intact(how, stack_env, source_cluster, source_db,
                                                               pg_cluster, pg_db):
    stack = stack_env["stack"]
    source_cluster.psql("insert into orders select g, 'n' || g, '2024-01-01 06:00+00' from generate_series(1, 500) g",
                        source_db)
    dag_id = f"extract_kill_{how}_{uuid.uuid4().hex[:6]}"
    extra = {"execution_timeout": "timedelta(seconds=20)"} if how == "execution_timeout" else {}
    stack.add_dag_file(f"{dag_id}.py", _dag_source(
        dag_id, stack_env["src"], stack_env["wh"],
        "select o.* from orders o where slow((select delay from knobs))", **extra))
    stack.wait_dag(dag_id)
    part = f"select id, note from raw.orders where _interval_start = '{D1.isoformat()}'"

    first = stack.trigger(dag_id, conf=CONF_INTERVAL)
    assert stack.wait_run(dag_id, first, timeout=180) == "success", stack.task_log(dag_id, first, "extract")
    live = fingerprint(pg_cluster, pg_db, part)
    assert live[0] == 500

    source_cluster.psql("update knobs set delay = 1; update orders set note = note || ' v2'", source_db)
    long_run = stack.trigger(dag_id, conf=CONF_INTERVAL)
    _wait_running_query(source_cluster, source_db, "slow(")
    if how == "marked_failed":
        resp = stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{long_run}/taskInstances/extract",
                         json={"new_state": "failed"})
        assert resp.status_code == 200, resp.text
        since = time.monotonic()
        took = _wait_no_backends([(source_cluster, source_db), (pg_cluster, pg_db)], since)
        assert stack.wait_run(dag_id, long_run, timeout=60) == "failed"
    else:
        # measured from the timeout itself: the task instance's start + execution_timeout
        _wait_no_backends([(source_cluster, source_db), (pg_cluster, pg_db)], time.monotonic(), limit=90)
        gone_at = datetime.now(UTC)
        assert stack.wait_run(dag_id, long_run, timeout=60) == "failed"
        (ti,) = [t for t in stack.task_instances(dag_id, long_run) if t["task_id"] == "extract"]
        timeout_at = datetime.fromisoformat(ti["start_date"].replace("Z", "+00:00")) + timedelta(seconds=20)
        took = (gone_at - timeout_at).total_seconds()
        assert took <= 10, f"backends left {took:.1f}s after the execution_timeout"
        log = stack.task_log(dag_id, long_run, "extract")
        assert "Timeout" in log or "timeout" in log, log
    print(f"{how}: no backend left {took:.1f}s after the kill")
    # the live partition is the first load, untouched; no staging table is left behind
    assert fingerprint(pg_cluster, pg_db, part) == live
    assert rows_of(pg_cluster, pg_db, "select count(*) from pg_class where relname like '%staging%'") == [(0,)]

    source_cluster.psql("update knobs set delay = 0", source_db)
    rerun = stack.trigger(dag_id, conf=CONF_INTERVAL)
    assert stack.wait_run(dag_id, rerun, timeout=180) == "success", stack.task_log(dag_id, rerun, "extract")
    assert rows_of(pg_cluster, pg_db, f"select count(*) from ({part}) p where note like '% v2'") == [(500,)]
    assert [r[0] for r in _ledger(pg_cluster, pg_db, rerun)] == ["published"]
