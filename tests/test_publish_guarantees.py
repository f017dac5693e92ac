"""Issue 14 regressions on the publish side, each on real PostgreSQL: refused targets untouched (3), locks and
crashes (7), checks that cannot escape and counts that are not trusted (9), parallel backfills (11)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from airflow_provider_dataeng.publish import LoadStats, PublishError
from tests.fixtures.publish import TcpProxy, ledger, make_engine, one, q
from tests.fixtures.waiting import wait_until

D1 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def staging_tables(db) -> list[str]:
    return [r[0] for r in q(db, "select relname::text from pg_class where relname like '%%__staging' order by 1")]


# -- 14.3: a refused target is never touched ------------------------------------------------------------------
def test_table_swap_refuses_a_partition_child_and_inheritance_and_touches_nothing(wh_hook, db):
    q(db, """create schema raw;
             create table raw.events (id int, d date) partition by range (d);
             create table raw.events_2026 partition of raw.events for values from ('2026-01-01') to ('2027-01-01');
             insert into raw.events values (1, '2026-05-01');
             create table raw.base (id int); create table raw.kid (extra text) inherits (raw.base);
             insert into raw.kid values (7, 'x')""")
    engine = make_engine(wh_hook)
    for target, what in (("raw.events_2026", "partition of raw.events"), ("raw.kid", "inherits from raw.base"),
                         ("raw.base", "inherited by raw.kid")):
        with pytest.raises(PublishError, match=what):
            engine.publish_table(target, select_sql="select 2 as id, date '2026-06-01' as d")
    # The parent keeps its range and rows, the inheritance tree is as it was, no staging table was made.
    assert q(db, "select id from raw.events") == [(1,)]
    assert one(db, "select count(*) from pg_inherits where inhparent = 'raw.events'::regclass") == 1
    assert q(db, "select id from raw.base") == [(7,)]
    assert staging_tables(db) == []


# -- 14.7: locks and crashes ---------------------------------------------------------------------------------
class HeldPublish(threading.Thread):
    """A table publish whose loader waits (holding the target's advisory lock) until released."""

    def __init__(self, engine, target: str) -> None:
        super().__init__(daemon=True)
        self.engine, self.target = engine, target
        self.loading, self.release = threading.Event(), threading.Event()
        self.result = self.error = None

    def loader(self, conn, staging):
        self.loading.set()
        self.release.wait(60)
        conn.execute(f'insert into {staging.schema}."{staging.table}" select g from generate_series(1, 4) g')

    def run(self) -> None:
        try:
            self.result = self.engine.publish_table(self.target, loader=self.loader, columns=[("id", "int")])
        except BaseException as exc:  # recorded: the test asserts on it
            self.error = exc


def test_waiting_for_the_publish_lock_has_a_deadline_and_names_the_holder(wh_hook, db):
    holder = HeldPublish(make_engine(wh_hook, task_id="holder"), "mart.t")
    holder.start()
    assert holder.loading.wait(30)
    # A deadline on the wait, naming who holds the lock (the holder's backend and application).
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"publish lock of mart\.t within 1s: held by backend \d+ \("):
        make_engine(wh_hook, task_id="waiter", lock_wait=1).publish_table("mart.t", select_sql="select 1 as id")
    assert time.monotonic() - started < 10
    holder.release.set()
    holder.join(60)
    assert holder.error is None and holder.result.status == "published"
    assert [(r["task_id"], r["status"]) for r in ledger(db)] == [("holder", "published")]  # none for the waiter


