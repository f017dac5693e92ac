"""The demo's generated shop (devstack/shop.py) on a real PostgreSQL: schema, determinism, life cycle, late rows."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from devstack.pg import PgCluster
from devstack.shop import LATE_WINDOW, Shop, source_checksums

UTC = timezone.utc
DAYS = [date(2026, 3, 1) + timedelta(days=n) for n in range(4)]
UNTIL = datetime(2026, 3, 4, 18, tzinfo=UTC)

EXPECTED_COLUMNS = {
    "orders": [("id", "bigint"), ("customer_id", "bigint"), ("status", "text"), ("amount", "numeric(12,2)"),
               ("created_at", "timestamp with time zone"), ("updated_at", "timestamp with time zone"),
               ("note", "text")],
    "customers": [("id", "bigint"), ("name", "text"), ("email", "text"), ("country", "text"),
                  ("created_at", "timestamp with time zone"), ("updated_at", "timestamp with time zone")],
    "products": [("id", "bigint"), ("name", "text"), ("category", "text"), ("price", "numeric(10,2)"),
                 ("updated_at", "timestamp with time zone")],
    "payments": [("id", "bigint"), ("order_id", "bigint"), ("amount", "numeric(12,2)"), ("method", "text"),
                 ("paid_at", "timestamp with time zone"), ("updated_at", "timestamp with time zone")],
}


def _build(cluster: PgCluster, dbname: str, seed: int = 7) -> Shop:
    shop = Shop(cluster.dsn(dbname), seed=seed, orders_per_day=400, initial_customers=300)
    shop.build(DAYS, until=UNTIL)
    return shop


def test_schema_is_exactly_the_documented_one(source_cluster: PgCluster, source_db: str) -> None:
    _build(source_cluster, source_db)
    with psycopg.connect(source_cluster.dsn(source_db)) as conn:
        for table, columns in EXPECTED_COLUMNS.items():
            got = conn.execute(
                "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
                "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum",
                (table,),
            ).fetchall()
            assert got == columns, table
            pk = conn.execute(
                "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
                "and a.attnum = any(i.indkey) where i.indrelid = %s::regclass and i.indisprimary", (table,),
            ).fetchall()
            assert pk == [("id",)], table
            indexed = conn.execute(
                "select count(*) from pg_indexes where tablename = %s and indexdef like '%%(updated_at)%%'",
                (table,),
            ).fetchone()[0]
            assert indexed == 1, f"{table}: no index on updated_at"


def test_same_seed_same_shop_other_seed_other_shop(source_cluster: PgCluster) -> None:
    names = ["shop_det_a", "shop_det_b", "shop_det_c"]
    try:
        for name in names:
            source_cluster.create_database(name)
        _build(source_cluster, names[0], seed=7)
        _build(source_cluster, names[1], seed=7)
        _build(source_cluster, names[2], seed=8)
        a, b, c = (source_checksums(source_cluster.dsn(n)) for n in names)
        assert a == b
        assert a["orders"] != c["orders"]
        assert all(rows > 0 for rows, _ in a.values())
    finally:
        for name in names:
            source_cluster.drop_database(name)


def test_orders_move_through_their_life_cycle(source_cluster: PgCluster, source_db: str) -> None:
    _build(source_cluster, source_db)
    with psycopg.connect(source_cluster.dsn(source_db)) as conn:
        statuses = dict(conn.execute("select status, count(*) from orders group by 1").fetchall())
        assert {"placed", "paid", "shipped", "delivered", "cancelled"} <= set(statuses)
        # updated_at moved on for orders that changed status, never before creation, never after `until`.
        moved, bad = conn.execute(
            "select count(*) filter (where updated_at > created_at), "
            "count(*) filter (where updated_at < created_at or updated_at >= %s) from orders", (UNTIL,),
        ).fetchone()
        assert moved > 0 and bad == 0
        # Every paid (or later) order has exactly one payment of its amount; placed orders have none.
        mismatched = conn.execute(
            "select count(*) from orders o left join payments p on p.order_id = o.id "
            "where (o.status in ('paid', 'shipped', 'delivered', 'returned') and (p.id is null or p.amount <> o.amount)) "
            "or (o.status = 'placed' and p.id is not null)"
        ).fetchone()[0]
        assert mismatched == 0
        assert conn.execute("select count(*) from (select order_id from payments group by 1 having count(*) > 1) d"
                            ).fetchone()[0] == 0
        methods = {r[0] for r in conn.execute("select distinct method from payments")}
        assert methods <= {"card", "paypal", "bank_transfer", "voucher"} and len(methods) >= 3
        # Notes exercise the data path: NULL and empty string both occur, and so do tabs and newlines.
        kinds = conn.execute(
            "select count(*) filter (where note is null), count(*) filter (where note = ''), "
            "count(*) filter (where note like E'%\\t%' or note like E'%\\n%') from orders"
        ).fetchone()
        assert all(k > 0 for k in kinds), kinds


def test_late_rows_are_committed_with_the_next_day(source_cluster: PgCluster, source_db: str) -> None:
    """Late rows: committed by the next day's batch with their older timestamp, in the day's last LATE_WINDOW."""
    dsn = source_cluster.dsn(source_db)
    shop = Shop(dsn, seed=7, initial_customers=300)
    shop.create_schema()
    shop.seed_catalog(DAYS[0])
    first = shop.generate_day(DAYS[0])
    with psycopg.connect(dsn) as conn:
        seen = set(conn.execute("select id, status, updated_at from orders").fetchall())
    second = shop.generate_day(DAYS[1])
    assert first.late_deferred > 0 and second.late_committed > 0
    day_end = datetime.combine(DAYS[1], datetime.min.time(), tzinfo=UTC)
    with psycopg.connect(dsn) as conn:
        now = set(conn.execute("select id, status, updated_at from orders").fetchall())
    late = [row for row in now - seen if row[2] < day_end]  # new in batch 2, dated on day 1
    assert late, "no late rows"
    assert all(day_end - LATE_WINDOW <= row[2] < day_end for row in late), late


@pytest.mark.parametrize("until_hour", [14, 23])
def test_a_partial_day_stops_at_until(source_cluster: PgCluster, source_db: str, until_hour: int) -> None:
    shop = Shop(source_cluster.dsn(source_db), seed=3, orders_per_day=300, initial_customers=100)
    until = datetime.combine(DAYS[0], datetime.min.time(), tzinfo=UTC) + timedelta(hours=until_hour)
    shop.build([DAYS[0]], until=until)
    with psycopg.connect(source_cluster.dsn(source_db)) as conn:
        newest = conn.execute("select greatest((select max(updated_at) from orders), "
                              "(select max(updated_at) from payments))").fetchone()[0]
    assert newest < until
