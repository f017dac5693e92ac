"""Latest row per key: the deduplication that follows incremental extracts.

Incremental loads (and the lag window) may hold several versions of a key across partitions; readers
use the latest one: ``row_number() over (partition by <key> order by <modified> desc, <partition> desc)``
keeps one row per key, the most recently modified (ties: the most recent partition).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish.table_ref import TableRef

VIEW_SUFFIX = "__latest"
TOMBSTONE_COLUMN = "_deleted"  # extract.deletes writes it; true = the key was deleted in the source


def latest_rows_query(
    relation: sql.Composable,
    *,
    columns: Sequence[str],
    key_columns: Sequence[str],
    order_column: str,
    tiebreak_columns: Sequence[str] = (),
    tombstone_column: str | None = None,
) -> sql.Composed:
    """A SELECT of ``columns`` from ``relation`` keeping the latest row per key (none for a key whose latest
    row is a tombstone: ``tombstone_column`` true)."""
    if not key_columns:
        raise ValueError("key_columns: expected at least one column name")
    if not columns:
        raise ValueError("columns: expected at least one column name")
    order = [sql.SQL("{} desc nulls last").format(sql.Identifier(c)) for c in [order_column, *tiebreak_columns]]
    return sql.SQL(
        "select {cols} from (select {cols}, row_number() over (partition by {keys} order by {order}) as _dataeng_rn"
        " from {rel}) as ranked where _dataeng_rn = 1{hide}"
    ).format(
        hide=sql.SQL(" and not coalesce({}, false)").format(sql.Identifier(tombstone_column)) if tombstone_column
        else sql.SQL(""),
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        keys=sql.SQL(", ").join(sql.Identifier(c) for c in key_columns),
        order=sql.SQL(", ").join(order),
        rel=relation,
    )


def ensure_latest_view(
    conn: psycopg.Connection,
    target: TableRef,
    *,
    key_columns: Sequence[str],
    order_column: str,
    tiebreak_columns: Sequence[str] = ("_interval_start",),
    view: TableRef | None = None,
) -> bool:
    """Create or replace ``<schema>.<table>__latest`` over ``target`` (all its current columns); False when
    the view is already exactly that (nothing is locked then).

    Columns added to ``target`` later are picked up by calling this again (they are appended, which
    CREATE OR REPLACE VIEW allows). The view's comment records a digest of its definition. Run it inside
    :func:`extract.target.target_ddl` (one transaction, lock_timeout, retries, one run at a time).
    """
    view = view or target.with_suffix(VIEW_SUFFIX)
    with conn.cursor() as cur:
        cur.execute(
            """select array(select a.attname::text from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
                              and not a.attisdropped order by a.attnum),
                      (select obj_description(v.oid, 'pg_class') from pg_class v join pg_namespace vn
                          on vn.oid = v.relnamespace where vn.nspname = %s and v.relname = %s and v.relkind = 'v')
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = %s and c.relname = %s""",
            [view.schema, view.table, target.schema, target.table],
        )
        row = cur.fetchone()
        columns, comment = (row[0], row[1]) if row else ([], None)
        if not columns:
            raise ValueError(f"target {target}: table not found (publish it before creating its latest view)")
        missing = [c for c in [*key_columns, order_column] if c not in columns]
        if missing:
            raise ValueError(f"key_columns/timestamp_column {missing}: not columns of {target} (columns: {columns})")
        tiebreak = [c for c in tiebreak_columns if c in columns and c != order_column]
        # tombstones (delete detection) hide their key; the view keeps the column list of the table
        tombstone = TOMBSTONE_COLUMN if TOMBSTONE_COLUMN in columns else None
        query = latest_rows_query(
            target.ident(), columns=columns, key_columns=key_columns, order_column=order_column,
            tiebreak_columns=tiebreak, tombstone_column=tombstone,
        )
        marker = "dataeng latest-row view of " + target.qualified + "; definition " + hashlib.sha256(
            query.as_string(conn).encode()).hexdigest()[:32]
        if comment == marker:
            return False
        cur.execute(sql.SQL("create or replace view {} as {}").format(view.ident(), query))
        cur.execute(sql.SQL("comment on view {} is {}").format(view.ident(), sql.Literal(marker)))
    return True