def test_a_publish_killed_while_waiting_for_the_lock_leaves_the_holders_staging_alone(wh_hook, db, monkeypatch):
    holder = HeldPublish(make_engine(wh_hook, task_id="holder"), "mart.t")
    holder.start()
    assert holder.loading.wait(30)
    # Killed while waiting (execution_timeout raises in the task): the holder's staging table stays.
    real_sleep = time.sleep

    def interrupted(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():
            raise TimeoutError("execution_timeout")
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", interrupted)
    with pytest.raises(TimeoutError):
        make_engine(wh_hook, task_id="killed").publish_table("mart.t", select_sql="select 1 as id")
    monkeypatch.setattr(time, "sleep", real_sleep)
    assert staging_tables(db) == ["t__staging"]
    holder.release.set()
    holder.join(60)
    assert holder.error is None and holder.result.status == "published"
    assert one(db, "select count(*) from mart.t") == 4
    # One ledger row: the holder's. The publish that never got the lock wrote none.
    assert [(r["task_id"], r["status"]) for r in ledger(db)] == [("holder", "published")]


def test_sessions_set_tcp_keepalives_so_a_dead_workers_lock_is_released(wh_hook):
    seen = {}

    def watch(step: str, conn: psycopg.Connection) -> None:
        if step == "locked":
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count"):
                seen[name] = conn.execute(f"show {name}").fetchone()[0]

    make_engine(wh_hook, on_step=watch).publish_table("mart.k", select_sql="select 1 as id")
    idle, interval, count = (int(seen[n].rstrip("s")) for n in ("tcp_keepalives_idle", "tcp_keepalives_interval",
                                                                 "tcp_keepalives_count"))
    assert 0 < idle + interval * count <= 300  # a dead peer is detected within 5 minutes, not the OS's 2 hours


def test_a_commit_whose_acknowledgement_is_lost_is_resolved_from_the_ledger(pg_cluster, pg_db, db):
    from airflow_provider_dataeng.connections import connect
    from devstack.airflow_env import register_connection, unregister_connection

    proxy = TcpProxy(pg_cluster.host, pg_cluster.port)
    register_connection("wh_proxied", host=proxy.host, port=proxy.port, schema=pg_db)
    try:
        def cut_after_commit(step: str, conn: psycopg.Connection) -> None:
            if step == "swapped":  # inside the swap transaction: the next message is COMMIT
                proxy.cut_after_next_message()

        result = make_engine(connect("wh_proxied"), on_step=cut_after_commit).publish_table(
            "mart.c", select_sql="select g as id from generate_series(1, 3) g")
    finally:
        unregister_connection("wh_proxied")
        proxy.close()
    assert proxy.cuts == 1  # the connection really was lost at COMMIT
    assert result.status == "published" and one(db, "select count(*) from mart.c") == 3
    assert [r["status"] for r in ledger(db)] == ["published"]  # not 'failed' after 'published'
    assert result.ledger_id == ledger(db)[0]["id"]


# -- 14.9: checks cannot escape; counts are the engine's own ----------------------------------------------------
def test_a_sql_check_cannot_escape_its_read_only_transaction(wh_hook, db):
    q(db, "create schema s; create table s.t (id int); insert into s.t values (1)")
    engine = make_engine(wh_hook)
    with pytest.raises(ValueError, match="could not run"):
        engine.check_table("s.t", [{"check": "sql", "name": "escape", "sql": "select true; commit; drop table {table}"}])
    with pytest.raises(ValueError, match="could not run"):
        engine.publish_table("s.u", select_sql="select 1 as id", checks=[
            {"check": "sql", "name": "escape", "sql": "select true; commit; drop table s.t; select true"}])
    assert one(db, "select count(*) from s.t") == 1
    assert one(db, "select to_regclass('s.u')") is None
    ok = engine.check_table("s.t", [{"check": "sql", "name": "pct", "sql": "select count(*) = 1 and 'a%' like 'a%%' "
                                                                          "from {table}"}])
    assert ok[0].passed


def test_the_engine_counts_staging_itself_and_refuses_a_wrong_loader_count(wh_hook, db):
    def loader(conn, staging):
        conn.execute(f'insert into {staging.schema}."{staging.table}" select g from generate_series(1, 3) g')
        return LoadStats(rows=5)

    engine = make_engine(wh_hook)
    with pytest.raises(PublishError, match="loader reported 5 rows, staging holds 3"):
        engine.publish_table("mart.n", loader=loader, columns=[("id", "int")])
    assert one(db, "select to_regclass('mart.n')") is None and staging_tables(db) == []
    assert [r["status"] for r in ledger(db)] == ["failed"]


# -- 14.11: parallel backfills ---------------------------------------------------------------------------------
@pytest.mark.parametrize("existing", [False, True], ids=["new_target", "existing_target"])
def test_a_dozen_concurrent_backfills_of_one_target_all_succeed(wh_hook, db, existing):
    days = [D1 + timedelta(days=i) for i in range(14)]
    select = "select {n}::bigint as id, 'r{n}'::text as v"

    def publish(i: int, lower: datetime):
        return make_engine(wh_hook, run_id=f"backfill__{i}").publish_partition(
            "raw.backfill", partition_column="_interval_start", lower=lower, upper=lower + timedelta(days=1),
            select_sql=select.format(n=i), checks=[{"check": "row_count", "min": 1}])

    if existing:  # every interval published once; the re-backfill swaps siblings while others read bounds
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(publish, range(len(days)), days))
        q(db, "delete from dataeng.load_ledger")
    with ThreadPoolExecutor(len(days)) as pool:
        results = list(pool.map(publish, range(100, 100 + len(days)), days))
    assert {r.status for r in results} == {"published"}
    parts = q(db, """select c.relname::text, pg_get_expr(c.relpartbound, c.oid) from pg_inherits i
                     join pg_class c on c.oid = i.inhrelid where i.inhparent = 'raw.backfill'::regclass order by 1""")
    assert [p[0] for p in parts] == [f"backfill__p_{d:%Y%m%d}" for d in days]
    assert q(db, "select id, _interval_start from raw.backfill order by 1") == [
        (100 + i, d) for i, d in enumerate(days)]
    rows = ledger(db)
    assert sorted(r["run_id"] for r in rows) == sorted(f"backfill__{i}" for i in range(100, 100 + len(days)))
    assert {r["status"] for r in rows} == {"published"}


