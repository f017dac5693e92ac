"""What the dashboard reads from a warehouse: ledger rows (``dataeng.load_ledger``) and the catalog.

All reads, no writes; every identifier is a bound parameter or ``sql.Identifier``. Timestamps are read in
a UTC session so text partition bounds cast the way the gap check casts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from airflow_provider_dataeng.publish.ledger import LEDGER_TABLE

TargetKey = tuple[str, str, str]  # (pipeline = dag_id, target_schema, target_table)


@dataclass(frozen=True)
class LedgerTarget:
    """One (pipeline, target table) pair seen in the ledger."""

    dag_id: str
    schema: str
    table: str
    task_id: str | None
    first_start: datetime | None
    last_span: timedelta | None
    loads: int

    @property
    def key(self) -> TargetKey:
        return (self.dag_id, self.schema, self.table)


@dataclass(frozen=True, slots=True)
class IntervalLoad:
    """The newest ledger row of one target for one ``partition_start``."""

    ledger_id: int
    start: datetime
    end: datetime | None
    status: str
    rows: int | None
    run_id: str | None
    task_id: str | None
    at: datetime | None = None
    error: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 1


@dataclass(frozen=True)
class CatalogState:
    exists: bool
    partitioned: bool
    partitions: tuple[tuple[datetime, datetime], ...] = ()

    def covered(self, start: datetime, end: datetime) -> bool:
        return any(lo <= start and end <= hi for lo, hi in self.partitions)


def _ledger() -> sql.Composable:
    return sql.Identifier(*LEDGER_TABLE)


def _utc(cur: Any) -> None:
    cur.execute("select set_config('TimeZone', 'UTC', true)")


def ledger_present(conn: Any) -> bool:
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s) is not null", [".".join(f'"{p}"' for p in LEDGER_TABLE)])
        return bool(cur.fetchone()[0])


def list_targets(conn: Any, dag_ids: Iterable[str] | None) -> list[LedgerTarget]:
    """Every (pipeline, target) in the ledger whose pipeline is one of ``dag_ids`` (``None``: every pipeline)."""
    query = sql.SQL(
        """
        with g as (
          select pipeline, target_schema, target_table, max(id) as last_id, min(partition_start) as first_start,
                 count(*) as loads
          from {ledger}
          where {where}
          group by pipeline, target_schema, target_table
        )
        select g.pipeline, g.target_schema, g.target_table, l.task_id, g.first_start,
               l.partition_end - l.partition_start, g.loads
        from g join {ledger} l on l.id = g.last_id
        order by g.pipeline, g.target_schema, g.target_table
        """
    ).format(ledger=_ledger(), where=sql.SQL("pipeline is not null" if dag_ids is None else "pipeline = any(%(dags)s)"))
    with conn.cursor() as cur:
        _utc(cur)
        cur.execute(query, {} if dag_ids is None else {"dags": sorted(set(dag_ids))})
        return [LedgerTarget(*row) for row in cur.fetchall()]


def latest_loads(
    conn: Any, targets: Sequence[LedgerTarget], since: datetime
) -> dict[TargetKey, list[IntervalLoad]]:
    """The newest ledger row per target and ``partition_start >= since``, by target (any order).

    With the row's rows, run, task, checks, error, finish time and how many attempts the interval had.
    """
    if not targets:
        return {}
    # The newest row per interval by max(id) (a hash aggregate; no sort of the whole ledger).
    query = sql.SQL(
        """
        with m as (
          select max(id) as id, count(*) as attempts
          from {ledger}
          where (pipeline, target_schema, target_table) in (
                  select * from unnest(%(dags)s::text[], %(schemas)s::text[], %(tables)s::text[]))
            and partition_start >= %(since)s
          group by pipeline, target_schema, target_table, partition_start
        )
        select l.pipeline, l.target_schema, l.target_table, l.id, l.partition_start, l.partition_end, l.status,
               l.rows, l.run_id, l.task_id, coalesce(l.finished_at, l.started_at), l.error, l.checks, m.attempts
        from m join {ledger} l on l.id = m.id
        """
    ).format(ledger=_ledger())
    params = {
        "dags": [t.dag_id for t in targets],
        "schemas": [t.schema for t in targets],
        "tables": [t.table for t in targets],
        "since": since,
    }
    out: dict[TargetKey, list[IntervalLoad]] = {t.key: [] for t in targets}
    with conn.cursor() as cur:
        _utc(cur)
        cur.execute("select set_config('work_mem', '64MB', true)")
        cur.execute(query, params)
        for p, s, t, id_, lo, hi, status, rows, run_id, task_id, at, error, checks, attempts in cur.fetchall():
            out[(p, s, t)].append(IntervalLoad(id_, lo, hi, status, rows, run_id, task_id, at, error,
                                               list(checks or ()), int(attempts)))
    return out


def recent_checks(conn: Any, target: LedgerTarget, limit: int = 10) -> list[dict[str, Any]]:
    """The newest ``limit`` ledger rows of a target with their checks (observed value and threshold)."""
    query = sql.SQL(
        """
        select id, partition_start, partition_end, status, rows, run_id, task_id, checks, error,
               coalesce(finished_at, started_at) as at
        from {ledger}
        where pipeline = %s and target_schema = %s and target_table = %s
        order by id desc limit %s
        """
    ).format(ledger=_ledger())
    with conn.cursor() as cur:
        _utc(cur)
        cur.execute(query, [target.dag_id, target.schema, target.table, limit])
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def newest_published(conn: Any, target: LedgerTarget) -> tuple[datetime | None, datetime | None]:
    """``(max partition_end, max finished_at)`` over the target's published loads."""
    query = sql.SQL(
        "select max(partition_end), max(coalesce(finished_at, started_at)) from {ledger} "
        "where pipeline = %s and target_schema = %s and target_table = %s and status = 'published'"
    ).format(ledger=_ledger())
    with conn.cursor() as cur:
        _utc(cur)
        cur.execute(query, [target.dag_id, target.schema, target.table])
        end, at = cur.fetchone()
        return end, at


