"""The swap transaction shared by both strategies, and the interface a swap strategy implements.

The engine runs one skeleton for every publish (lock, staging, load, checks, swap, ledger, cleanup) and
every rollback; a :class:`SwapStrategy` fills in what depends on what is replaced: a whole table
(:mod:`.table_swap`) or one range partition of it (:mod:`.partition_swap`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import ClassVar

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.carry_over import set_catalog_search_path
from airflow_provider_dataeng.publish.catalog import execute
from airflow_provider_dataeng.publish.ledger import LedgerEntry, write_ledger_row
from airflow_provider_dataeng.publish.locks import set_lock_timeout
from airflow_provider_dataeng.publish.renames import (
    PREVIOUS_SUFFIX,
    RETIRED_SUFFIXES,
    STAGING_SUFFIX,
    Rename,
    move_table,
    previous_name,
    renamed_by,
    retire,
)
from airflow_provider_dataeng.publish.table_ref import TableRef

StepCallback = Callable[[str, psycopg.Connection], None]


class SwapStrategy:
    """What differs between replacing a whole table and replacing one partition.

    ``slot`` is the relation that gets replaced (the table, or the partition child); ``live`` is its
    published version (None on the first publish), read under the advisory lock by :meth:`inspect`.
    """

    mode: ClassVar[str]
    keeps_stale_previous: ClassVar[bool]  # an older __previous outlives a publish without keep_previous

    def __init__(self, target: TableRef) -> None:
        self.target = target
        self.slot = target
        self.key = 0
        self.what = target.qualified
        self.live: catalog.Relation | None = None
        self.partition: TableRef | None = None

    @property
    def staging(self) -> TableRef:
        return self.slot.with_suffix(STAGING_SUFFIX)

    @property
    def previous(self) -> TableRef:
        return self.slot.with_suffix(PREVIOUS_SUFFIX)

    # -- before the swap -----------------------------------------------------------------------------
    def resolve(self, conn: psycopg.Connection, entry: LedgerEntry) -> None:
        """Work out slot, lock key and bounds (before the advisory lock; reads only)."""

    def inspect(self, conn: psycopg.Connection) -> None:
        """Under the lock: read the published version of the slot (``live``); refuse what cannot be swapped."""
        raise NotImplementedError

    def create_staging(self, conn: psycopg.Connection, select_sql: str | None) -> None:
        raise NotImplementedError

    def fill(self, conn: psycopg.Connection, select_sql: str) -> None:
        """Load ``select_sql`` into staging (when create_staging did not already)."""

    def prepare(self, conn: psycopg.Connection, entry: LedgerEntry) -> list[Rename]:
        """Give staging what the live slot has (indexes, grants, ...); the renames the swap applies."""
        raise NotImplementedError

    def watched(self) -> list[TableRef]:
        """Relations whose lock holders a lock timeout reports."""
        return [self.target, self.staging] + ([self.live.ref] if self.live else [])

    # -- inside the swap transaction -----------------------------------------------------------------
    def lock_live(self, conn: psycopg.Connection) -> None:
        raise NotImplementedError

    def detach(self, conn: psycopg.Connection) -> None:
        """Check that live is still what inspect saw, and take it out of readers' way."""
        raise NotImplementedError

    def attach(self, conn: psycopg.Connection) -> None:
        """The incoming table is named ``slot`` now: make it what readers see."""
        raise NotImplementedError

    def before_rollback_swap(self, conn: psycopg.Connection, incoming: TableRef) -> None:
        """In a rollback's swap transaction, once the restored table is named ``incoming``."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def lock_tables(conn: psycopg.Connection, refs: list[TableRef], mode: str = "access exclusive",
                only: bool = False) -> None:
    """LOCK TABLE ``refs`` (``only``: not their partitions or inheritance children)."""
    if refs:
        execute(conn, sql.SQL("lock table {}{} in {} mode").format(
            sql.SQL("only " if only else ""), sql.SQL(", ").join(r.ident() for r in refs), sql.SQL(mode)))


def swap_transaction(conn: psycopg.Connection, s: SwapStrategy, incoming: TableRef, keep_previous: bool,
                     renames: list[Rename], entry: LedgerEntry, *, lock_timeout: float, step: StepCallback,
                     before: Callable[[], None] | None = None) -> int:
    """ONE transaction: live -> previous (or retired), incoming -> live, the ledger row. Returns its id."""
    with conn.transaction():
        set_lock_timeout(conn, lock_timeout)
        set_catalog_search_path(conn)
        # Lock order: the tables no reader uses first (waiting on them blocks nobody), then what readers
        # lock (views, the parent, the live table) in the order they lock it.
        lock_tables(conn, [r for r in (incoming, s.previous) if catalog.relation(conn, r) is not None])
        s.lock_live(conn)
        step("swap_locked", conn)
        s.detach(conn)
        if before is not None:
            before()
        old_previous = catalog.relation(conn, s.previous)
        replaces_previous = keep_previous and s.live is not None
        if old_previous is not None and (replaces_previous or not s.keeps_stale_previous):
            retire(conn, old_previous.ref, old_previous.oid, s.slot, RETIRED_SUFFIXES[0])
        if s.live is not None and keep_previous:
            move_table(conn, s.live.ref, s.live.oid, s.previous, previous_name)
        elif s.live is not None:
            retire(conn, s.live.ref, s.live.oid, s.slot, RETIRED_SUFFIXES[1])
        move_table(conn, incoming, catalog.relation(conn, incoming).oid, s.slot, renamed_by(renames))
        s.attach(conn)
        entry.status = "published"
        entry.finished_at = now()
        ledger_id = write_ledger_row(conn, entry)
        step("swapped", conn)
    return ledger_id
