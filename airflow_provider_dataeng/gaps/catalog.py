"""What the warehouse holds for a target: its partitions (bounds from the catalog) and its ledger rows.

Partition bounds are read with ``pg_get_expr(relpartbound)`` via ``pg_inherits`` and cast back to
``timestamptz`` by PostgreSQL itself (session time zone UTC, so ``timestamp``/``date`` keys read as UTC);
partition names are never parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

try:  # the publish engine owns the ledger; fall back to the contract's name
    from airflow_provider_dataeng.publish.ledger import LEDGER_TABLE
except ImportError:  # pragma: no cover - until publish/ledger.py exists
    LEDGER_TABLE = ("dataeng", "load_ledger")

TABLE_INFO_SQL = """
select c.relkind::text,
       (select count(*) from pg_partitioned_table pt where pt.partrelid = c.oid and pt.partnatts = 1
                                                    and pt.partstrat = 'r') as range_single_key
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and c.relname = %(table)s
"""

# Single-key range bounds render as FOR VALUES FROM ('<lo>') TO ('<hi>'); MINVALUE/MAXVALUE/DEFAULT don't match.
PARTITIONS_SQL = r"""
select name, bound, m[1]::timestamptz as lower_bound, m[2]::timestamptz as upper_bound
from (
  select c.relname::text as name,
         pg_get_expr(c.relpartbound, c.oid) as bound,
         regexp_match(pg_get_expr(c.relpartbound, c.oid), $re$^FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)$$re$) as m
  from pg_inherits i
  join pg_class c on c.oid = i.inhrelid
  join pg_class p on p.oid = i.inhparent
  join pg_namespace n on n.oid = p.relnamespace
  where n.nspname = %(schema)s and p.relname = %(table)s
) parts
order by lower_bound nulls first, name
"""


@dataclass(frozen=True)
class Partition:
    """One attached partition; ``lower``/``upper`` are ``None`` for DEFAULT, MINVALUE/MAXVALUE or multi-key."""

    name: str
    bound: str
    lower: datetime | None
    upper: datetime | None

    def covers(self, start: datetime, end: datetime) -> bool:
        return self.lower is not None and self.upper is not None and self.lower <= start and end <= self.upper


@dataclass(frozen=True)
class TableState:
    exists: bool
    partitioned: bool
    partitions: tuple[Partition, ...]


@dataclass(frozen=True)
class LedgerRow:
    id: int
    status: str
    partition_start: datetime
    partition_end: datetime | None
    run_id: str | None
    pipeline: str | None
    error: str | None
    at: datetime | None

    def covers(self, start: datetime, end: datetime) -> bool:
        return self.partition_start <= start and (self.partition_end is None or end <= self.partition_end)


def _utc_session(cur: Any) -> None:
    cur.execute("select set_config('TimeZone', 'UTC', true)")


def read_table_state(conn: Any, schema: str, table: str) -> TableState:
    """Whether the target exists, whether it is range-partitioned on one key, and its partitions."""
    with conn.cursor() as cur:
        _utc_session(cur)
        cur.execute(TABLE_INFO_SQL, {"schema": schema, "table": table})
        row = cur.fetchone()
        if row is None:
            return TableState(exists=False, partitioned=False, partitions=())
        relkind, range_single_key = row
        if relkind != "p":
            return TableState(exists=True, partitioned=False, partitions=())
        if not range_single_key:
            raise ValueError(
                f"target_table {schema}.{table}: the gap check needs RANGE partitioning on one column"
            )
        cur.execute(PARTITIONS_SQL, {"schema": schema, "table": table})
        parts = tuple(Partition(name, bound, lower, upper) for name, bound, lower, upper in cur.fetchall())
    return TableState(exists=True, partitioned=True, partitions=parts)


def ledger_exists(conn: Any) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "select exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relname = %s)",
            list(LEDGER_TABLE),
        )
        return bool(cur.fetchone()[0])


def read_ledger(
    conn: Any, schema: str, table: str, start: datetime, end: datetime, pipeline: str | None = None
) -> list[LedgerRow]:
    """Ledger rows for ``schema.table`` whose partition overlaps ``[start, end)``, oldest first."""
    query = sql.SQL(
        """
        select id, status, lo, hi, run_id, pipeline, error, coalesce(finished_at, started_at)
        from (  -- a table swap has no partition bounds: its run's data interval (a column newer ledgers have)
          select l.*, coalesce(partition_start, (to_jsonb(l) ->> 'interval_start')::timestamptz) as lo,
                 coalesce(partition_end, (to_jsonb(l) ->> 'interval_end')::timestamptz) as hi
          from {ledger} l
          where target_schema = %(schema)s and target_table = %(table)s
        ) rows
        where lo is not null and lo < %(end)s and (hi is null or hi > %(start)s)
          {pipeline_filter}
        order by id
        """
    ).format(
        ledger=sql.Identifier(*LEDGER_TABLE),
        pipeline_filter=sql.SQL("and pipeline = %(pipeline)s" if pipeline else ""),
    )
    with conn.cursor() as cur:
        _utc_session(cur)
        cur.execute(query, {"schema": schema, "table": table, "start": start, "end": end, "pipeline": pipeline})
        return [LedgerRow(*row) for row in cur.fetchall()]
