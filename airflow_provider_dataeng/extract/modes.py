"""The SQL of the three extract modes: which source rows belong to one interval's partition.

- ``full_snapshot``: every source row.
- ``incremental_timestamp``: rows whose ``timestamp_column`` is in ``[start - lag, end)``.
- ``incremental_id``: rows whose ``id_column`` is in no OTHER partition of the target (a set difference).
  The ids already in the warehouse are streamed (COPY, warehouse -> source) into a session temp table on
  the source, and the difference is an anti-join there: no id ever becomes a Python object, and the only
  state is the warehouse table itself. A rerun of an interval reloads its own ids (its partition is
  excluded from the known set), so reruns are exact.

When the partition column is a source column (instead of the stamped ``_interval_start``), every mode also
keeps only rows with that column in ``[start, end)`` so the rows fit the partition's bounds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_dataeng.extract.copy_stream import CopyStats, copy_in_sql, copy_out_sql, stream_copy
from airflow_provider_dataeng.extract.schema_drift import Column

MODES = ("full_snapshot", "incremental_timestamp", "incremental_id")
KNOWN_IDS_TABLE = "dataeng_known_ids"
OWN_IDS_TABLE = "dataeng_own_ids"
# id types a watermark applies to (ordered integers); other id types compare every id
WATERMARK_ID_TYPES = ("smallint", "integer", "bigint")


def base_query(source_table: sql.Composable | None, source_sql: str | None) -> sql.Composable:
    """``select * from <table>`` or the user's SELECT (trailing semicolons removed)."""
    if (source_table is None) == (source_sql is None):
        raise ValueError("exactly one of source_table or source_sql must be given")
    if source_sql is not None:
        text = source_sql.strip().rstrip(";").strip()
        if not text:
            raise ValueError("source_sql: expected a SELECT statement, got empty text")
        return sql.SQL(text)  # the user's own SQL, by design
    assert source_table is not None
    return sql.SQL("select * from {}").format(source_table)


@dataclass(frozen=True)
class IntervalSelect:
    """How to select one interval's rows from the source."""

    mode: str
    columns: list[Column]  # source columns to copy, in order
    lower: datetime
    upper: datetime
    partition_column: str
    # True: partition_column is not a source column; every row gets the interval's start, filled in by the
    # warehouse (the staging column's DEFAULT during the load), not sent over the wire. False: a source column.
    stamp: bool
    partition_is_date: bool = False
    timestamp_column: str | None = None
    lag: timedelta = timedelta(0)
    id_column: str | None = None
    id_as_text: bool = False  # the known-ids table holds the ids as text (non built-in id type)
    # timestamp_column is naive (timestamp without time zone) and written in this zone: the interval's bounds
    # are compared as wall-clock times of that zone (index-friendly; no cast of the column)
    timestamp_zone: str | None = None
    # incremental_id watermark: ids above it are compared with the warehouse's (known ids above it); ids at or
    # below it are loaded only when they are the interval's own (a rerun); None = compare every id
    id_low: Any = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: expected one of {', '.join(MODES)}")
        names = {c.name for c in self.columns}
        if self.mode == "incremental_timestamp" and self.timestamp_column not in names:
            raise ValueError(
                f"timestamp_column={self.timestamp_column!r}: not a column of the source (columns: {sorted(names)})"
            )
        if self.mode == "incremental_id" and self.id_column not in names:
            raise ValueError(f"id_column={self.id_column!r}: not a column of the source (columns: {sorted(names)})")
        if not self.stamp and self.partition_column not in names:
            raise ValueError(f"partition_column={self.partition_column!r}: not a column of the source")

    @property
    def target_columns(self) -> list[str]:
        """Column list of the target COPY, in the order the source query returns them (a stamped partition
        column is not sent: the warehouse fills it with :meth:`partition_value`, the staging column's default)."""
        return [c.name for c in self.columns]

    def _bound(self, value: datetime) -> sql.Composable:
        if self.partition_is_date:
            return sql.Literal(value.date())
        return sql.SQL("{}::timestamptz").format(sql.Literal(value))

    def partition_value(self) -> sql.Composable:
        """The stamped partition column's value for this interval (its start), as a SQL literal of the
        column's type."""
        return self._bound(self.lower)

    def instant(self, value: datetime) -> sql.Composable:
        return self._instant(value)

    def _instant(self, value: datetime) -> sql.Composable:
        """An instant compared with timestamp_column: timestamptz, or the zone's wall-clock time when naive."""
        if self.timestamp_zone is None:
            return sql.SQL("{}::timestamptz").format(sql.Literal(value))
        return sql.SQL("({}::timestamptz at time zone {})").format(sql.Literal(value), sql.Literal(self.timestamp_zone))

    def _sid(self) -> sql.Composable:
        sid: sql.Composable = sql.Identifier("s", self.id_column or "")
        return sql.SQL("{}::text").format(sid) if self.id_as_text else sid

    def _branches(self, known_ids: sql.Composable | None) -> list[list[sql.Composable]]:
        """The conditions of each disjoint branch of the interval's rows (one branch, or two for incremental_id
        with a watermark: new ids above it, and the interval's own ids at or below it)."""
        conds: list[sql.Composable] = []
        if not self.stamp:
            col = sql.Identifier("s", self.partition_column)
            conds.append(sql.SQL("{} >= {} and {} < {}").format(col, self._bound(self.lower), col, self._bound(self.upper)))
        if self.mode == "incremental_timestamp":
            col = sql.Identifier("s", self.timestamp_column or "")
            conds.append(sql.SQL("{} >= {} and {} < {}").format(
                col, self._instant(self.lower - self.lag), col, self._instant(self.upper)))
        if self.mode != "incremental_id":
            return [conds]
        if known_ids is None:
            raise ValueError("incremental_id needs the known-ids table")
        sid, raw = self._sid(), sql.Identifier("s", self.id_column or "")
        new = sql.SQL("not exists (select 1 from {} k where k.id = {})").format(known_ids, sid)
        if self.id_low is None:  # every id not in another partition (NULL ids are never loaded)
            return [[*conds, sql.SQL("{} is not null").format(raw), new]]
        low = sql.Literal(self.id_low)
        return [
            [*conds, sql.SQL("{} > {}").format(raw, low), new],
            [*conds, sql.SQL("{} <= {}").format(raw, low),
             sql.SQL("exists (select 1 from {} o where o.id = {})").format(own_ids_table(), sid)],
        ]

    @staticmethod
    def _where(conds: list[sql.Composable]) -> sql.Composable:
        return sql.SQL(" where ") + sql.SQL(" and ").join(conds) if conds else sql.SQL("")

    def where(self, known_ids: sql.Composable | None = None) -> sql.Composable:
        """The WHERE clause of a single-branch selection."""
        (conds,) = self._branches(known_ids)
        return self._where(conds)

    def select(self, base: sql.Composable, known_ids: sql.Composable | None = None) -> sql.Composed:
        """The SELECT whose rows are this interval's partition (:attr:`target_columns`, in order)."""
        cols: list[sql.Composable] = [sql.Identifier("s", c.name) for c in self.columns]
        return sql.SQL(" union all ").join(
            sql.SQL("select {} from ({}) as s{}").format(sql.SQL(", ").join(cols), base, self._where(conds))
            for conds in self._branches(known_ids)
        )

    def count(self, base: sql.Composable, known_ids: sql.Composable | None = None) -> sql.Composed:
        return sql.SQL("select {}").format(sql.SQL(" + ").join(
            sql.SQL("(select count(*) from ({}) as s{})").format(base, self._where(conds))
            for conds in self._branches(known_ids)
        ))

    def null_ids(self, base: sql.Composable) -> sql.Composed:
        """How many source rows have a NULL id (never loaded; counted in the log and the ledger)."""
        return sql.SQL("select count(*) from ({}) as s where {} is null").format(
            base, sql.Identifier("s", self.id_column or ""))


