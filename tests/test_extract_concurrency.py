"""Issue 14 item 11 (extract side): a dozen concurrent runs of one pipeline, each in its own process (as Airflow
runs backfills with max_active_runs), on a brand-new target and on an existing target with schema drift: every
run succeeds, every partition is exact, the ledger has one row per run, ``__latest`` serves every row.

Before: the schema-drift check read the catalog in two statements (a table created in between by another run
had "every column new"), two first-time ``CREATE OR REPLACE VIEW ..__latest`` collided on ``pg_type``, and
concurrent ``ADD COLUMN`` / ``CREATE INDEX`` ran without retries."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
import traceback
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from tests.fixtures.extract import rows_of, run_extract

D1 = datetime(2024, 3, 1, tzinfo=timezone.utc)
RUNS = 12
DAYS = [D1 + timedelta(days=i) for i in range(RUNS)]


def _run(args: tuple[datetime, dict]) -> str | None:
    """One extract run in a child process: None when it succeeded, else the traceback."""
    lower, params = args
    try:
        run_extract(lower, **params)
    except BaseException:  # reported to the parent
        return traceback.format_exc()
    return None


def _default_sigterm() -> None:
    """A pool worker dies of SIGTERM (``Pool.terminate()``), whatever handler the test process had."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _killing_stragglers() -> Iterator[None]:
    """On a failure or a timeout, SIGKILL pool workers that are still alive, so the pool's
    ``terminate()`` cannot wait forever on a worker whose task installed its own SIGTERM handling."""
    try:
        yield
    except BaseException:
        for child in multiprocessing.active_children():
            if child.is_alive() and child.name.startswith(("ForkServerPoolWorker", "SpawnPoolWorker", "PoolWorker")):
                child.kill()
        raise


def _waiting(conn: psycopg.Connection, relname: str) -> int:
    return conn.execute("select count(*) from pg_locks l join pg_class c on c.oid = l.relation "
                        "where not l.granted and c.relname = %s", [relname]).fetchone()[0]


def _backfill(params: dict, source_dsn: str, warehouse_dsn: str, *, herd_at_swap: bool) -> list[str]:
    """Every interval at once, in its own process. The runs are released together twice, so they race where
    it hurts: the source table is locked until every run waits to describe it (they all read and change the
    target's catalog at the same instant), and with ``herd_at_swap`` the parent is locked until every swap
    waits for it (they all commit and then write ``__latest`` at the same instant)."""
    # Each run its own process and connections, like task runners. Like the scheduler's task processes
    # (devstack.preloaded_airflow), they are forked with the operator (and Airflow) already imported: a
    # dozen children each importing Airflow cost seconds of CPU apiece on this 2-core machine. They fork
    # from a single-threaded forkserver, never from this test process: its threads (Airflow's in-process
    # execution API loop, log handlers) may hold a lock at fork time, and a child then hangs for good.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["airflow_provider_dataeng.operators.extract", "tests.fixtures.extract"])
    with ctx.Pool(RUNS, initializer=_default_sigterm) as pool, _killing_stragglers(), \
            psycopg.connect(source_dsn) as gate, psycopg.connect(warehouse_dsn, autocommit=True) as watch:
        gate.execute("lock table orders in access exclusive mode")
        pending = pool.map_async(_run, [(day, params) for day in DAYS])
        deadline = time.monotonic() + 180
        with psycopg.connect(source_dsn, autocommit=True) as source_watch:
            while _waiting(source_watch, "orders") < RUNS and time.monotonic() < deadline:
                time.sleep(0.05)
        if herd_at_swap:
            swap_gate = psycopg.connect(warehouse_dsn)
            gate.commit()
            while watch.execute("select to_regclass('raw.orders')").fetchone()[0] is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            swap_gate.execute("lock table only raw.orders in share mode")
            while _waiting(watch, "orders") < RUNS and time.monotonic() < deadline and not pending.ready():
                time.sleep(0.05)
            swap_gate.commit()
            swap_gate.close()
        gate.commit()
        return [err for err in pending.get(600) if err]


