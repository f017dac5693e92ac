"""The partition swap strategy: replace one range partition ``[lower, upper)`` of a partitioned table.

Staging is a standalone table ``LIKE`` the parent with a CHECK constraint equal to the bounds (so ATTACH
skips its validation scan) and the parent's indexes; the swap detaches the old partition and attaches
staging in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.bounds import (
    BOUNDS_CONSTRAINT,
    PARTITION_TYPES,
    as_utc_datetime,
    bounds_sql,
    find_partition,
    normalize_bound,
    partition_column_type,
    partition_ref,
    previous_upper,
)
from airflow_provider_dataeng.publish.carry_over import copy_access, set_catalog_search_path
from airflow_provider_dataeng.publish.catalog import execute
from airflow_provider_dataeng.publish.errors import PublishError
from airflow_provider_dataeng.publish.ledger import LedgerEntry
from airflow_provider_dataeng.publish.locks import lock_key
from airflow_provider_dataeng.publish.renames import STAGING_SUFFIX, Rename
from airflow_provider_dataeng.publish.staging import (
    column_list,
    ensure_schema,
    insert_select,
    select_columns,
    validate_columns,
)
from airflow_provider_dataeng.publish.swap import SwapStrategy, lock_tables
from airflow_provider_dataeng.publish.table_ref import TableRef, suffixed_name

log = logging.getLogger(__name__)


class PartitionSwap(SwapStrategy):
    """Replace the partition of ``target`` on ``partition_column`` that starts at ``lower``.

    ``upper`` None (rollback): the bounds of the current partition, or of the ``__previous`` one.
    """

    mode = "partition_swap"
    keeps_stale_previous = True

    def __init__(self, target: TableRef, partition_column: str | None, lower: Any, upper: Any = None) -> None:
        super().__init__(target)
        self.partition_column = partition_column
        self.lower, self.upper = lower, upper
        self.column_type = ""
        self.parent: catalog.Relation | None = None

    def resolve(self, conn: psycopg.Connection, entry: LedgerEntry) -> None:
        rollback = self.upper is None
        self.parent = parent = catalog.relation(conn, self.target)
        if parent is None:
            raise PublishError(f"rollback of {self.target}: the table does not exist" if rollback else
                               f"partitioned table {self.target} does not exist: call ensure_partitioned_parent "
                               "first (or publish with select_sql)")
        if rollback:
            key_info = catalog.partition_key(conn, parent.oid)
            if parent.relkind != "p" or key_info is None:
                raise PublishError(f"rollback of {self.target}: not a partitioned table; omit partition_start")
            self.partition_column = key_info[1]
        self.column_type = partition_column_type(conn, parent, self.partition_column)
        self.lower = normalize_bound(self.lower, self.column_type,
                                     "partition_start" if rollback else "partition lower bound")
        self.slot = self.partition = partition_ref(self.target, self.lower)
        if rollback:
            exact = [p for p in catalog.partitions(conn, parent.oid, self.column_type)
                     if not p.is_default and p.lower == self.lower]
            prev = catalog.relation(conn, self.previous)
            if prev is None:
                raise PublishError(f"rollback of {self.target} partition {self.lower}: there is no {self.previous} "
                                   "to restore")
            self.upper = exact[0].upper if exact else previous_upper(conn, prev, self.column_type)
        else:
            self.upper = normalize_bound(self.upper, self.column_type, "partition upper bound")
            if not self.lower < self.upper:
                raise ValueError(f"partition bounds: lower {self.lower} must be before upper {self.upper}")
        entry.partition_column = self.partition_column
        entry.partition_start, entry.partition_end = as_utc_datetime(self.lower), as_utc_datetime(self.upper)
        if entry.interval_start is None:
            entry.interval_start, entry.interval_end = entry.partition_start, entry.partition_end
        entry.details["partition"] = self.slot.qualified
        self.key = lock_key("partition", self.target.schema, self.target.table, self.lower.isoformat(),
                            self.upper.isoformat())
        self.what = f"{self.target} [{self.lower}, {self.upper})"

    def inspect(self, conn: psycopg.Connection) -> None:
        exact = find_partition(conn, self.parent, self.partition_column, self.column_type, self.lower, self.upper)
        self.live = catalog.relation_by_oid(conn, exact.oid) if exact else None

    @property
    def _bounds(self) -> tuple[sql.Composable, sql.Composable]:
        return bounds_sql(self.lower, self.upper, self.column_type)

    def create_staging(self, conn: psycopg.Connection, select_sql: str | None) -> None:
        lo_sql, hi_sql = self._bounds
        col = sql.Identifier(self.partition_column)
        execute(conn, sql.SQL(
            "create table {} (like {} including defaults including constraints including generated "
            "including storage including compression)").format(self.staging.ident(), self.target.ident()))
        execute(conn, sql.SQL("alter table {} add constraint {} check ({} is not null and {} >= {} and {} < {})")
                .format(self.staging.ident(), sql.Identifier(BOUNDS_CONSTRAINT), col, col, lo_sql, col, hi_sql))

    def fill(self, conn: psycopg.Connection, select_sql: str) -> None:
        insert_select(conn, self.staging, select_sql, self.partition_column, self._bounds[0])

    def prepare(self, conn: psycopg.Connection, entry: LedgerEntry) -> list[Rename]:
        with conn.transaction():
            set_catalog_search_path(conn)
            renames = self._partition_indexes(conn)
            new = catalog.relation(conn, self.staging)
            if self.live is not None:
                copy_access(conn, self.live, new)
            elif new.owner != self.parent.owner:
                execute(conn, sql.SQL("alter table {} owner to {}").format(
                    self.staging.ident(), sql.Identifier(self.parent.owner)))
        return renames

    def _partition_indexes(self, conn: psycopg.Connection) -> list[Rename]:
        """Create on staging an index matching each of the parent's, so ATTACH builds nothing."""
        renames = []
        for info in catalog.indexes(conn, self.parent.oid):
            final = suffixed_name(self.slot.table, "_" + (info.constraint or info.name))
            temp = suffixed_name(final, STAGING_SUFFIX)
            if info.constraint:
                execute(conn, sql.SQL("alter table {} add constraint {} {}").format(
                    self.staging.ident(), sql.Identifier(temp), sql.SQL(info.constraint_def or "")))
                renames.append(Rename("constraint", temp, final))
            else:
                unique, tail = catalog.index_tail(conn, info, self.parent)
                execute(conn, sql.SQL("create {}index {} on {}{}").format(
                    sql.SQL("unique " if unique else ""), sql.Identifier(temp), self.staging.ident(), sql.SQL(tail)))
                renames.append(Rename("index", temp, final))
        return renames

    def watched(self) -> list[TableRef]:
        return [self.target, self.staging, self.previous] + ([self.live.ref] if self.live else [])

    def lock_live(self, conn: psycopg.Connection) -> None:
        # ONLY: LOCK TABLE on a partitioned table would also lock every partition (thousands of locks)
        lock_tables(conn, [self.target], "access exclusive" if self.live else "share update exclusive", only=True)
        if self.live is not None:
            lock_tables(conn, [self.live.ref])

    def detach(self, conn: psycopg.Connection) -> None:
        if self.live is None:
            return
        still = catalog.relation(conn, self.live.ref)
        if still is None or still.oid != self.live.oid:
            raise PublishError(f"partition {self.live.ref} changed during the publish; rerun")
        execute(conn, sql.SQL("alter table {} detach partition {}").format(self.target.ident(), self.live.ref.ident()))

    def attach(self, conn: psycopg.Connection) -> None:
        lo_sql, hi_sql = self._bounds
        execute(conn, sql.SQL("alter table {} attach partition {} for values from ({}) to ({})").format(
            self.target.ident(), self.slot.ident(), lo_sql, hi_sql))


