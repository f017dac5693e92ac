"""The incremental_id watermark: which ids a run compares with the warehouse (issue 14 item 5).

Every incremental_id load records the largest id it published (ledger ``details.max_id``). A run compares
only ids above (the largest published id - ``id_safety_window``) and only with the partitions that hold such
ids; an index on the id column keeps those reads range scans.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from airflow_provider_dataeng.extract.modes import WATERMARK_ID_TYPES
from airflow_provider_dataeng.extract.schema_drift import Column
from airflow_provider_dataeng.publish.table_ref import TableRef


@dataclass(frozen=True)
class Watermark:
    """The low mark (ids above it are compared), the largest published id, the other partitions holding ids
    above the low mark."""

    low: int
    published_max: int
    recent: list[tuple[datetime, datetime]]


def id_watermark(conn: psycopg.Connection, target: TableRef, id_col: Column, id_column: str, window: int,
                 lower: datetime, upper: datetime, log: logging.Logger | logging.LoggerAdapter) -> Watermark | None:
    """The incremental_id watermark from the ledger: the largest id published into the target (latest
    published load of each partition) minus ``id_safety_window``, and the other partitions that hold ids
    above it. None (compare every id) when the id is not an integer or the ledger cannot vouch for every
    partition (a load without ``max_id``: older versions, other modes, another id column)."""
    if id_col.type not in WATERMARK_ID_TYPES:
        log.info("incremental_id: %s is %s, not an integer: comparing every id", id_col.name, id_col.type)
        return None
    if conn.execute("select to_regclass('dataeng.load_ledger')").fetchone()[0] is None:
        return None
    rows = conn.execute(
        """select partition_start, partition_end, vouched, max_id from (
             select distinct on (partition_start) partition_start, partition_end,
                    coalesce(mode = 'incremental_id' and details ? 'max_id' and details->>'id_column' = %s, false)
                      as vouched,
                    (details->>'max_id')::numeric as max_id
             from dataeng.load_ledger
             where target_schema = %s and target_table = %s and status = 'published'
               and partition_start is not null
             order by partition_start, id desc) latest""",
        [id_column, target.schema, target.table],
    ).fetchall()
    if not rows:
        return None
    if not all(vouched for _, _, vouched, _ in rows):
        log.info("incremental_id: the ledger has loads of %s without an id watermark: comparing every id", target)
        return None
    maxes = [int(m) for *_, m in rows if m is not None]
    if not maxes:
        return None
    top = max(maxes)
    low = top - window
    recent = [(lo, hi) for lo, hi, _, m in rows
              if m is not None and m > low and (lo, hi) != (lower, upper)]
    log.info("incremental_id: ids above %d (largest published %d - window %d) are compared with %d "
             "partition(s); ids at or below it are reloaded only when this interval already holds them",
             low, top, window, len(recent))
    return Watermark(low, top, recent)


def ensure_id_index(wh: psycopg.Connection, target: TableRef, id_column: str,
                    log: logging.Logger | logging.LoggerAdapter) -> None:
    """incremental_id targets carry an index on ``id_column`` (every partition; staging gets it too), so the
    ids above the watermark are read by an index range scan, not a scan of whole partitions. Created with
    the table; added once to a target that lacks it (that one build reads the whole table). Runs inside
    :func:`extract.target.target_ddl` (its lock makes the look-up and the CREATE one step)."""
    if has_id_index(wh, target, id_column):
        return
    index = sql.Identifier(f"{target.table[:40]}__{id_column[:15]}_idx")
    log.info("Creating index %s on %s (%s) for the incremental_id watermark", index.as_string(wh), target, id_column)
    wh.execute(sql.SQL("create index if not exists {} on {} ({})").format(
        index, target.ident(), sql.Identifier(id_column)))


def has_id_index(wh: psycopg.Connection, target: TableRef, id_column: str) -> bool:
    """True when an index of ``target`` leads with ``id_column``."""
    return wh.execute(
        """select 1 from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n
             on n.oid = c.relnamespace join pg_attribute a on a.attrelid = c.oid and a.attnum = i.indkey[0]
           where n.nspname = %s and c.relname = %s and a.attname = %s limit 1""",
        [target.schema, target.table, id_column]).fetchone() is not None
