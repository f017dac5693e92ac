"""The load ledger: one row per publish attempt, in ``dataeng.load_ledger`` of the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

LEDGER_TABLE = ("dataeng", "load_ledger")
STATUSES = ("published", "rejected", "failed")
# Serializes concurrent ensure_ledger() calls (CREATE ... IF NOT EXISTS races on the catalog otherwise).
_LEDGER_DDL_LOCK = 0x6461_7461_656E_6701

LEDGER_DDL = """
create schema if not exists dataeng;
create table if not exists dataeng.load_ledger (
  id              bigserial primary key,
  pipeline        text,
  task_id         text,
  target_schema   text not null,
  target_table    text not null,
  partition_column text,
  partition_start timestamptz,
  partition_end   timestamptz,
  interval_start  timestamptz,
  interval_end    timestamptz,
  run_id          text,
  mode            text not null,
  rows            bigint,
  bytes           bigint,
  checks          jsonb not null default '[]',
  status          text not null check (status in ('published','rejected','failed')),
  error           text,
  details         jsonb not null default '{}',
  started_at      timestamptz not null,
  finished_at     timestamptz
);
create index if not exists load_ledger_target on dataeng.load_ledger (target_schema, target_table, partition_start);
"""
# Columns added after the first release: a ledger created by an older version gets them on first use.
LEDGER_MIGRATION = """
alter table dataeng.load_ledger add column if not exists interval_start timestamptz;
alter table dataeng.load_ledger add column if not exists interval_end timestamptz;
"""


def ledger_ident() -> sql.Composed:
    return sql.Composed([sql.Identifier(LEDGER_TABLE[0]), sql.SQL("."), sql.Identifier(LEDGER_TABLE[1])])


def ensure_ledger(conn: psycopg.Connection) -> None:
    """Create the ledger schema, table and index when missing (safe to call concurrently).

    Runs in the connection's current transaction; the caller commits (in autocommit mode each
    statement commits by itself).
    """
    with conn.cursor() as cur:
        cur.execute("""select count(*) from pg_attribute where attrelid = to_regclass('dataeng.load_ledger')
                       and attname in ('interval_start', 'interval_end') and not attisdropped""")
        if cur.fetchone()[0] == 2:
            return
        with conn.transaction():
            cur.execute("select pg_advisory_xact_lock(%s)", [_LEDGER_DDL_LOCK])
            cur.execute(LEDGER_DDL)
            cur.execute(LEDGER_MIGRATION)


@dataclass
class LedgerEntry:
    """One ledger row (column names as in the table)."""

    target_schema: str
    target_table: str
    mode: str
    status: str
    started_at: datetime
    pipeline: str | None = None
    task_id: str | None = None
    partition_column: str | None = None
    partition_start: datetime | None = None
    partition_end: datetime | None = None
    interval_start: datetime | None = None  # the data interval of the run (table swaps have no partition bounds)
    interval_end: datetime | None = None
    run_id: str | None = None
    rows: int | None = None
    bytes: int | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    finished_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"ledger status={self.status!r}: expected one of {', '.join(STATUSES)}")


def write_ledger_row(conn: psycopg.Connection, entry: LedgerEntry) -> int:
    """Insert ``entry`` in the connection's current transaction; return the new row id."""
    values = {
        "pipeline": entry.pipeline,
        "task_id": entry.task_id,
        "target_schema": entry.target_schema,
        "target_table": entry.target_table,
        "partition_column": entry.partition_column,
        "partition_start": entry.partition_start,
        "partition_end": entry.partition_end,
        "interval_start": entry.interval_start,
        "interval_end": entry.interval_end,
        "run_id": entry.run_id,
        "mode": entry.mode,
        "rows": entry.rows,
        "bytes": entry.bytes,
        "checks": Jsonb(entry.checks),
        "status": entry.status,
        "error": (entry.error or None) and entry.error[:4000],
        "details": Jsonb(entry.details),
        "started_at": entry.started_at,
        "finished_at": entry.finished_at or datetime.now(timezone.utc),
    }
    query = sql.SQL("insert into {} ({}) values ({}) returning id").format(
        ledger_ident(),
        sql.SQL(", ").join(sql.Identifier(k) for k in values),
        sql.SQL(", ").join(sql.Placeholder() for _ in values),
    )
    with conn.cursor() as cur:
        cur.execute(query, list(values.values()))
        return int(cur.fetchone()[0])


def last_published(conn: psycopg.Connection, schema: str, table: str,
                   partition_start: datetime | None = None) -> dict[str, Any] | None:
    """The newest 'published' ledger row of a table (or of one partition), as a dict, or None."""
    cond = sql.SQL("partition_start is null") if partition_start is None else sql.SQL("partition_start = %s")
    params: list[Any] = [schema, table] + ([] if partition_start is None else [partition_start])
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(sql.SQL(
            "select * from {} where target_schema = %s and target_table = %s and status = 'published' and {} "
            "order by id desc limit 1").format(ledger_ident(), cond), params)
        return cur.fetchone()
