"""Plant ledger rows and range partitions directly in SQL (for gap-check tests, no publish engine run)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from psycopg import sql

from airflow_provider_dataeng.publish.ledger import LedgerEntry, ensure_ledger, write_ledger_row


def partition_suffix(start: datetime) -> str:
    """``YYYYMMDD`` for midnight bounds, else ``YYYYMMDDTHHMMSS`` (UTC), as in the contract."""
    start = start.astimezone(timezone.utc)
    if (start.hour, start.minute, start.second) == (0, 0, 0):
        return start.strftime("%Y%m%d")
    return start.strftime("%Y%m%dT%H%M%S")


def create_partitioned_table(conn: Any, schema: str, table: str, column: str = "_interval_start") -> None:
    """``schema.table (id bigint, payload text, <column> timestamptz) PARTITION BY RANGE (<column>)``."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        cur.execute(
            sql.SQL("create table {} (id bigint, payload text, {} timestamptz not null) partition by range ({})").format(
                sql.Identifier(schema, table), sql.Identifier(column), sql.Identifier(column)
            )
        )


def attach_partition(conn: Any, schema: str, table: str, start: datetime, end: datetime, rows: int = 1) -> str:
    """Create the partition ``<table>__p_<start>`` for ``[start, end)`` with ``rows`` rows; return its name."""
    name = f"{table}__p_{partition_suffix(start)}"
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("create table {} partition of {} for values from ({}) to ({})").format(
                sql.Identifier(schema, name), sql.Identifier(schema, table), sql.Literal(start), sql.Literal(end)
            )
        )
        cur.execute(
            sql.SQL("insert into {} select g, 'row ' || g, %s from generate_series(1, %s) g").format(
                sql.Identifier(schema, table)
            ),
            [start, rows],
        )
    return name


def plant_ledger_row(
    conn: Any,
    schema: str,
    table: str,
    start: datetime | None,
    end: datetime | None,
    status: str,
    *,
    error: str | None = None,
    run_id: str | None = None,
    pipeline: str | None = None,
    mode: str = "partition_swap",
) -> int:
    """Insert one ledger row (creating the ledger when missing); return its id."""
    ensure_ledger(conn)
    return write_ledger_row(
        conn,
        LedgerEntry(
            target_schema=schema, target_table=table, mode=mode, status=status,
            started_at=datetime.now(timezone.utc), pipeline=pipeline, partition_column="_interval_start",
            partition_start=start, partition_end=end, run_id=run_id, error=error, rows=None if status != "published" else 1,
        ),
    )
