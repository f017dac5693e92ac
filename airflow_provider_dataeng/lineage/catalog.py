"""What a lineage event reads from the database at task end: the tables' columns and types (catalog) and
the ledger row of the publish attempt the task just made (rows, bytes, check results, status)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_dataeng.connections import Role, connect
from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.ledger import ledger_ident
from airflow_provider_dataeng.publish.table_ref import TableRef

# Lineage is an extra: a database that does not answer within this many seconds gets no facets from it.
CONNECT_DEADLINE_S = 5.0


@dataclass(frozen=True)
class Attempt:
    """Which ledger row to read: the newest of this task's run for this target."""

    pipeline: str | None
    task_id: str
    run_id: str
    target: TableRef


def describe(conn_id: str, tables: Iterable[TableRef], *, role: Role = "warehouse",
             application_name: str | None = None, attempt: Attempt | None = None,
             ) -> tuple[dict[TableRef, list[tuple[str, str]]], dict[str, Any] | None]:
    """``({table: [(column, type)]} for the tables that exist, the attempt's ledger row or None)``, on one
    read-only connection."""
    wanted = list(dict.fromkeys(tables))
    if not wanted and attempt is None:
        return {}, None
    hook = connect(conn_id, role=role, application_name=application_name, connect_deadline=CONNECT_DEADLINE_S)
    columns: dict[TableRef, list[tuple[str, str]]] = {}
    with hook.connection_scope() as conn:
        conn.autocommit = True
        for ref in wanted:
            found = catalog.relation(conn, ref)
            if found is not None:
                columns[ref] = catalog.columns(conn, found.oid)
        return columns, ledger_row(conn, attempt) if attempt is not None else None


def ledger_row(conn: psycopg.Connection, attempt: Attempt) -> dict[str, Any] | None:
    """``{status, rows, bytes, checks}`` of the attempt's newest ledger row (None without a ledger or row)."""
    if catalog.scalar(conn, "select to_regclass('dataeng.load_ledger')") is None:
        return None
    found = catalog.rows(conn, sql.SQL(
        "select status, rows, bytes, checks from {} where run_id = %s and task_id = %s and pipeline "
        "is not distinct from %s and target_schema = %s and target_table = %s order by id desc limit 1"
    ).format(ledger_ident()), [attempt.run_id, attempt.task_id, attempt.pipeline, attempt.target.schema,
                               attempt.target.table])
    if not found:
        return None
    status, rows, size, checks = found[0]
    return {"status": status, "rows": rows, "bytes": size, "checks": checks or []}
