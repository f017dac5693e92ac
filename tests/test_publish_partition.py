"""Partition swaps on real PostgreSQL: layout, scan-free ATTACH, previous/rollback, locks, crashes."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from airflow_provider_dataeng.publish import (
    PublishError,
    PublishRejected,
    TableRef,
    partition_ref,
    partition_suffix,
)
from tests.fixtures.publish import BackgroundReader, Terminator, ledger, make_engine, one, q

D1 = datetime(2026, 1, 1, tzinfo=timezone.utc)
D2 = D1 + timedelta(days=1)
D3 = D2 + timedelta(days=1)
COLUMNS = [("order_id", "bigint"), ("amount", "numeric(12,2)"), ("_interval_start", "timestamp with time zone")]


def rows_sql(n: int, first_id: int = 1) -> str:
    return f"select g::bigint as order_id, (g * 1.5)::numeric(12,2) as amount from generate_series({first_id}, {first_id + n - 1}) g"


def setup_parent(engine, db) -> None:
    engine.ensure_partitioned_parent("raw.orders", COLUMNS, "_interval_start")
    q(db, "alter table raw.orders add primary key (order_id, _interval_start); "
          "create index orders_amount_idx on raw.orders (amount); "
          "create view raw.orders_total as select count(*) as n, sum(amount) as s from raw.orders")


def publish(engine, lower, n, first_id=1, **kw):
    return engine.publish_partition("raw.orders", partition_column="_interval_start", lower=lower,
                                    upper=lower + timedelta(days=1), select_sql=rows_sql(n, first_id), **kw)


def bounds(db) -> list[tuple[str, str]]:
    return q(db, """select c.relname, pg_get_expr(c.relpartbound, c.oid) from pg_inherits i
                    join pg_class c on c.oid = i.inhrelid where i.inhparent = 'raw.orders'::regclass order by 1""")


def test_partition_swap_layout_scan_free_attach_indexes_previous_and_rollback(wh_hook, db):
    notices: list[str] = []

    def watch(step, conn):  # on the engine's own connection: see ATTACH's DEBUG1 message
        if step == "prepared":
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
            conn.execute("set client_min_messages = debug1")

    engine = make_engine(wh_hook, on_step=watch)
    setup_parent(engine, db)
    publish(engine, D1, 10)
    publish(engine, D2, 20, first_id=100)
    assert bounds(db) == [
        ("orders__p_20260101", "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-01-02 00:00:00+00')"),
        ("orders__p_20260102", "FOR VALUES FROM ('2026-01-02 00:00:00+00') TO ('2026-01-03 00:00:00+00')")]
    assert any("is implied by existing constraints" in n for n in notices)  # ATTACH skipped its scan
    # Each partition index is attached to the parent's index (none was built during the swap).
    assert one(db, """select count(*) from pg_inherits i join pg_class c on c.oid = i.inhrelid
                      where c.relkind = 'i' and i.inhparent in ('raw.orders_pkey'::regclass,
                                                                'raw.orders_amount_idx'::regclass)""") == 4
    assert one(db, "select _interval_start from raw.orders where order_id = 1") == D1  # filled with the lower bound

    publish(engine, D1, 12, keep_previous=True)
    assert one(db, "select n from raw.orders_total") == 32  # the other partition is untouched
    assert one(db, "select count(*) from raw.orders__p_20260101__previous") == 10
    with pytest.raises(psycopg.errors.UniqueViolation):
        q(db, "insert into raw.orders values (1, 1, '2026-01-01')")  # the PK covers the new partition

    engine.rollback("raw.orders", D1)
    assert one(db, "select count(*) from raw.orders where _interval_start = %s", [D1]) == 10
    assert one(db, "select count(*) from raw.orders__p_20260101__previous") == 12
    engine.rollback("raw.orders", D1)  # rolling back the rollback
    assert one(db, "select count(*) from raw.orders where _interval_start = %s", [D1]) == 12
    publish(engine, D1, 13)  # keep_previous=False: the old partition is dropped
    assert one(db, "select to_regclass('raw.orders__p_20260101__previous')") is not None  # older one stays
    assert one(db, "select n from raw.orders_total") == 33
    assert len(bounds(db)) == 2
    statuses = [(r["mode"], r["partition_start"], r["rows"]) for r in ledger(db)]
    assert statuses == [("partition_swap", D1, 10), ("partition_swap", D2, 20), ("partition_swap", D1, 12),
                        ("rollback", D1, 10), ("rollback", D1, 12), ("partition_swap", D1, 13)]


def test_parent_created_from_select_and_date_and_hourly_partitions(wh_hook, db):
    engine = make_engine(wh_hook)
    engine.publish_partition("raw.daily", partition_column="day", lower=date(2026, 3, 1), upper=date(2026, 3, 2),
                             select_sql="select 1 as id, date '2026-03-01' as day")
    assert one(db, "select format_type(atttypid, atttypmod) from pg_attribute where attrelid = 'raw.daily'::regclass "
                   "and attname = 'day'") == "date"
    assert one(db, "select count(*) from raw.daily__p_20260301") == 1
    hour = datetime(2026, 3, 1, 5, tzinfo=timezone.utc)
    engine.publish_partition("raw.hourly", partition_column="_interval_start", lower=hour,
                             upper=hour + timedelta(hours=1), select_sql="select 1 as id")
    assert one(db, 'select count(*) from raw."hourly__p_20260301T050000"') == 1
    assert partition_suffix(datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))) == "20260228T233000"
    long_name = TableRef("raw", "x" * 60)
    assert partition_ref(long_name, D1).table.endswith("__p_20260101")
    assert len(partition_ref(long_name, D1).table.encode()) <= 63
    assert partition_ref(long_name, D1) != partition_ref(TableRef("raw", "x" * 59 + "y"), D1)


def test_bad_layouts_and_rows_outside_the_bounds_fail_clearly(wh_hook, db):
    engine = make_engine(wh_hook)
    setup_parent(engine, db)
    q(db, "create table raw.orders_jan partition of raw.orders for values from ('2026-01-01') to ('2026-02-01')")
    with pytest.raises(PublishError, match="overlaps the bounds"):
        publish(engine, D1, 1)
    with pytest.raises(psycopg.errors.CheckViolation):
        engine.publish_partition("raw.orders", partition_column="_interval_start", lower=D3 + timedelta(days=40),
                                 upper=D3 + timedelta(days=41),
                                 select_sql="select 1::bigint as order_id, 1 as amount, now() as _interval_start")
    assert ledger(db)[-1]["status"] == "failed"
    assert one(db, "select count(*) from pg_class where relname like '%%staging%%'") == 0
    with pytest.raises(PublishError, match="not range-partitioned on 'amount'"):
        engine.publish_partition("raw.orders", partition_column="amount", lower=D1, upper=D2, select_sql="select 1")
    q(db, "create table raw.flat (i int)")
    with pytest.raises(PublishError, match="not a partitioned table"):
        engine.publish_partition("raw.flat", partition_column="i", lower=D1, upper=D2, select_sql="select 1 as i")
    with pytest.raises(ValueError, match="lower .* must be before upper"):
        engine.publish_partition("raw.orders", partition_column="_interval_start", lower=D2, upper=D1,
                                 select_sql="select 1")
    with pytest.raises(ValueError, match="not a known PostgreSQL type"):
        engine.ensure_partitioned_parent("raw.x", [("a", "int); drop table raw.orders; --"), ("d", "date")], "d")
    assert one(db, "select to_regclass('raw.orders')") is not None


def test_rejected_partition_keeps_the_published_one(wh_hook, db):
    engine = make_engine(wh_hook)
    setup_parent(engine, db)
    publish(engine, D1, 10)
    with pytest.raises(PublishRejected, match="drift"):
        publish(engine, D1, 30, checks=[{"check": "drift", "max_change_pct": 50}])
    assert one(db, "select count(*) from raw.orders") == 10
    last = ledger(db)[-1]
    assert (last["status"], last["partition_start"], last["partition_end"]) == ("rejected", D1, D2)


@pytest.mark.parametrize("step", ["locked", "loaded", "prepared", "swap_locked", "swapped"])
def test_killed_partition_publish_leaves_partition_intact_and_rerun_succeeds(wh_hook, db, dsn, step):
    engine = make_engine(wh_hook)
    setup_parent(engine, db)
    publish(engine, D1, 10)
    part_oid = one(db, "select 'raw.orders__p_20260101'::regclass::oid")
    killer = Terminator(dsn, step)
    with pytest.raises(psycopg.OperationalError):
        publish(make_engine(wh_hook, on_step=killer), D1, 20)
    assert one(db, "select 'raw.orders__p_20260101'::regclass::oid") == part_oid
    assert one(db, "select n from raw.orders_total") == 10
    publish(engine, D1, 20)
    assert one(db, "select n from raw.orders_total") == 20
    assert one(db, "select count(*) from pg_class where relname like '%%staging%%'") == 0


def test_different_partitions_do_not_wait_on_each_other_same_partition_does(wh_hook, db):
    engine = make_engine(wh_hook)
    setup_parent(engine, db)
    inside, release = threading.Event(), threading.Event()

    def slow_loader(conn, staging):
        inside.set()
        release.wait(30)
        conn.execute(psycopg.sql.SQL("insert into {} values (1, 1, %s)").format(staging.ident()), [D1])

    slow = threading.Thread(target=lambda: make_engine(wh_hook).publish_partition(
        "raw.orders", partition_column="_interval_start", lower=D1, upper=D2, loader=slow_loader))
    slow.start()
    assert inside.wait(20)
    started = time.monotonic()
    publish(make_engine(wh_hook), D2, 5, first_id=10)  # completes while D1 is mid-publish
    assert slow.is_alive() and time.monotonic() - started < 20
    same = threading.Thread(target=lambda: publish(make_engine(wh_hook), D1, 3, first_id=50))
    same.start()
    time.sleep(0.7)
    assert same.is_alive()  # waits for the D1 publish (advisory lock of that partition)
    release.set()
    slow.join(20)
    same.join(20)
    assert [(r["partition_start"], r["rows"]) for r in ledger(db)] == [(D2, 5), (D1, 1), (D1, 3)]


def test_readers_of_the_parent_see_whole_partitions_during_swaps(wh_hook, db, dsn):
    engine = make_engine(wh_hook)
    setup_parent(engine, db)
    publish(engine, D1, 100)
    publish(engine, D2, 100, first_id=1000)
    reader = BackgroundReader(dsn, "select n from raw.orders_total")
    sizes = {D1: 100, D2: 100}
    valid = [200]
    reader.start()
    try:
        for i in range(1, 31):
            day = D1 if i % 2 else D2
            publish(engine, day, 100 + i, first_id=1000 if day == D2 else 1)
            sizes[day] = 100 + i
            valid.append(sizes[D1] + sizes[D2])
    finally:
        reader.stop()
    assert reader.errors == []
    assert set(reader.results) <= set(valid) and len(set(reader.results)) > 3  # only whole published states
    assert reader.results == sorted(reader.results)


def test_existing_partitions_are_found_through_partition_pruning(db):
    """Issue 14 item 12(b): the partition of a publish (and any child overlapping its range) is found without
    reading every child's bound; the answer equals the full catalog scan's, sub-partitions and a default
    partition included; a role that may not SELECT the parent falls back to the full scan."""
    from airflow_provider_dataeng.publish import catalog
    from airflow_provider_dataeng.publish.table_ref import TableRef

    q(db, """create schema raw; create schema other;
             create table raw.p (id int, d date) partition by range (d);
             create table raw.p_def partition of raw.p default;
             create table other.p_jan partition of raw.p for values from ('2026-01-01') to ('2026-02-01')
               partition by range (d);
             create table other.p_jan_a partition of other.p_jan for values from ('2026-01-01') to ('2026-01-15');
             create table raw.p_feb partition of raw.p for values from ('2026-02-01') to ('2026-03-01');
             create table raw."P Mar 1" partition of raw.p for values from ('2026-03-01') to ('2026-03-02')""")
    parent = one(db, "select 'raw.p'::regclass::oid")
    ref = TableRef("raw", "p")

    def found(lower: date, upper: date, conn=db) -> list[tuple]:
        return sorted((p.ref.qualified, p.lower, p.upper, p.is_default) for p in catalog.overlapping_partitions(
            conn, ref, parent, "d", "date", lower, upper))

    def full(lower: date, upper: date) -> list[tuple]:
        return sorted((p.ref.qualified, p.lower, p.upper, p.is_default) for p in catalog.partitions(
            db, parent, "date", lower, upper))

    cases = [(date(2026, 1, 10), date(2026, 1, 11)), (date(2026, 1, 20), date(2026, 2, 10)),
             (date(2026, 3, 1), date(2026, 3, 2)), (date(2026, 3, 2), date(2026, 3, 3)),
             (date(2025, 1, 1), date(2027, 1, 1))]
    for lower, upper in cases:  # the same overlapping children (the default one only when pruning keeps it)
        assert [r for r in found(lower, upper) if not r[3]] == [r for r in full(lower, upper) if not r[3]]
    assert found(date(2026, 3, 1), date(2026, 3, 2)) == [("raw.P Mar 1", date(2026, 3, 1), date(2026, 3, 2), False)]
    assert [r[0] for r in found(date(2026, 1, 20), date(2026, 2, 10))] == ["other.p_jan", "raw.p_feb"]
    q(db, "create role no_select; grant usage on schema raw, other to no_select")
    q(db, "set role no_select")
    try:
        assert [r for r in found(date(2026, 3, 1), date(2026, 3, 2)) if not r[3]] == [
            ("raw.P Mar 1", date(2026, 3, 1), date(2026, 3, 2), False)]
    finally:
        q(db, "reset role")
        q(db, "drop owned by no_select; drop role no_select")
