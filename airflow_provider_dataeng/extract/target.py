"""The extract's target table: one consistent catalog read, every refusal before any DDL, and the DDL an
extract runs outside the swap (added columns, the id index, the ``__latest`` view), safe under concurrent runs.

- :func:`read_target` reads the relation, its partition key, its parents and its columns in ONE statement
  (one snapshot): a table that another run creates meanwhile is either absent or complete, never a table
  without columns.
- :func:`refuse_unusable` runs every check the publish step would run on the target (kind, relispartition,
  range key on the partition column, its type, partitions overlapping the interval) before anything is
  changed: a refused target is never touched.
- :func:`target_ddl` runs one DDL transaction under an advisory transaction lock of the target (extract DDL
  of one target takes turns, so two runs never create the same index or view at once), with ``lock_timeout``
  and the swap's retries (:func:`publish.locks.with_lock_retries`); the work re-reads what it needs inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_dataeng.extract.schema_drift import Column, describe_columns
from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.bounds import find_partition, normalize_bound
from airflow_provider_dataeng.publish.errors import PublishError
from airflow_provider_dataeng.publish.locks import lock_key, set_lock_timeout, with_lock_retries
from airflow_provider_dataeng.publish.table_ref import TableRef

EXTRACT_PARTITION_TYPES = ("timestamp with time zone", "date")

_TARGET_SQL = """
select c.oid::int8, c.relkind::text, c.relispartition,
       (select string_agg(quote_ident(pn.nspname) || '.' || quote_ident(p.relname), ', ')
          from pg_inherits i join pg_class p on p.oid = i.inhparent join pg_namespace pn on pn.oid = p.relnamespace
         where i.inhrelid = c.oid),
       pt.partstrat::text, pt.partnatts::int,
       (select a.attname::text from pg_attribute a where a.attrelid = c.oid and a.attnum = pt.partattrs[0]),
       array(select a.attname::text from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
               and not a.attisdropped order by a.attnum),
       array(select a.atttypid::int8 from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
               and not a.attisdropped order by a.attnum),
       array(select a.atttypmod::int from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
               and not a.attisdropped order by a.attnum),
       pg_get_userbyid(c.relowner)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
left join pg_partitioned_table pt on pt.partrelid = c.oid
where n.nspname = %s and c.relname = %s
"""


@dataclass(frozen=True)
class TargetTable:
    """The target relation as one catalog snapshot saw it."""

    ref: TableRef
    oid: int
    relkind: str
    is_partition: bool
    parents: str | None  # inheritance / partition parents
    strategy: str | None  # partition strategy (r, l, h) of a partitioned table
    key_count: int
    key_column: str | None
    columns: list[Column]
    owner: str

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


def read_target(conn: psycopg.Connection, target: TableRef) -> TargetTable | None:
    """The target relation with its columns (one statement, so one snapshot), or None when it does not exist."""
    with conn.cursor() as cur:
        cur.execute(_TARGET_SQL, [target.schema, target.table])
        row = cur.fetchone()
    if row is None:
        return None
    oid, kind, is_partition, parents, strategy, natts, key_col, names, oids, mods, owner = row
    return TargetTable(target, int(oid), kind, bool(is_partition), parents, strategy, int(natts or 0), key_col,
                       describe_columns(conn, names, oids, mods), owner)


def refuse_unusable(conn: psycopg.Connection, state: TargetTable, partition_column: str, lower: datetime,
                    upper: datetime) -> None:
    """Raise AirflowFailException when the publish step would refuse this target; changes nothing."""
    t, pc = state.ref, partition_column
    if state.relkind != "p":
        kind = {"r": "an ordinary table", "v": "a view", "m": "a materialized view", "f": "a foreign table"}.get(
            state.relkind, f"relkind {state.relkind}")
        raise AirflowFailException(
            f"target_table {t} is {kind}{f' (inherits from {state.parents})' if state.parents else ''}: the extract "
            f"writes range partitions on {pc!r}; use a new table name (the extract creates it) or convert the table. "
            "Nothing was changed.")
    if state.is_partition:
        raise AirflowFailException(
            f"target_table {t} is itself a partition of {state.parents}: extract into a top-level table. "
            "Nothing was changed.")
    if state.strategy != "r" or state.key_count != 1 or state.key_column != pc:
        raise AirflowFailException(
            f"target_table {t} is not range-partitioned on {pc!r} alone (strategy {state.strategy}, key "
            f"{state.key_column if state.key_count == 1 else f'of {state.key_count} columns'}): set "
            "partition_column to its partition key or use a new table. Nothing was changed.")
    col = state.column(pc)
    assert col is not None  # the partition key is a column
    if col.type not in EXTRACT_PARTITION_TYPES:
        raise AirflowFailException(
            f"partition_column={pc!r}: expected a timestamptz or date column in {t}, found {col.type}. "
            "Nothing was changed.")
    parent = catalog.Relation(state.oid, t, state.relkind, state.owner)
    try:
        find_partition(conn, parent, pc, col.type, normalize_bound(lower, col.type, "data interval start"),
                       normalize_bound(upper, col.type, "data interval end"))
    except (PublishError, ValueError) as exc:
        raise AirflowFailException(f"target_table {t}: {exc}. Nothing was changed.") from exc


def target_ddl(conn: psycopg.Connection, target: TableRef, what: str, work: Callable[[psycopg.Connection], Any], *,
               lock_timeout: float, attempts: int, backoff: float = 0.5, watched: list[TableRef] | None = None) -> Any:
    """Run ``work(conn)`` in one transaction holding the target's extract-DDL advisory lock, under
    ``lock_timeout``, retried with backoff on lock timeout or deadlock. ``conn`` must be in autocommit mode."""
    key = lock_key("extract-ddl", target.schema, target.table)

    def attempt() -> Any:
        with conn.transaction():
            set_lock_timeout(conn, lock_timeout)
            catalog.execute(conn, "select pg_advisory_xact_lock(%s)", [key])
            return work(conn)

    out, _ = with_lock_retries(conn, what, [target, *(watched or [])], attempt, lock_timeout=lock_timeout, attempts=attempts,
                               backoff=backoff, action="DDL", unchanged="The table and its view are unchanged")
    return out