def create_parent(conn: psycopg.Connection, target: TableRef, columns: Sequence[tuple[str, str]],
                  partition_column: str) -> None:
    """Create schema + ``target`` PARTITION BY RANGE (``partition_column``) when missing.

    ``columns`` are ``(name, type)`` with types as ``format_type()`` prints them; they are validated
    against the server. An existing table must be range-partitioned on ``partition_column``.
    """
    if partition_column not in {c[0] for c in columns if isinstance(c, (tuple, list)) and c}:
        raise ValueError(f"partition_column {partition_column!r} is not one of the columns")
    validate_columns(conn, columns)
    ptype = dict(columns)[partition_column]
    with conn.transaction():
        execute(conn, "select pg_advisory_xact_lock(%s)", [lock_key("table", target.schema, target.table)])
        existing = catalog.relation(conn, target)
        if existing is not None:
            partition_column_type(conn, existing, partition_column)
            return
        if catalog.scalar(conn, "select format_type(to_regtype(%s), null)", [ptype]) not in PARTITION_TYPES:
            raise ValueError(f"partition_column {partition_column!r} has type {ptype!r}: expected one of "
                             f"{', '.join(PARTITION_TYPES)}")
        ensure_schema(conn, target.schema)
        execute(conn, sql.SQL("create table {} ({}) partition by range ({})").format(
            target.ident(), column_list(conn, columns), sql.Identifier(partition_column)))
        log.info("Created partitioned table %s (range on %s)", target, partition_column)


def select_parent_columns(conn: psycopg.Connection, select_sql: str, partition_column: str) -> list[tuple[str, str]]:
    """The columns of a parent for ``select_sql``'s rows (plus ``partition_column`` as timestamptz)."""
    cols = [(name, catalog.scalar(conn, "select format_type(%s, null)", [oid]))
            for name, oid in select_columns(conn, select_sql)]
    if partition_column not in {n for n, _ in cols}:
        cols.append((partition_column, "timestamp with time zone"))
    return cols
