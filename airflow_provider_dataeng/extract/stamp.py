"""The stamped partition column (``_interval_start`` by default, not a source column): filled in by the warehouse.

The source sends only its own columns; for the load, the staging column gets the interval's start as its
DEFAULT, so ``COPY ... FROM`` without that column fills every row with it (a constant per row, evaluated by
the warehouse). The source reads and sends one column less per row, and a ``date`` partition column no longer
forces the text format. The staging table's own default (the parent's, copied by ``LIKE``; usually none) is put
back before the load commits, so the published partition carries no trace of the load.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish.table_ref import TableRef


def column_default(conn: psycopg.Connection, table: TableRef, column: str) -> str | None:
    """The default expression of ``table.column`` as the server prints it, or None."""
    row = conn.execute(
        "select pg_get_expr(d.adbin, d.adrelid) from pg_attribute a"
        " left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum"
        " where a.attrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass and a.attname = %s",
        [table.schema, table.table, column],
    ).fetchone()
    return row[0] if row else None


def set_stamp(conn: psycopg.Connection, staging: TableRef, column: str, value: sql.Composable) -> str | None:
    """Make ``value`` the default of ``staging.column`` (in the caller's transaction); return the default it
    had, for :func:`restore_default`."""
    previous = column_default(conn, staging, column)
    conn.execute(sql.SQL("alter table {} alter column {} set default {}").format(
        staging.ident(), sql.Identifier(column), value))
    return previous


def restore_default(conn: psycopg.Connection, staging: TableRef, column: str, previous: str | None) -> None:
    """Put back the default :func:`set_stamp` replaced (the server's own text of it), or drop the stamp."""
    col = sql.Identifier(column)
    if previous is None:
        conn.execute(sql.SQL("alter table {} alter column {} drop default").format(staging.ident(), col))
    else:  # text the server printed from its own catalog (pg_get_expr), not configuration
        conn.execute(sql.SQL("alter table {} alter column {} set default {}").format(
            staging.ident(), col, sql.SQL(previous)))
