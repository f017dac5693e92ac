"""Raw shop tables (as the extracts leave them) with seed rows, for dbt tests on a real warehouse.

The columns are the contract with the extracts and the demo's generated shop: each raw table is the
source table plus ``_interval_start`` (the extract's data interval). Incremental extracts hold several
versions of a row: order 2 is extracted twice (placed, then paid), order 3 three times.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.airflow_env import REPO_ROOT

PROJECT_DIR = REPO_ROOT / "dbt_project"

RAW_DDL = """
create schema if not exists raw;
create table raw.customers (
  id bigint, name text, email text, country text, created_at timestamptz, updated_at timestamptz,
  _interval_start timestamptz not null);
create table raw.products (
  id bigint, name text, category text, price numeric(10,2), updated_at timestamptz,
  _interval_start timestamptz not null);
create table raw.orders (
  id bigint, customer_id bigint, status text, amount numeric(12,2), created_at timestamptz,
  updated_at timestamptz, note text, _interval_start timestamptz not null);
create table raw.payments (
  id bigint, order_id bigint, amount numeric(12,2), method text, paid_at timestamptz,
  updated_at timestamptz, _interval_start timestamptz not null);
"""

RAW_ROWS = """
insert into raw.customers values
  (1, 'Ada', 'ADA@example.com', 'DE', '2024-01-01 08:00+00', '2024-01-01 08:00+00', '2024-01-01'),
  (2, 'Bob', 'bob@example.com', 'FR', '2024-01-01 09:00+00', '2024-01-01 09:00+00', '2024-01-01'),
  (3, 'Cy',  'cy@example.com',  'DE', '2024-01-02 10:00+00', '2024-01-02 10:00+00', '2024-01-02'),
  -- customer 2 changed country: a newer version in the next snapshot
  (1, 'Ada', 'ADA@example.com', 'DE', '2024-01-01 08:00+00', '2024-01-01 08:00+00', '2024-01-02'),
  (2, 'Bob', 'bob@example.com', 'ES', '2024-01-01 09:00+00', '2024-01-02 12:00+00', '2024-01-02');
insert into raw.products values
  (1, 'Mug', 'kitchen', 9.50, '2024-01-01 00:00+00', '2024-01-01'),
  (2, 'Pen', 'office', 2.25, '2024-01-01 00:00+00', '2024-01-01'),
  (2, 'Pen', 'office', 2.50, '2024-01-02 06:00+00', '2024-01-02');
insert into raw.orders values
  (1, 1, 'paid',      10.00, '2024-01-01 10:00+00', '2024-01-01 10:05+00', 'first',  '2024-01-01'),
  (2, 1, 'placed',    20.00, '2024-01-01 11:00+00', '2024-01-01 11:00+00', null,     '2024-01-01'),
  (2, 1, 'paid',      20.00, '2024-01-01 11:00+00', '2024-01-02 09:00+00', null,     '2024-01-02'),
  (3, 2, 'placed',    30.00, '2024-01-01 12:00+00', '2024-01-01 12:00+00', 'tab	x', '2024-01-01'),
  (3, 2, 'shipped',   30.00, '2024-01-01 12:00+00', '2024-01-02 08:00+00', 'tab	x', '2024-01-02'),
  (3, 2, 'delivered', 30.00, '2024-01-01 12:00+00', '2024-01-03 08:00+00', 'tab	x', '2024-01-03'),
  (4, 3, 'cancelled', 40.00, '2024-01-02 13:00+00', '2024-01-02 14:00+00', null,     '2024-01-02'),
  (5, 3, 'returned',  50.00, '2024-01-02 15:00+00', '2024-01-03 15:00+00', null,     '2024-01-03');
insert into raw.payments values
  (1, 1, 10.00, 'card',          '2024-01-01 10:05+00', '2024-01-01 10:05+00', '2024-01-01'),
  (2, 2, 20.00, 'paypal',        '2024-01-02 09:00+00', '2024-01-02 09:00+00', '2024-01-02'),
  (3, 3, 30.00, 'bank_transfer', '2024-01-01 12:30+00', '2024-01-01 12:30+00', '2024-01-01'),
  (4, 5, 50.00, 'voucher',       '2024-01-02 15:10+00', '2024-01-02 15:10+00', '2024-01-02');
"""

# What the marts must hold for RAW_ROWS (revenue = paid, shipped and delivered orders).
EXPECTED_DAILY_REVENUE = {
    "2024-01-01": {"orders": 3, "revenue": Decimal("60.00")},  # orders 1 (paid), 2 (paid), 3 (delivered)
    "2024-01-02": {"orders": 2, "revenue": Decimal("0.00")},  # 4 cancelled, 5 returned
}
EXPECTED_LIFETIME_VALUE = {1: Decimal("30.00"), 2: Decimal("30.00"), 3: Decimal("0.00")}


RAW_TABLES = ("customers", "products", "orders", "payments")


def create_raw_tables(cluster, dbname: str, owner: str | None = None) -> None:
    """Create the raw.* tables with the seed rows in ``dbname`` (optionally owned by role ``owner``)."""
    with psycopg.connect(cluster.dsn(dbname), autocommit=True) as conn:
        conn.execute(RAW_DDL)
        conn.execute(RAW_ROWS)
        if owner:
            conn.execute(sql.SQL("alter schema raw owner to {}").format(sql.Identifier(owner)))
            for table in RAW_TABLES:
                conn.execute(
                    sql.SQL("alter table {} owner to {}").format(sql.Identifier("raw", table), sql.Identifier(owner))
                )


def create_login_role(cluster, role: str, password: str, dbname: str) -> None:
    """A role with a password that owns ``dbname`` (the harness trusts loopback, so it is not checked)."""
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        verb = "alter" if exists else "create"
        conn.execute(
            sql.SQL(verb + " role {} login password {}").format(sql.Identifier(role), sql.Literal(password))
        )
        conn.execute(sql.SQL("alter database {} owner to {}").format(sql.Identifier(dbname), sql.Identifier(role)))


def query(cluster, dbname: str, text: str, params: tuple = ()) -> list[tuple]:
    """Rows of one query."""
    with psycopg.connect(cluster.dsn(dbname), autocommit=True) as conn:
        return conn.execute(text, params).fetchall()


def project_files(project_dir: Path = PROJECT_DIR) -> set[Path]:
    """Every file under the project (to check a run writes nothing into it)."""
    return {p for p in project_dir.rglob("*") if p.is_file()}
