"""Names of the tables a publish moves around, and the one way to move a table with its named objects.

A table's indexes and p/u/x constraints have names that are unique per schema, so a table that takes
another's place (staging -> live, live -> ``__previous``, anything -> ``__retired``) renames them too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish.catalog import execute, indexes
from airflow_provider_dataeng.publish.table_ref import TableRef, suffixed_name

STAGING_SUFFIX = "__staging"
PREVIOUS_SUFFIX = "__previous"
ROLLBACK_SUFFIX = "__rb"
# Tables leaving the swap are renamed to these inside the swap transaction and dropped after COMMIT:
# PostgreSQL unlinks a dropped table's files at commit while still holding the transaction's locks, so
# dropping a large table inside the swap would stall readers of the live table.
RETIRED_SUFFIXES = ("__retired", "__retired2")


@dataclass
class Rename:
    """A schema-unique name (index or constraint) to move from ``temp`` to ``final`` at swap time."""

    kind: str  # "index" | "constraint"
    temp: str
    final: str


def previous_name(name: str) -> str:
    return suffixed_name(name, PREVIOUS_SUFFIX)


def strip_previous(name: str) -> str:
    return name[: -len(PREVIOUS_SUFFIX)] if name.endswith(PREVIOUS_SUFFIX) else name


def named_objects(conn: psycopg.Connection, oid: int) -> list[tuple[str, str]]:
    """``[(kind, name)]`` of a table's schema-unique names: p/u/x constraints (with their index) and indexes."""
    return [("constraint", i.constraint) if i.constraint else ("index", i.name) for i in indexes(conn, oid)]


def rename_object(conn: psycopg.Connection, kind: str, table: TableRef, old: str, new: str) -> None:
    """Rename a constraint (and its index) of ``table``, or an index in ``table``'s schema."""
    if old == new:
        return
    if kind == "constraint":
        execute(conn, sql.SQL("alter table {} rename constraint {} to {}").format(
            table.ident(), sql.Identifier(old), sql.Identifier(new)))
    else:
        execute(conn, sql.SQL("alter index {} rename to {}").format(
            TableRef(table.schema, old).ident(), sql.Identifier(new)))


def move_table(conn: psycopg.Connection, ref: TableRef, oid: int, to: TableRef,
               new_name: Callable[[str], str]) -> None:
    """Rename table ``ref`` (``oid``) to ``to``, then each of its named objects ``name`` to ``new_name(name)``."""
    if ref != to:
        execute(conn, sql.SQL("alter table {} rename to {}").format(ref.ident(), sql.Identifier(to.table)))
    for kind, name in named_objects(conn, oid):
        rename_object(conn, kind, to, name, new_name(name))


def renamed_by(renames: list[Rename]) -> Callable[[str], str]:
    """``new_name`` for :func:`move_table` from a list of planned renames (other names stay)."""
    planned = {r.temp: r.final for r in renames}
    return lambda name: planned.get(name, name)


def retire(conn: psycopg.Connection, ref: TableRef, oid: int, base: TableRef, suffix: str) -> None:
    """Move a table leaving the swap (and its schema-unique names) to ``<base><suffix>``; dropped after COMMIT."""
    move_table(conn, ref, oid, base.with_suffix(suffix), lambda name: suffixed_name(name, suffix))