@pytest.mark.parametrize("mode", ["incremental_timestamp"])  # incremental_id runs take turns (one id lock)
def test_a_dozen_concurrent_runs_on_a_new_then_a_drifted_target(mode, source_cluster, source_db, pg_cluster, pg_db,
                                                                source_conn_id, warehouse_conn_id):
    source_cluster.psql(
        "create table orders (id int primary key, status text not null, updated_at timestamptz not null);"
        "insert into orders select g, 's' || g, timestamptz '2024-03-01 00:30+00' + (g % 12) * interval '1 day'"
        " + g * interval '1 s' from generate_series(1, 600) g", source_db)
    params = dict(source_conn_id=source_conn_id, target_conn_id=warehouse_conn_id, source_table="orders",
                  target_table="raw.orders", mode=mode, schema_drift="fail", lock_timeout="60s")
    dsns = source_cluster.dsn(source_db), pg_cluster.dsn(pg_db)
    if mode == "incremental_timestamp":
        params.update(lag="0s", key_columns=["id"])

    def check(columns: str, runs: int) -> None:
        parts = rows_of(pg_cluster, pg_db, """select c.relname::text from pg_inherits i join pg_class c
                          on c.oid = i.inhrelid where i.inhparent = 'raw.orders'::regclass order by 1""")
        assert [p[0] for p in parts] == [f"orders__p_{d:%Y%m%d}" for d in DAYS]
        if mode == "incremental_timestamp":  # each day's partition holds exactly the rows modified that day
            assert rows_of(pg_cluster, pg_db, "select count(*) from raw.orders where date_trunc('day', updated_at) "
                                              "<> _interval_start") == [(0,)]
        assert rows_of(pg_cluster, pg_db, f"select count(*), count(distinct id) from raw.orders{columns}") == [
            (600, 600)]
        ledger = rows_of(pg_cluster, pg_db, "select partition_start, status, count(*) from dataeng.load_ledger "
                                            "group by 1, 2 order by 1")
        assert ledger == [(d, "published", runs) for d in DAYS], "one published ledger row per run"

    # 1. a brand-new target: every run finds it missing, or created by another one a moment ago
    errors = _backfill(params, *dsns, herd_at_swap=mode == "incremental_timestamp")
    assert not errors, errors[0]
    check("", 1)
    # 2. the source grows a column; a re-backfill of every interval with add_columns, all at once
    source_cluster.psql("alter table orders add column note text not null default 'n'", source_db)
    errors = _backfill({**params, "schema_drift": "add_columns"}, *dsns, herd_at_swap=False)
    assert not errors, errors[0]
    check(" where note = 'n'", 2)
    if mode == "incremental_timestamp":
        assert rows_of(pg_cluster, pg_db, "select count(*) from raw.orders__latest where note = 'n'") == [(600,)]
    else:
        assert rows_of(pg_cluster, pg_db, "select count(*) from pg_indexes where tablename = 'orders'") == [(1,)]


class _CommitAfterFirstStatement:
    """A warehouse connection after whose first statement another session COMMITs (the race of two runs)."""

    def __init__(self, conn: psycopg.Connection, other: psycopg.Connection) -> None:
        self.conn, self.other, self.statements = conn, other, 0

    def __getattr__(self, name: str):
        return getattr(self.conn, name)

    def cursor(self, *args, **kwargs):
        outer, cur = self, self.conn.cursor(*args, **kwargs)

        class Cursor:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                cur.close()

            def execute(self, *a, **kw):
                out = cur.execute(*a, **kw)
                outer.statements += 1
                if outer.statements == 1:
                    outer.other.commit()
                return out

            def __getattr__(self, name: str):
                return getattr(cur, name)

        return Cursor()


def test_target_catalog_read_is_one_snapshot(pg_cluster, pg_db):
    """Before: the drift check read the columns, then (finding none) whether the table exists: a table another
    run committed in between read as existing with no columns, so every source column was "new"."""
    from airflow_provider_dataeng.extract.schema_drift import table_columns
    from airflow_provider_dataeng.extract.target import read_target
    from airflow_provider_dataeng.publish.table_ref import TableRef

    pg_cluster.psql("create schema raw", pg_db)
    for n, read in enumerate((lambda c: table_columns(c, "raw", "t0"), lambda c: read_target(c, TableRef("raw", "t1")))):
        with psycopg.connect(pg_cluster.dsn(pg_db)) as creator, psycopg.connect(pg_cluster.dsn(pg_db),
                                                                               autocommit=True) as conn:
            creator.execute(f"create table raw.t{n} (a int, b text, _interval_start timestamptz) "
                            "partition by range (_interval_start)")
            seen = read(_CommitAfterFirstStatement(conn, creator))
            assert seen is None, f"the table read as {seen!r} (committed after the read began: absent, not empty)"
            columns = read(conn)
            names = [c.name for c in (columns.columns if n else columns)]
            assert names == ["a", "b", "_interval_start"]
