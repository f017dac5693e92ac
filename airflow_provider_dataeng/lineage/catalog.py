"""Columns and types of the tables in a lineage event, read from the database's catalog at task end."""

from __future__ import annotations

from collections.abc import Iterable

from airflow_provider_dataeng.connections import Role, connect
from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.table_ref import TableRef

# Lineage is an extra: a database that does not answer within this many seconds gets no schema facet.
CONNECT_DEADLINE_S = 10.0


def table_columns(conn_id: str, tables: Iterable[TableRef], *, role: Role = "warehouse",
                  application_name: str | None = None) -> dict[TableRef, list[tuple[str, str]]]:
    """``{table: [(column, type)]}`` for the tables that exist (one connection, read only)."""
    wanted = list(dict.fromkeys(tables))
    if not wanted:
        return {}
    hook = connect(conn_id, role=role, application_name=application_name, connect_deadline=CONNECT_DEADLINE_S)
    out: dict[TableRef, list[tuple[str, str]]] = {}
    with hook.connection_scope() as conn:
        conn.autocommit = True
        for ref in wanted:
            found = catalog.relation(conn, ref)
            if found is not None:
                out[ref] = catalog.columns(conn, found.oid)
    return out
