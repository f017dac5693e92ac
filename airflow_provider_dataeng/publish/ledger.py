"""The load ledger: one row per publish attempt, in ``dataeng.load_ledger`` of the warehouse."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from airflow_provider_dataeng.publish.locks import release_advisory_lock

log = logging.getLogger(__name__)
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
# The dashboard and the gap check read a ledger by pipeline: (pipeline, target) -> intervals -> newest id.
PIPELINE_INDEX = "load_ledger_pipeline"
PIPELINE_INDEX_COLUMNS = ("pipeline", "target_schema", "target_table", "partition_start", "id")
# How long building the index on an existing ledger may wait for other sessions (then it is left for later).
INDEX_LOCK_TIMEOUT = "10s"

_STATE_SQL = """
select (select count(*) from pg_attribute where attrelid = to_regclass('dataeng.load_ledger')
          and attname in ('interval_start', 'interval_end') and not attisdropped) = 2,
       (select indisvalid from pg_index where indexrelid = to_regclass('dataeng.load_ledger_pipeline'))
"""


def ledger_ident() -> sql.Composed:
    return sql.Composed([sql.Identifier(LEDGER_TABLE[0]), sql.SQL("."), sql.Identifier(LEDGER_TABLE[1])])


def _create_index(concurrently: bool) -> sql.Composed:
    return sql.SQL("create index {} if not exists {} on {} ({})").format(
        sql.SQL("concurrently" if concurrently else ""), sql.Identifier(PIPELINE_INDEX), ledger_ident(),
        sql.SQL(", ").join(sql.Identifier(c) for c in PIPELINE_INDEX_COLUMNS))


def ensure_ledger(conn: psycopg.Connection) -> None:
    """Create the ledger schema, table and indexes when missing (safe to call concurrently).

    The fast path (everything there) is one catalog read: no DDL, no lock on the ledger. A new ledger is
    created in one transaction (under an advisory lock; the caller commits, or autocommit commits each
    statement). On a ledger of an older version, the pipeline index is built ``CONCURRENTLY`` when the
    connection is in autocommit mode and idle (publishes keep writing their ledger rows meanwhile; one
    session builds it, the others go on without waiting; if it cannot finish within
    ``INDEX_LOCK_TIMEOUT`` of waiting for other sessions it is dropped and tried again next time); inside
    a transaction it is built in that transaction (``CREATE INDEX`` takes a SHARE lock: ledger writes wait).
    """
    with conn.cursor() as cur:
        cur.execute(_STATE_SQL)
        columns_ok, index_valid = cur.fetchone()
        if columns_ok and index_valid:
            return
        idle_autocommit = conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if not columns_ok:
            with conn.transaction():
                cur.execute("select pg_advisory_xact_lock(%s)", [_LEDGER_DDL_LOCK])
                cur.execute("select to_regclass('dataeng.load_ledger') is null")
                fresh = cur.fetchone()[0]
                cur.execute(LEDGER_DDL)
                cur.execute(LEDGER_MIGRATION)
                if fresh or not idle_autocommit:  # an empty table: the index costs nothing
                    cur.execute(_create_index(concurrently=False))
            cur.execute(_STATE_SQL)
            if cur.fetchone()[1]:
                return
    if idle_autocommit:
        _build_index_concurrently(conn)
    else:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", [_LEDGER_DDL_LOCK])
            _drop_invalid_index(cur)
            cur.execute(_create_index(concurrently=False))


def _drop_invalid_index(cur: psycopg.Cursor, concurrently: bool = False) -> None:
    """Drop the pipeline index when an interrupted concurrent build left it invalid."""
    cur.execute("select indisvalid from pg_index where indexrelid = to_regclass('dataeng.load_ledger_pipeline')")
    row = cur.fetchone()
    if row is not None and not row[0]:
        cur.execute(sql.SQL("drop index {} if exists {}").format(
            sql.SQL("concurrently" if concurrently else ""), sql.Identifier(LEDGER_TABLE[0], PIPELINE_INDEX)))


def _build_index_concurrently(conn: psycopg.Connection) -> None:
    """``CREATE INDEX CONCURRENTLY`` by one session at a time (the others skip it); never fails the caller."""
    with conn.cursor() as cur:
        cur.execute("select pg_try_advisory_lock(%s)", [_LEDGER_DDL_LOCK])
        if not cur.fetchone()[0]:
            return  # another session is building it (or creating the ledger)
        try:
            cur.execute("select current_setting('lock_timeout')")
            previous = cur.fetchone()[0]
            cur.execute("select set_config('lock_timeout', %s, false)", [INDEX_LOCK_TIMEOUT])
            try:
                _drop_invalid_index(cur, concurrently=True)
                cur.execute(_create_index(concurrently=True))
            except psycopg.Error as exc:
                log.warning("Could not build the ledger index %s.%s yet (%s); the ledger works without it and "
                            "the next publish tries again", LEDGER_TABLE[0], PIPELINE_INDEX,
                            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                with contextlib.suppress(psycopg.Error):
                    _drop_invalid_index(cur, concurrently=True)
            finally:
                cur.execute("select set_config('lock_timeout', %s, false)", [previous])
        finally:
            release_advisory_lock(conn, "select pg_advisory_unlock(%s), pg_backend_pid()", [_LEDGER_DDL_LOCK],
                                  "ledger index build lock")


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