def test_partition_bounds_read_while_a_sibling_is_swapped_out_and_dropped(db, dsn):
    from airflow_provider_dataeng.publish import catalog

    q(db, """create schema raw; create table raw.p (d date) partition by range (d);
             create table raw.p1 partition of raw.p for values from ('2026-01-01') to ('2026-01-02');
             create table raw.p2 partition of raw.p for values from ('2026-01-02') to ('2026-01-03')""")
    parent = one(db, "select 'raw.p'::regclass::oid")
    with psycopg.connect(dsn) as reader:
        reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        reader.execute("select 1")  # the snapshot: p1 is still a partition in it
        q(db, "alter table raw.p detach partition raw.p1; drop table raw.p1")  # another run's swap + cleanup
        bounds = [(p.ref.table, p.lower, p.upper) for p in catalog.partitions(reader, parent, "date")]
    assert sorted(bounds) == [("p1", date(2026, 1, 1), date(2026, 1, 2)), ("p2", date(2026, 1, 2), date(2026, 1, 3))]


# -- 14.10: the gap check knows table-swap targets ----------------------------------------------------------------
def test_table_swap_ledger_rows_carry_the_run_interval_so_the_gap_check_sees_them(wh_hook, db):
    from airflow_provider_dataeng.gaps import find_gaps, resolve_timetable

    for day in (0, 1, 3):  # day 2 never ran
        lower = D1 + timedelta(days=day)
        make_engine(wh_hook, run_id=f"scheduled__{day}", data_interval=(lower, lower + timedelta(days=1))
                    ).publish_table("mart.daily", select_sql=f"select {day} as day")
    report = find_gaps(wh_hook, schema="mart", table="daily", timetable=resolve_timetable("@daily"), start=D1,
                       end=D1 + timedelta(days=4), pipeline="test_pipeline")
    assert [(h.interval.start, h.kind) for h in report.holes] == [(D1 + timedelta(days=2), "missing")]
    rows = ledger(db)
    assert [(r["interval_start"], r["partition_start"]) for r in rows] == [
        (D1 + timedelta(days=d), None) for d in (0, 1, 3)]


# -- 13.4: on_kill cancels the server-side work --------------------------------------------------------------------
def test_cancel_stops_the_running_statement_and_leaves_live_data_intact(wh_hook, db):
    from airflow_provider_dataeng.operators.publish import StagingSwapOperator

    make_engine(wh_hook).publish_table("mart.live", select_sql="select 1 as id")
    op = StagingSwapOperator(task_id="slow_publish", conn_id=wh_hook.postgres_conn_id, target_table="mart.live",
                             select_sql="select g as id from generate_series(1, 3) g, pg_sleep(60)")
    outcome: dict = {}

    def run() -> None:
        try:
            op.execute({"run_id": "manual__kill"})
        except BaseException as exc:  # recorded: the test asserts on it
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while not q(db, "select 1 from pg_stat_activity where query like '%%pg_sleep(60)%%' and state = 'active' "
                    "and pid <> pg_backend_pid()"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    killed = time.monotonic()
    op.on_kill()
    worker.join(30)
    assert time.monotonic() - killed < 10 and not worker.is_alive()
    assert isinstance(outcome.get("error"), psycopg.errors.QueryCanceled)
    # every session of the publish is gone (a closed session's backend leaves pg_stat_activity a moment after
    # the client's close returns: polled; one still there after 10 s is a leaked connection)
    wait_until(lambda: q(db, "select count(*) from pg_stat_activity where datname = current_database() "
                             "and pid <> pg_backend_pid()") == [(0,)], 10, "the publish's sessions to end", 0.05)
    assert q(db, "select id from mart.live") == [(1,)] and staging_tables(db) == []
    assert [r["status"] for r in ledger(db)] == ["published", "failed"]
