"""Airflow Assets for warehouse tables (outlets of publishing operators), built without connecting."""

from __future__ import annotations

from urllib.parse import quote

from airflow.providers.common.compat.sdk import Asset

from airflow_provider_dataeng.publish.table_ref import TableRef


def table_asset_uri(conn_id: str, table: TableRef | str, *, database: str | None = None) -> str:
    """``postgres://<conn_id>/<database or conn_id>/<schema>/<table>`` (valid for Airflow's postgres scheme).

    The host part is the Airflow connection id (a logical name: a connection may list several hosts
    for failover), so the URI is the same on every host and needs no connection at parse time.
    """
    ref = TableRef.parse(table) if isinstance(table, str) else table
    if not conn_id:
        raise ValueError("conn_id: expected an Airflow connection id for the asset URI")
    parts = [database or conn_id, ref.schema, ref.table]
    return f"postgres://{quote(conn_id, safe='')}/" + "/".join(quote(p, safe="") for p in parts)


def table_asset(conn_id: str, table: TableRef | str, *, database: str | None = None,
                asset_uri: str | None = None) -> Asset:
    """The Asset for ``table`` reached through ``conn_id`` (or for an explicit ``asset_uri``)."""
    ref = TableRef.parse(table) if isinstance(table, str) else table
    uri = asset_uri or table_asset_uri(conn_id, ref, database=database)
    return Asset(name=f"{conn_id}.{ref.schema}.{ref.table}", uri=uri)
