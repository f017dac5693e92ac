"""The table swap strategy: replace a whole ordinary table (dependent views re-bound, sequences moved)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.carry_over import copy_access, copy_structure, set_catalog_search_path
from airflow_provider_dataeng.publish.catalog import execute
from airflow_provider_dataeng.publish.errors import PublishError
from airflow_provider_dataeng.publish.ledger import LedgerEntry
from airflow_provider_dataeng.publish.locks import lock_key
from airflow_provider_dataeng.publish.renames import Rename
from airflow_provider_dataeng.publish.staging import column_list, ensure_schema, select_query
from airflow_provider_dataeng.publish.swap import SwapStrategy, lock_tables
from airflow_provider_dataeng.publish.table_ref import TableRef


class TableSwap(SwapStrategy):
    """Replace ``target`` as a whole. ``columns`` shape the first staging table for a loader."""

    mode = "table_swap"
    keeps_stale_previous = False

    def __init__(self, target: TableRef, columns: Sequence[tuple[str, str]] | None = None) -> None:
        super().__init__(target)
        self.columns = columns
        self.key = lock_key("table", target.schema, target.table)
        self._views: list[catalog.DependentView] = []
        self._definitions: list[tuple[catalog.DependentView, str, list]] = []

    def inspect(self, conn: psycopg.Connection) -> None:
        self.live = live = catalog.relation(conn, self.target)
        if live is not None and live.relkind != "r":
            kind = "partitioned table (use publish_partition)" if live.relkind == "p" else f"relkind {live.relkind}"
            raise PublishError(f"table swap of {self.target}: it is a {kind}, expected an ordinary table")
        if live is not None and (problems := catalog.inheritance(conn, live.oid)):
            raise PublishError(f"table swap of {self.target}: {'; '.join(problems)}; a swap would take the table "
                               "out of its tree (the parent would lose its rows). Nothing was changed.")
        if live is not None and (problems := catalog.blocking_dependents(conn, live.oid)):
            raise PublishError(f"table swap of {self.target} would break: {'; '.join(problems)}. "
                               "Drop or change them first (they bind to the table itself, not its name).")

    def create_staging(self, conn: psycopg.Connection, select_sql: str | None) -> None:
        ensure_schema(conn, self.target.schema)
        staging = self.staging.ident()
        if select_sql is not None:
            execute(conn, sql.SQL("create table {} as {}").format(staging, select_query(select_sql)))
        elif self.live is not None:
            execute(conn, sql.SQL("create table {} (like {} including defaults including generated)").format(
                staging, self.target.ident()))
        elif self.columns:
            execute(conn, sql.SQL("create table {} ({})").format(staging, column_list(conn, self.columns)))

    def prepare(self, conn: psycopg.Connection, entry: LedgerEntry) -> list[Rename]:
        if self.live is None:
            return []
        with conn.transaction():
            set_catalog_search_path(conn)
            new = catalog.relation(conn, self.staging)
            report = copy_structure(conn, self.live, new)
            entry.details["carried_over"] = report.copied + copy_access(conn, self.live, new)
        return report.renames

    def watched(self) -> list[TableRef]:
        return [self.target, self.staging, self.previous]

    def lock_live(self, conn: psycopg.Connection) -> None:
        self._views = self._dependent_views(conn)
        _lock_views(conn, self._views)
        if self.live is not None:
            lock_tables(conn, [self.target])

    def detach(self, conn: psycopg.Connection) -> None:
        current = catalog.relation(conn, self.target)
        if (current.oid if current else None) != (self.live.oid if self.live else None):
            raise PublishError(f"{self.target} was replaced by someone else during the publish; rerun")
        known = {v.oid for v in self._views}
        late = [v for v in self._dependent_views(conn) if v.oid not in known]
        _lock_views(conn, late)
        self._views += late
        self._definitions = [
            (view, *catalog.rows(conn, "select pg_get_viewdef(%s::oid), reloptions from pg_class where oid = %s",
                                 [view.oid, view.oid])[0])
            for view in self._views
        ]

    def attach(self, conn: psycopg.Connection) -> None:
        for view, definition, options in self._definitions:
            opts = [sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v))
                    for k, _, v in (o.partition("=") for o in options or []) if re.match(r"^[a-z_]+$", k)]
            with_clause = sql.SQL(" with ({})").format(sql.SQL(", ").join(opts)) if opts else sql.SQL("")
            execute(conn, sql.SQL("create or replace view {}{} as {}").format(
                view.ref.ident(), with_clause, sql.SQL(definition.strip().rstrip(";"))))
        if self.live is None:
            return
        new_cols = {c for c, _ in catalog.columns(conn, catalog.relation(conn, self.target).oid)}
        for seq, column in catalog.rows(conn, """
                select d.objid::regclass::text, a.attname from pg_depend d
                join pg_class s on s.oid = d.objid and s.relkind = 'S'
                join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
                where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
                  and d.refobjid = %s and d.deptype = 'a'""", [self.live.oid]):
            if column in new_cols:
                execute(conn, sql.SQL("alter sequence {} owned by {}.{}").format(
                    sql.SQL(seq), self.target.ident(), sql.Identifier(column)))

    def before_rollback_swap(self, conn: psycopg.Connection, incoming: TableRef) -> None:
        if self.live is not None:
            copy_access(conn, self.live, catalog.relation(conn, incoming))

    def _dependent_views(self, conn: psycopg.Connection) -> list[catalog.DependentView]:
        if self.live is None:
            return []
        return [v for v in catalog.dependent_views(conn, self.live.oid) if v.relkind == "v"]


def _lock_views(conn: psycopg.Connection, views: Sequence[catalog.DependentView]) -> None:
    """Take ACCESS EXCLUSIVE on each dependent view before the table (the order readers lock in).

    A no-op owner change locks just the view (``LOCK TABLE`` on a view would also lock every base
    table of the view).
    """
    for view in views:
        execute(conn, sql.SQL("alter view {} owner to {}").format(view.ref.ident(), sql.Identifier(view.owner)))