_CATALOG_SQL = r"""
with wanted as (select * from unnest(%(schemas)s::text[], %(tables)s::text[]) as w(nspname, relname))
select w.nspname, w.relname, c.relkind::text, b.lower_bound, b.upper_bound
from wanted w
left join pg_namespace n on n.nspname = w.nspname
left join pg_class c on c.relnamespace = n.oid and c.relname = w.relname
left join lateral (
  select m[1]::timestamptz as lower_bound, m[2]::timestamptz as upper_bound
  from pg_inherits i join pg_class part on part.oid = i.inhrelid,
       regexp_match(pg_get_expr(part.relpartbound, part.oid),
                    $re$^FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)$$re$) m
  where i.inhparent = c.oid and c.relkind = 'p'
) b on true
"""


def catalog_states(conn: Any, tables: Iterable[tuple[str, str]]) -> dict[tuple[str, str], CatalogState]:
    """Whether each ``(schema, table)`` exists, is partitioned, and its partitions' bounds (one query)."""
    wanted = sorted(set(tables))
    if not wanted:
        return {}
    found: dict[tuple[str, str], tuple[str | None, list[tuple[datetime, datetime]]]] = {}
    with conn.cursor() as cur:
        _utc(cur)
        cur.execute(_CATALOG_SQL, {"schemas": [s for s, _ in wanted], "tables": [t for _, t in wanted]})
        for schema, table, relkind, lo, hi in cur.fetchall():
            kind, parts = found.setdefault((schema, table), (relkind, []))
            if lo is not None and hi is not None:
                parts.append((lo, hi))
    out = {}
    for key in wanted:
        relkind, parts = found.get(key, (None, []))
        out[key] = CatalogState(exists=relkind is not None, partitioned=relkind == "p",
                                partitions=tuple(sorted(parts)))
    return out
