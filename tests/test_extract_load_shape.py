"""What the load itself does on real clusters: the stamped partition column filled in by the warehouse, when the
source is counted in its snapshot, and the statistics a published partition goes live with."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from tests.fixtures.extract import rows_of, run_extract

D1 = datetime(2024, 3, 1, tzinfo=timezone.utc)

ORDERS = """
create table orders (id int primary key, status text, amount numeric(12,2), updated_at timestamptz not null);
insert into orders select g, case when g % 3 = 0 then 'shipped' else 'placed' end, g / 10.0,
  '2024-03-01 00:00+00'::timestamptz + g * interval '1 minute' from generate_series(1, 500) g;
create view orders_placed as select * from orders where status = 'placed';
"""


@pytest.fixture
def env(source_cluster, source_db, pg_cluster, pg_db, source_conn_id, warehouse_conn_id):
    source_cluster.psql(ORDERS, source_db)

    class Env:
        wh, wh_db = pg_cluster, pg_db

        def extract(self, **kw):
            return run_extract(D1, source_conn_id=source_conn_id, target_conn_id=warehouse_conn_id, **kw)

        def q(self, query: str) -> list[tuple]:
            return rows_of(pg_cluster, pg_db, query)

        def details(self) -> dict:
            return self.q("select details from dataeng.load_ledger order by id desc limit 1")[0][0]

        def stamp_default(self, table: str) -> str | None:
            """The default of ``table._interval_start`` (None: no default)."""
            return self.q(
                "select pg_get_expr(d.adbin, d.adrelid) from pg_attribute a left join pg_attrdef d"
                " on d.adrelid = a.attrelid and d.adnum = a.attnum"
                f" where a.attrelid = '{table}'::regclass and a.attname = '_interval_start'")[0][0]

    return Env()


def test_stamped_partition_column_is_filled_by_the_warehouse_and_leaves_no_default(env):
    out = env.extract(source_table="orders", target_table="raw.orders")
    assert out["rows"] == 500
    assert env.q("select count(*), min(_interval_start), max(_interval_start) from raw.orders") == [(500, D1, D1)]
    # the load's DEFAULT is gone from the published partition and was never on the parent
    assert env.stamp_default("raw.orders__p_20240301") is None and env.stamp_default("raw.orders") is None
    assert env.q("select count(*) from raw.orders where (id, status, amount) is null") == [(0,)]
    # a rerun loads the same rows with the same stamp
    env.extract(source_table="orders", target_table="raw.orders")
    assert env.q("select count(*), count(distinct _interval_start) from raw.orders") == [(500, 1)]


def test_date_partition_column_keeps_binary_copy_and_its_parent_default(env):
    env.wh.psql("create schema if not exists raw; create table raw.orders_d (id int, status text, amount numeric(12,2),"
                " updated_at timestamptz not null, _interval_start date not null default '1970-01-01')"
                " partition by range (_interval_start)", env.wh_db)
    env.extract(source_table="orders", target_table="raw.orders_d")
    assert env.q("select count(*), min(_interval_start), max(_interval_start) from raw.orders_d") == [
        (500, date(2024, 3, 1), date(2024, 3, 1))]
    # a stamped date column is not sent: nothing forces the text format any more
    assert env.details()["copy_format"] == "binary"
    # the partition (staging, created LIKE the parent) gets the parent's own default back after the load
    assert env.stamp_default("raw.orders_d__p_20240301") == "'1970-01-01'::date"


def test_a_table_is_counted_by_its_copy_a_view_or_a_query_by_a_count_in_the_snapshot(env):
    env.extract(source_table="orders", target_table="raw.orders")
    details = env.details()
    assert details["source_count_by"] == "the source COPY (a table)" and details["source_count"] == 500
    env.extract(source_table="orders_placed", target_table="raw.orders_placed")
    details = env.details()
    assert details["source_count_by"] == "count(*) in the snapshot" and details["source_count"] == 334
    env.extract(source_sql="select * from orders where id <= 10", target_table="raw.orders_q")
    details = env.details()
    assert details["source_count_by"] == "count(*) in the snapshot" and details["source_count"] == 10
    # incremental_id on a table: the COPY's own count, no separate count of the interval
    env.extract(source_table="orders", target_table="raw.orders_i", mode="incremental_id")
    details = env.details()
    assert details["source_count_by"] == "the source COPY (a table)" and details["source_count"] == 500


@pytest.mark.parametrize("analyze", [False, True])
def test_statistics_the_partition_goes_live_with(env, analyze):
    env.extract(source_table="orders", target_table="raw.orders", analyze=analyze)
    # VACUUM always ran: the planner knows the partition's size (reltuples) and every page is all-visible
    assert env.q("select reltuples::int, relallvisible = relpages and relpages > 0 from pg_class"
                 " where oid = 'raw.orders__p_20240301'::regclass") == [(500, True)]
    stats = env.q("select count(*) from pg_stats where schemaname = 'raw' and tablename = 'orders__p_20240301'")[0][0]
    # analyze: column statistics of every column; otherwise none yet (autovacuum's next round adds them)
    assert stats == (5 if analyze else 0)