def known_ids_table() -> sql.Composed:
    return sql.Composed([sql.SQL("pg_temp."), sql.Identifier(KNOWN_IDS_TABLE)])


def own_ids_table() -> sql.Composed:
    return sql.Composed([sql.SQL("pg_temp."), sql.Identifier(OWN_IDS_TABLE)])


def stream_ids(
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    *,
    table: sql.Composable,
    target: sql.Composable,
    id_column: Column,
    where: sql.Composable,
    label: str,
    progress_interval: float = 5.0,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> CopyStats:
    """Fill the source session's temp ``table`` with the target's ids matching ``where``.

    Warehouse -> source COPY stream; commits on ``source`` (the temp table lives for the session, the
    snapshot transaction that reads it starts afterwards). ``source`` must be able to create temp tables
    (a primary, not a hot standby).
    """
    id_type = sql.SQL(id_column.type if id_column.kind == "builtin" else "text")
    with source.cursor() as cur:
        cur.execute(sql.SQL("drop table if exists {}").format(table))
        cur.execute(sql.SQL("create temp table {} (id {})").format(table, id_type))
    col = sql.Identifier(id_column.name)
    query = sql.SQL("select {} from {} where {} is not null and ({})").format(col, target, col, where)
    fmt = "binary" if id_column.kind == "builtin" else "text"
    stats = stream_copy(
        warehouse, source, copy_out_sql(query, fmt), copy_in_sql(table, ["id"], fmt), fmt=fmt,
        progress_interval=progress_interval, logger=logger, label=label,
    )
    with source.cursor() as cur:
        cur.execute(sql.SQL("analyze {}").format(table))
    source.commit()
    return stats


def in_ranges(column: str, ranges: list[tuple[datetime, datetime]]) -> sql.Composable:
    """``column`` inside one of the ``[lower, upper)`` ranges (partition pruning keeps the scan to them)."""
    if not ranges:
        return sql.SQL("false")
    col = sql.Identifier(column)
    return sql.SQL(" or ").join(
        sql.SQL("({} >= {}::timestamptz and {} < {}::timestamptz)").format(col, sql.Literal(lo), col, sql.Literal(hi))
        for lo, hi in ranges
    )


def outside_range(column: str, lower: datetime, upper: datetime) -> sql.Composable:
    col = sql.Identifier(column)
    return sql.SQL("{} < {}::timestamptz or {} >= {}::timestamptz").format(
        col, sql.Literal(lower), col, sql.Literal(upper))
