"""The one identity of a warehouse table as an Airflow Asset (and an OpenLineage dataset).

Every producer and consumer of a table builds its Asset with :func:`table_asset`: extract and publish
outlets, dbt model outlets, factory schedules (``schedule: {after: [...]}``), and lineage events. So
the name and the URI always agree and no two Assets share a URI.

Scheme (Airflow's postgres provider): ``postgres://<conn_id>:5432/<database>/<schema>/<table>``

- host: the Airflow connection id, a logical name. A warehouse connection may list several hosts for
  failover; the Asset must not change when a standby is promoted or a host is added.
- port: always 5432 (the provider's normal form; it fills in 5432 when missing).
- database: the connection's database (its ``schema`` field) when the connection is defined in the
  environment (``AIRFLOW_CONN_<CONN_ID>``, URI or JSON form), read without any database or network
  call; else the connection id. Pass ``database`` only to override that everywhere at once.
- schema and table are percent-encoded, so any PostgreSQL name is one path segment.

The name is the URI itself: a hand-written URI in a config names the same Asset.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote, unquote, urlsplit

from airflow.providers.common.compat.sdk import Asset

from airflow_provider_dataeng.publish.table_ref import TableRef

PORT = 5432


def connection_database(conn_id: str) -> str | None:
    """The database of ``conn_id`` from its ``AIRFLOW_CONN_*`` environment variable, or None (no I/O)."""
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not raw:
        return None
    raw = raw.strip()
    try:
        if raw.startswith("{"):
            value = json.loads(raw).get("schema")
        else:
            value = unquote(urlsplit(raw).path.lstrip("/"))
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def table_asset_uri(conn_id: str, table: TableRef | str, *, database: str | None = None) -> str:
    """``postgres://<conn_id>:5432/<database>/<schema>/<table>`` (see the module docstring)."""
    if not isinstance(conn_id, str) or not conn_id:
        raise ValueError(f"conn_id: expected an Airflow connection id for the asset URI, got {conn_id!r}")
    ref = TableRef.parse(table) if isinstance(table, str) else table
    parts = [database or connection_database(conn_id) or conn_id, ref.schema, ref.table]
    return f"postgres://{quote(conn_id, safe='')}:{PORT}/" + "/".join(quote(p, safe="") for p in parts)


def table_asset(conn_id: str, table: TableRef | str, *, database: str | None = None) -> Asset:
    """The Asset of ``table`` in the warehouse reached through ``conn_id`` (name == URI)."""
    uri = table_asset_uri(conn_id, table, database=database)
    return Asset(name=uri, uri=uri)
