"""The extract under the real scheduler, driven through the REST API as a user would (issue 13 items 3, 4, 5).

- A run without a data interval (the UI's Trigger button: no logical date) extracts the DAG's last complete
  interval; a run with ``interval_start``/``interval_end`` in its conf extracts that one; the log says which.
- A long extract marked failed through the API, and one that hits ``execution_timeout``, leave no backend on
  the source or the warehouse within 10 s (libpq cancel from ``on_kill``), the live partition intact, and a
  rerun succeeds.
- A pipeline config's retries: a first try that fails (its source table appears later) is retried by the
  scheduler after the configured delay and succeeds; the UI's Clear on the finished run (REST API) reruns it
  idempotently: the same rows, a second ledger row.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.fixtures.backends import wait_active_query, wait_no_backends
from tests.fixtures.extract import fingerprint, rows_of

pytestmark = pytest.mark.airflow

UTC = timezone.utc
CONF_INTERVAL = {"interval_start": "2024-01-01T00:00:00+00:00", "interval_end": "2024-01-02T00:00:00+00:00"}
D1 = datetime(2024, 1, 1, tzinfo=UTC)


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
        "src": airflow_stack.add_postgres_connection(source_cluster, source_db, "x"),
        "wh": airflow_stack.add_postgres_connection(pg_cluster, pg_db, "x"),
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
    wait_active_query(source_cluster, source_db, "slow(")
    if how == "marked_failed":
        resp = stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{long_run}/taskInstances/extract",
                         json={"new_state": "failed"})
        assert resp.status_code == 200, resp.text
        since = time.monotonic()
        took = wait_no_backends([(source_cluster, source_db), (pg_cluster, pg_db)], since)
        assert stack.wait_run(dag_id, long_run, timeout=60) == "failed"
    else:
        # measured from the timeout itself: the task instance's start + execution_timeout
        wait_no_backends([(source_cluster, source_db), (pg_cluster, pg_db)], time.monotonic(), limit=90)
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


# -- retries and clearing (issue 13 item 5) -------------------------------------------------------------------
RETRY_DELAY_S = 6


def _tries(stack, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    """Every try of the task as the API keeps them (the UI's try history), oldest first."""
    resp = stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
    assert resp.status_code == 200, resp.text
    return sorted(resp.json()["task_instances"], key=lambda t: t["try_number"])


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_failed_try_is_retried_with_the_configured_backoff_and_a_cleared_run_reruns_idempotently(
        stack_env, source_cluster, source_db, pg_cluster, pg_db):
    """A pipeline config's ``retries``/``retry_delay``/``retry_exponential_backoff`` under the real scheduler:
    the first try fails (its source table does not exist yet), the scheduler retries it no sooner than the
    configured delay and the second try succeeds; the UI's Clear on the finished run (REST API) runs it again
    with the same rows in the partition and a second ledger row."""
    stack = stack_env["stack"]
    dag_id = f"extract_retry_{uuid.uuid4().hex[:8]}"
    config_dir = Path(stack.home) / "retry_configs" / dag_id  # readable by the Airflow components
    config_dir.mkdir(parents=True)
    (config_dir / f"{dag_id}.yaml").write_text(textwrap.dedent(f"""\
        description: the source table appears only after the first try
        schedule: "@daily"
        start_date: 2100-01-01   # no scheduled run: only the test's trigger runs
        catchup: false
        retries: 2
        retry_delay: {RETRY_DELAY_S}s
        retry_exponential_backoff: true
        max_retry_delay: 10m
        tasks:
          extract_late:
            type: extract
            source_conn_id: {stack_env["src"]}
            target_conn_id: {stack_env["wh"]}
            source_table: public.late_orders
            target_table: raw.late_orders
            mode: full_snapshot
            checks:
              - {{check: row_count, min: 1}}
        """))
    stack.add_dag_file(f"{dag_id}.py", textwrap.dedent(f"""\
        from airflow_provider_dataeng.factory.folder import build_dags

        globals().update({{f"dag__{{k}}": v for k, v in build_dags({str(config_dir)!r}).dags.items()}})
        """))
    stack.wait_dag(dag_id)
    task_id = "extract_late"

    run_id = stack.trigger(dag_id, conf=CONF_INTERVAL)
    state = stack.wait_task_state(dag_id, run_id, task_id, {"up_for_retry", "failed", "success"}, timeout=240)
    assert state == "up_for_retry", stack.report(dag_id, run_id)
    source_cluster.psql("create table late_orders as select g as id, 'n' || g as note from generate_series(1, 50) g",
                        source_db)
    assert stack.wait_run(dag_id, run_id, timeout=240) == "success", stack.report(dag_id, run_id)

    (ti,) = [t for t in stack.task_instances(dag_id, run_id) if t["task_id"] == task_id]
    assert ti["try_number"] == 2, ti
    first, second = _tries(stack, dag_id, run_id, task_id)
    assert first["state"] in ("failed", "up_for_retry") and second["state"] == "success", (first, second)
    gap = (_ts(second["start_date"]) - _ts(first["end_date"])).total_seconds()
    # Exponential backoff's first delay is in [retry_delay, 2 x retry_delay) (Airflow adds a deterministic
    # jitter); the scheduler then needs a loop or two. Far below the 2m the example defaults use.
    assert RETRY_DELAY_S <= gap < 90, f"second try started {gap:.1f}s after the first ended"
    assert "late_orders" in stack.task_log(dag_id, run_id, task_id, try_number=1)
    part = f"select id, note from raw.late_orders where _interval_start = '{D1.isoformat()}'"
    published = fingerprint(pg_cluster, pg_db, part)
    assert published[0] == 50
    assert _ledger(pg_cluster, pg_db, run_id) == [("published", D1, D1 + timedelta(days=1), 50)]

    # The UI's Clear on the finished run: the scheduler runs the task again (a third try).
    stack.clear(dag_id, run_id)
    assert stack.run(dag_id, run_id)["state"] in ("queued", "running"), stack.run(dag_id, run_id)
    assert stack.wait_run(dag_id, run_id, timeout=240) == "success", stack.report(dag_id, run_id)
    (ti,) = [t for t in stack.task_instances(dag_id, run_id) if t["task_id"] == task_id]
    assert ti["try_number"] == 3, ti
    assert fingerprint(pg_cluster, pg_db, part) == published
    assert _ledger(pg_cluster, pg_db, run_id) == [("published", D1, D1 + timedelta(days=1), 50)] * 2
