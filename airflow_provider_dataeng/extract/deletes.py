"""Opt-in delete detection for ``incremental_timestamp`` (``detect_deletes``): tombstones for keys gone from the
source.

Before the run's snapshot, the keys the warehouse still serves (latest row per key over the other partitions,
not a tombstone) are streamed into a temp table on the source. In the snapshot, every such key the source no
longer has becomes a tombstone row in the interval's partition: its key columns, ``timestamp_column`` = the
interval's end (so a later re-insert of the key wins), ``_deleted = true``, everything else NULL. The
``<table>__latest`` view hides keys whose latest row is a tombstone (the tombstone's time is at least just
after the key's latest version in the warehouse, so it wins over every version loaded so far).

Cost: one scan of the target (the latest row per key) and of the source's keys per run, and every live key
shipped once from the warehouse to the source; the ledger's ``details.deletes`` reports it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import psycopg
from psycopg import sql

from airflow_provider_dataeng.extract.copy_stream import CopyStats, copy_in_sql, copy_out_sql, stream_copy
from airflow_provider_dataeng.extract.dedup import TOMBSTONE_COLUMN
from airflow_provider_dataeng.extract.schema_drift import Column

LIVE_KEYS_TABLE = "dataeng_live_keys"


def live_keys_table() -> sql.Composed:
    return sql.Composed([sql.SQL("pg_temp."), sql.Identifier(LIVE_KEYS_TABLE)])


def live_keys_query(target: sql.Composable, *, key_columns: Sequence[str], order_column: str,
                    partition_column: str, lower: datetime, upper: datetime) -> sql.Composed:
    """Keys whose latest row outside ``[lower, upper)`` is not a tombstone (what ``__latest`` would serve)."""
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in key_columns)
    pc = sql.Identifier(partition_column)
    return sql.SQL(
        "select {keys}, _dataeng_ts from (select {keys}, {order} as _dataeng_ts, {tomb} as _dataeng_tomb, row_number() over (partition by {keys} "
        "order by {order} desc nulls last, {pc} desc) as _dataeng_rn from {target} "
        "where ({pc} < {lower}::timestamptz or {pc} >= {upper}::timestamptz) and {not_null}) as r "
        "where _dataeng_rn = 1 and not coalesce(_dataeng_tomb, false)"
    ).format(
        keys=keys, tomb=sql.Identifier(TOMBSTONE_COLUMN), order=sql.Identifier(order_column), pc=pc, target=target,
        lower=sql.Literal(lower), upper=sql.Literal(upper),
        not_null=sql.SQL(" and ").join(sql.SQL("{} is not null").format(sql.Identifier(c)) for c in key_columns),
    )


def stream_live_keys(warehouse: psycopg.Connection, source: psycopg.Connection, *, query: sql.Composable,
                     key_columns: Sequence[Column], order_type: str, progress_interval: float = 5.0,
                     logger: logging.Logger | logging.LoggerAdapter | None = None) -> CopyStats:
    """Fill the source session's temp table with the warehouse's live keys (text COPY); commits on ``source``."""
    table = live_keys_table()
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type if c.kind == "builtin" else "text"))
        for c in key_columns
    ) + sql.SQL(", _dataeng_ts {}").format(sql.SQL(order_type))
    with source.cursor() as cur:
        cur.execute(sql.SQL("drop table if exists {}").format(table))
        cur.execute(sql.SQL("create temp table {} ({})").format(table, cols))
    stats = stream_copy(
        warehouse, source, copy_out_sql(query, "text"), copy_in_sql(table, [*(c.name for c in key_columns), "_dataeng_ts"], "text"),
        fmt="text", progress_interval=progress_interval, logger=logger, label="live keys (warehouse -> source)",
    )
    with source.cursor() as cur:
        cur.execute(sql.SQL("analyze {}").format(table))
    source.commit()
    return stats


def tombstones_select(base: sql.Composable, *, key_columns: Sequence[Column], deleted_at: sql.Composable,
                      partition_value: sql.Composable) -> sql.Composed:
    """The tombstone rows (keys, deleted at, partition value, true) of live keys absent from ``base``. The
    tombstone's time is the later of ``deleted_at`` and just after the key's latest version in the warehouse,
    so it wins over every version loaded so far (also one in a later partition, when an earlier interval is
    rerun)."""
    keys = [sql.Identifier("k", c.name) for c in key_columns]
    match = sql.SQL(" and ").join(
        sql.SQL("{} = {}").format(sql.Identifier("s", c.name), k) if c.kind == "builtin"
        else sql.SQL("{}::text = {}").format(sql.Identifier("s", c.name), k)
        for c, k in zip(key_columns, keys, strict=True)
    )
    return sql.SQL("select {keys}, greatest({at}, k._dataeng_ts + interval '1 microsecond'), {pv}, true "
                   "from {live} as k where not exists "
                   "(select 1 from ({base}) as s where {match})").format(
        keys=sql.SQL(", ").join(keys), at=deleted_at, pv=partition_value, live=live_keys_table(), base=base,
        match=match)


def tombstone_columns(key_columns: Sequence[str], order_column: str, partition_column: str) -> list[str]:
    """The staging columns a tombstone COPY fills, in the order of :func:`tombstones_select`."""
    return [*key_columns, order_column, partition_column, TOMBSTONE_COLUMN]
