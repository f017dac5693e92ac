"""Whole-table swaps on real PostgreSQL: what survives, rejection, quoting, crashes, locks, concurrency."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest

from airflow_provider_dataeng.publish import (
    LoadStats,
    PublishError,
    PublishRejected,
    SwapLockTimeout,
    TableRef,
)
from tests.fixtures.publish import BackgroundReader, Terminator, ledger, make_engine, one, q

SELECT_N = "select g as id, 'row ' || g as label, g % 5 as grp from generate_series(1, {n}) g"


def publish(engine, n: int, target: str = "mart.t", **kw):
    return engine.publish_table(target, select_sql=SELECT_N.format(n=n), **kw)


def test_swap_keeps_views_grants_owner_comments_indexes_and_constraints(wh_hook, db):
    engine = make_engine(wh_hook)
    publish(engine, 10)
    q(db, """
        create role mart_owner; create role analyst; create role auditor;
        create sequence mart.t_seq owned by mart.t.id start 1000;
        alter table mart.t alter column id set default nextval('mart.t_seq');
        alter table mart.t add primary key (id);
        alter table mart.t add constraint grp_not_negative check (grp >= 0);
        create index t_grp_idx on mart.t (grp) where grp > 0;
        alter table mart.t set (fillfactor = 70);
        comment on table mart.t is 'the t table';
        comment on column mart.t.label is 'a label';
        create function mart.stamp() returns trigger language plpgsql as $$begin new.label := new.label || '!'; return new; end$$;
        create trigger t_stamp before insert on mart.t for each row execute function mart.stamp();
        alter table mart.t owner to mart_owner;
        grant select on mart.t to analyst;
        grant select (id) on mart.t to auditor;
        create view mart.v with (security_barrier = true) as select grp, count(*) as n from mart.t group by grp;
        create view mart.v_total as select sum(n) as total from mart.v;
        alter view mart.v owner to mart_owner;
        grant select on mart.v to analyst;
        comment on view mart.v is 'per group';
    """)
    old_view_oid = one(db, "select 'mart.v'::regclass::oid")

    result = publish(engine, 25)

    assert result.status == "published" and result.rows == 25
    # Dependent views (bound by OID) now read the new table, keep their OID, grants, owner, comment, options.
    assert one(db, "select sum(n) from mart.v") == 25
    assert one(db, "select total from mart.v_total") == 25
    assert one(db, "select 'mart.v'::regclass::oid") == old_view_oid
    assert one(db, "select relowner::regrole::text from pg_class where oid = 'mart.v'::regclass") == "mart_owner"
    assert one(db, "select obj_description('mart.v'::regclass, 'pg_class')") == "per group"
    assert one(db, "select reloptions from pg_class where oid = 'mart.v'::regclass") == ["security_barrier=true"]
    assert one(db, "select has_table_privilege('analyst', 'mart.v', 'select')")
    # The new table: owner, grants (table and column), comments, indexes, constraints, options, trigger.
    assert one(db, "select relowner::regrole::text from pg_class where oid = 'mart.t'::regclass") == "mart_owner"
    assert one(db, "select has_table_privilege('analyst', 'mart.t', 'select')")
    assert not one(db, "select has_table_privilege('analyst', 'mart.t', 'insert')")
    assert one(db, "select has_column_privilege('auditor', 'mart.t', 'id', 'select')")
    assert not one(db, "select has_column_privilege('auditor', 'mart.t', 'label', 'select')")
    assert one(db, "select obj_description('mart.t'::regclass, 'pg_class')") == "the t table"
    assert one(db, "select col_description('mart.t'::regclass, 2)") == "a label"
    assert sorted(r[0] for r in q(db, "select indexname from pg_indexes where schemaname = 'mart' and tablename = 't'")) \
        == ["t_grp_idx", "t_pkey"]
    assert one(db, "select pg_get_indexdef('mart.t_grp_idx'::regclass)").endswith("(grp) WHERE (grp > 0)")
    assert one(db, "select reloptions from pg_class where oid = 'mart.t'::regclass") == ["fillfactor=70"]
    with pytest.raises(psycopg.errors.UniqueViolation):
        q(db, "insert into mart.t (id, label, grp) values (1, 'dup', 0)")
    with pytest.raises(psycopg.errors.CheckViolation):
        q(db, "insert into mart.t (id, label, grp) values (1000, 'x', -1)")
    q(db, "insert into mart.t (label, grp) values ('from sequence', 0)")  # default + sequence survive
    assert one(db, "select label from mart.t where label like 'from sequence%'") == "from sequence!"  # trigger
    assert one(db, "select count(*) from pg_depend where objid = 'mart.t_seq'::regclass and deptype = 'a' "
                   "and refobjid = 'mart.t'::regclass") == 1
    # The replaced table is kept for rollback, with its own (renamed) index names.
    assert one(db, "select count(*) from mart.t__previous") == 10
    assert one(db, "select count(*) from pg_indexes where tablename = 't__previous'") == 2

    engine.rollback("mart.t")
    assert one(db, "select sum(n) from mart.v") == 10
    assert one(db, "select count(*) from mart.t__previous") == 26
    assert one(db, "select has_table_privilege('analyst', 'mart.t', 'select')")
    assert sorted(r[0] for r in q(db, "select indexname from pg_indexes where schemaname = 'mart' and tablename = 't'")) \
        == ["t_grp_idx", "t_pkey"]
    publish(engine, 30)  # a swap after a rollback works (names are consistent again)
    assert one(db, "select sum(n) from mart.v") == 30
    rows = ledger(db)
    assert [(r["mode"], r["status"], r["rows"]) for r in rows] == [
        ("table_swap", "published", 10), ("table_swap", "published", 25), ("rollback", "published", 10),
        ("table_swap", "published", 30)]
    assert "grant SELECT to analyst" in rows[1]["details"]["carried_over"]


def test_failing_checks_leave_live_untouched_and_ledger_says_rejected(wh_hook, db):
    engine = make_engine(wh_hook)
    publish(engine, 100)
    live_oid = one(db, "select 'mart.t'::regclass::oid")
    checks = [
        {"check": "row_count", "min": 1, "max": 50},
        {"check": "null_fraction", "column": "label", "max": 0.0},
        {"check": "unique", "columns": ["grp"]},
        {"check": "accepted_values", "column": "grp", "values": [0, 1, 2, 3, 4]},
        {"check": "sql", "name": "ids_positive", "sql": "select bool_and(id > 0) from {table}"},
        {"check": "drift", "max_change_pct": 10},
    ]
    with pytest.raises(PublishRejected) as err:
        publish(engine, 200, checks=checks)
    text = str(err.value)
    assert "3 of 6 quality checks failed on mart.t" in text
    assert "check" in text and "observed" in text and "threshold" in text
    by_name = {r.check: r for r in err.value.results}
    assert (by_name["row_count"].observed, by_name["row_count"].passed) == (200, False)
    assert by_name["unique(grp)"].observed == 195 and not by_name["unique(grp)"].passed
    assert by_name["drift"].observed == "+100.00%" and not by_name["drift"].passed
    assert by_name["null_fraction(label)"].passed and by_name["ids_positive"].passed
    assert one(db, "select 'mart.t'::regclass::oid") == live_oid and one(db, "select count(*) from mart.t") == 100
    assert one(db, "select to_regclass('mart.t__staging')") is None
    last = ledger(db)[-1]
    assert last["status"] == "rejected" and last["rows"] == 200
    assert {c["check"]: c["passed"] for c in last["checks"]}["drift"] is False

    with pytest.raises(PublishRejected):
        publish(engine, 200, checks=[{"check": "row_count", "max": 150}], keep_failed_staging=True)
    assert one(db, "select count(*) from mart.t__staging") == 200  # kept for inspection
    publish(engine, 105, checks=[c for c in checks if c["check"] not in ("unique", "row_count")])  # a good run cleans the leftover and publishes
    assert one(db, "select count(*) from mart.t") == 105


def test_identifiers_with_quotes_spaces_and_semicolons_are_quoted_never_executed(wh_hook, db):
    engine = make_engine(wh_hook)
    target = TableRef('we"ird; drop schema public cascade; --', "t a;ble\"); drop table x; --")
    q(db, "create table public.x (i int)")
    engine.publish_table(target, select_sql='select 1 as "col; drop table public.x; --"',
                         checks=[{"check": "null_fraction", "column": "col; drop table public.x; --", "max": 0},
                                 {"check": "unique", "columns": ["col; drop table public.x; --"]},
                                 {"check": "sql", "name": "n", "sql": "select count(*) = 1 from {table}"}])
    q(db, psycopg.sql.SQL("create index on {} ({})").format(
        target.ident(), psycopg.sql.Identifier("col; drop table public.x; --")))
    q(db, psycopg.sql.SQL("create view {} as select * from {}").format(
        TableRef(target.schema, 'v"; --').ident(), target.ident()))
    engine.publish_table(target, select_sql='select 2 as "col; drop table public.x; --"')
    assert one(db, psycopg.sql.SQL("select * from {}").format(TableRef(target.schema, 'v"; --').ident())) == 2
    engine.rollback(target)
    assert one(db, psycopg.sql.SQL("select * from {}").format(target.ident())) == 1
    assert one(db, "select to_regclass('public.x')") is not None
    assert TableRef.parse('"a.b"."c""d"') == TableRef("a.b", 'c"d')
    assert TableRef.parse("Raw.My Table") == TableRef("Raw", "My Table")


def test_loader_and_first_publish_with_columns(wh_hook, db):
    engine = make_engine(wh_hook)

    def loader(conn, staging):
        with conn.cursor().copy(psycopg.sql.SQL("copy {} (id, name) from stdin").format(staging.ident())) as copy:
            for i in range(7):
                copy.write_row((i, f"n{i}"))
        return LoadStats(rows=7, bytes=123, details={"source": "test"})

    result = engine.publish_table("raw.items", loader=loader, columns=[("id", "bigint"), ("name", "text")])
    assert (result.rows, result.bytes) == (7, 123)
    q(db, "alter table raw.items add column note text default 'n/a'")
    result = engine.publish_table("raw.items", loader=loader)  # staging LIKE live: new column + default kept
    assert one(db, "select count(*) from raw.items where note = 'n/a'") == 7
    assert ledger(db)[-1]["details"]["source"] == "test"
    with pytest.raises(ValueError, match="columns\\[0\\] \\(id\\): 'bigint; drop table raw.items' is not a known"):
        engine.publish_table("raw.other", loader=loader, columns=[("id", "bigint; drop table raw.items")])
    with pytest.raises(ValueError, match="exactly one of 'loader'"):
        engine.publish_table("raw.items")


def test_objects_a_swap_cannot_carry_are_refused_before_any_change(wh_hook, db):
    engine = make_engine(wh_hook)
    publish(engine, 5)
    q(db, "create materialized view mart.mv as select count(*) from mart.t")
    with pytest.raises(PublishError, match="materialized view mart.mv"):
        publish(engine, 6)
    assert one(db, "select count(*) from mart.t") == 5
    assert ledger(db)[-1]["status"] == "failed" and "materialized view" in ledger(db)[-1]["error"]
    q(db, "drop materialized view mart.mv; alter table mart.t enable row level security")
    with pytest.raises(PublishError, match="row-level security"):  # a swap would silently drop it
        publish(engine, 6)
    assert one(db, "select count(*) from mart.t") == 5


@pytest.mark.parametrize("step", ["locked", "staging_created", "loaded", "checked", "prepared", "swap_locked",
                                  "swapped"])
def test_killed_connection_at_any_step_leaves_live_intact_and_rerun_succeeds(wh_hook, db, dsn, step):
    publish(make_engine(wh_hook), 10)
    q(db, "create view mart.v as select count(*) as n from mart.t; alter table mart.t add primary key (id)")
    live_oid = one(db, "select 'mart.t'::regclass::oid")
    killer = Terminator(dsn, step)
    with pytest.raises(psycopg.OperationalError):
        publish(make_engine(wh_hook, on_step=killer), 20)
    assert killer.fired
    assert one(db, "select 'mart.t'::regclass::oid") == live_oid
    assert one(db, "select n from mart.v") == 10
    assert one(db, "select count(*) from pg_indexes where tablename = 't' and indexname = 't_pkey'") == 1
    assert ledger(db)[-1]["status"] == "failed"
    publish(make_engine(wh_hook), 20)
    assert one(db, "select n from mart.v") == 20
    assert one(db, "select to_regclass('mart.t__staging')") is None


def test_tables_leaving_the_swap_are_dropped_after_commit_even_after_a_crash_in_between(wh_hook, db, dsn):
    publish(make_engine(wh_hook), 10)
    publish(make_engine(wh_hook), 11)  # t__previous exists now
    killer = Terminator(dsn, "committed")
    result = publish(make_engine(wh_hook, on_step=killer), 12)  # killed after COMMIT, before the drop
    assert result.status == "published" and ledger(db)[-1]["status"] == "published"
    assert one(db, "select count(*) from mart.t") == 12 and one(db, "select count(*) from mart.t__previous") == 11
    assert one(db, "select count(*) from mart.t__retired") == 10  # the old __previous, left by the crash
    publish(make_engine(wh_hook), 13, keep_previous=False)
    names = {r[0] for r in q(db, "select relname from pg_class where relnamespace = 'mart'::regnamespace")}
    assert names == {"t"}  # leftover and both old versions dropped


def test_readers_never_error_nor_see_partial_data_during_100_swaps(wh_hook, db, dsn):
    engine = make_engine(wh_hook)
    publish(engine, 1000)
    q(db, "create view mart.v as select count(*) as n from mart.t")
    table_reader = BackgroundReader(dsn, "select count(*) from mart.t")
    view_reader = BackgroundReader(dsn, "select n from mart.v")
    table_reader.start()
    view_reader.start()
    try:
        for i in range(1, 101):
            publish(engine, 1000 + i, keep_previous=i % 2 == 0)
    finally:
        table_reader.stop()
        view_reader.stop()
    for reader in (table_reader, view_reader):
        assert reader.errors == []
        assert len(reader.results) > 100
        assert set(reader.results) <= set(range(1000, 1101))  # never 0, never a mix of two versions
        assert len(set(reader.results)) > 10  # it really read while the swaps ran
        assert reader.results == sorted(reader.results)  # never an older version after a newer one
    assert one(db, "select n from mart.v") == 1100


def _hold_lock(dsn: str) -> psycopg.Connection:
    holder = psycopg.connect(dsn)
    holder.execute("select count(*) from mart.t")  # transaction left open: ACCESS SHARE held
    return holder


def test_long_reader_makes_swap_fail_clearly_after_its_tries_while_new_readers_wait_at_most_lock_timeout(
        wh_hook, db, dsn):
    publish(make_engine(wh_hook), 10)
    holder = _hold_lock(dsn)
    reader = BackgroundReader(dsn, "select count(*) from mart.t")
    reader.start()
    try:
        with pytest.raises(SwapLockTimeout) as err:
            publish(make_engine(wh_hook, lock_timeout=0.5, swap_attempts=3), 20)
    finally:
        reader.stop()
        holder_pid = holder.info.backend_pid
        holder.close()
    assert f"pid {holder_pid}" in str(err.value) and "3 attempts" in str(err.value)
    assert reader.errors == [] and set(reader.results) == {10}
    # queued behind each swap attempt's lock request for at most lock_timeout (+ slack for a busy machine);
    # a reader stuck behind the long reader for all 3 attempts would wait well over 1.5 s
    assert reader.max_stall < 0.5 + 0.7
    assert one(db, "select count(*) from mart.t") == 10
    assert one(db, "select to_regclass('mart.t__staging')") is None
    assert ledger(db)[-1]["status"] == "failed" and "lock_timeout" in ledger(db)[-1]["error"]


def test_long_reader_makes_swap_retry_then_succeed(wh_hook, db, dsn, caplog, monkeypatch):
    publish(make_engine(wh_hook), 10)
    holder = _hold_lock(dsn)
    releaser = threading.Timer(0.8, holder.close)
    releaser.start()
    # Airflow's logging config (dictConfig) may disable or detach loggers created before it: listen directly.
    locks_log = logging.getLogger("airflow_provider_dataeng.publish.locks")
    monkeypatch.setattr(locks_log, "disabled", False)
    locks_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="airflow_provider_dataeng.publish.locks"):
            publish(make_engine(wh_hook, lock_timeout=0.3, swap_attempts=8, retry_backoff=0.1), 20)
    finally:
        locks_log.removeHandler(caplog.handler)
    releaser.join()
    assert any("lock not available" in r.getMessage() for r in caplog.records)
    assert one(db, "select count(*) from mart.t") == 20


def test_publishes_of_one_target_serialize(wh_hook, db):
    engine = make_engine(wh_hook)
    publish(engine, 1)
    inside = threading.Event()
    release = threading.Event()

    def slow_loader(conn, staging):
        inside.set()
        release.wait(20)
        conn.execute(psycopg.sql.SQL("insert into {} select g, 'a', 0 from generate_series(1, 2) g").format(
            staging.ident()))

    first = threading.Thread(target=lambda: make_engine(wh_hook).publish_table("mart.t", loader=slow_loader))
    first.start()
    assert inside.wait(20)
    second = threading.Thread(target=lambda: publish(make_engine(wh_hook), 3))
    second.start()
    time.sleep(0.7)
    assert second.is_alive()  # waits on the target's advisory lock
    release.set()
    first.join(20)
    second.join(20)
    assert [r["rows"] for r in ledger(db)] == [1, 2, 3]
    assert one(db, "select count(*) from mart.t") == 3


def test_select_sql_is_one_query_and_percent_signs_survive(wh_hook, db):
    engine = make_engine(wh_hook)
    q(db, "create table public.keep (i int)")
    with pytest.raises(psycopg.errors.SyntaxError):
        engine.publish_table("mart.x", select_sql="select 1 as a; drop table public.keep")
    assert one(db, "select to_regclass('public.keep')") is not None
    engine.publish_table("mart.x", select_sql="select 'a%' as a, 1 as n;")
    q(db, "alter table mart.x alter column a set default '%s'; "
          "create view mart.xv as select count(*) as n from mart.x where a like 'a%'")
    engine.publish_table("mart.x", select_sql="with w as (select 'a%b' as a, 2 as n) select * from w")
    assert one(db, "select n from mart.xv") == 1
    q(db, "insert into mart.x (n) values (3)")
    assert one(db, "select a from mart.x where n = 3") == "%s"


def test_identity_columns_keep_counting_after_swaps(wh_hook, db):
    engine = make_engine(wh_hook)
    q(db, "create schema mart; create table mart.ids (id bigint generated always as identity primary key, v text); "
          "insert into mart.ids (v) select 'x' from generate_series(1, 5)")

    def loader(conn, staging):
        conn.execute(psycopg.sql.SQL("insert into {} (id, v) select id, v || 'y' from mart.ids").format(staging.ident()))

    engine.publish_table("mart.ids", loader=loader)
    engine.publish_table("mart.ids", loader=loader)
    q(db, "insert into mart.ids (v) values ('new')")
    assert one(db, "select id from mart.ids where v = 'new'") == 6
    assert one(db, "select attidentity::text from pg_attribute where attrelid = 'mart.ids'::regclass "
                   "and attname = 'id'") == "a"
    assert one(db, "select string_agg(distinct v, ',') from mart.ids where id <= 5") == "xyy"
