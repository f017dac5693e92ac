"""The one identity of a warehouse table as an Airflow Asset (and an OpenLineage dataset).

Every producer and consumer of a table builds its Asset with :func:`table_asset`: extract and publish
outlets, dbt model outlets, factory schedules (``schedule: {after: [...]}``), and lineage events. So
the name and the URI always agree and no two Assets share a URI.

Scheme (Airflow's postgres provider): ``postgres://<conn_id>:5432/<database>/<schema>/<table>``

- host: the Airflow connection id, a logical name. A warehouse connection may list several hosts for
  failover; the Asset must not change when a standby is promoted or a host is added.
- port: always 5432 (the provider's normal form; it fills in 5432 when missing).
- database: :func:`resolve_database`, without any database or network call (DAG parse time), first of

  1. ``database=`` passed by the caller;
  2. the ``databases:`` setting of the pipeline config or ``defaults.yaml`` (``{conn_id: database}``),
     in force while the factory builds that pipeline's DAG (:func:`asset_databases`; hand-written DAGs
     may use the same context manager); operators keep the mapping for their run-time lineage and check;
  3. the connection's database from its ``AIRFLOW_CONN_<CONN_ID>`` environment variable (URI or JSON);
  4. the connection id, the only name left for a connection that lives in Airflow's metadata DB or a
     secrets backend. The task then logs a warning naming the real database when it connects
     (:func:`database_check`), since dbt's manifest names the real one: set ``databases:`` to agree.

- schema and table are percent-encoded, so any PostgreSQL name is one path segment.

The name is the URI itself: a hand-written URI in a config names the same Asset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from airflow.providers.common.compat.sdk import AirflowFailException, Asset

from airflow_provider_dataeng.publish.table_ref import TableRef

PORT = 5432
Origin = Literal["argument", "config", "environment", "conn_id"]
_EMPTY: Mapping[str, str] = MappingProxyType({})
_DATABASES: ContextVar[Mapping[str, str]] = ContextVar("dataeng_asset_databases", default=_EMPTY)
_ORIGINS = {
    "argument": "passed as database=",
    "config": "from the pipeline's 'databases:' setting",
    "environment": "from the AIRFLOW_CONN_{} environment variable",
    "conn_id": "the connection id, because the connection is not in the environment at DAG parse time",
}


@dataclass(frozen=True)
class AssetDatabase:
    """The database a table's Asset names for a connection, and where that name came from."""

    conn_id: str
    database: str
    origin: Origin

    @property
    def explicit(self) -> bool:
        """Named by a setting or the connection itself (not the connection-id fallback)."""
        return self.origin != "conn_id"

    def describe(self) -> str:
        return _ORIGINS[self.origin].format(self.conn_id.upper())


@contextlib.contextmanager
def asset_databases(databases: Mapping[str, str] | None) -> Iterator[None]:
    """Within the block, Asset identities use ``databases`` (``{conn_id: database}``) on top of any
    enclosing mapping. The factory builds each pipeline's DAG inside its ``databases:`` setting."""
    token = _DATABASES.set(MappingProxyType({**_DATABASES.get(), **(databases or {})}))
    try:
        yield
    finally:
        _DATABASES.reset(token)


_BY_DAG: dict[str, Mapping[str, str]] = {}


def register_dag_databases(dag_id: str, databases: Mapping[str, str] | None) -> None:
    """Remember a factory pipeline's ``databases:`` by dag id (for its mapped tasks, which are built from
    their partial arguments when they run, outside the factory's build)."""
    _BY_DAG[dag_id] = MappingProxyType(dict(databases or {}))


def configured_databases(dag: Any = None) -> dict[str, str]:
    """The ``{conn_id: database}`` mapping in force (operators keep it for their run time): inside a factory
    build the pipeline's; else the one registered for ``dag`` (a mapped task being unmapped)."""
    current = _DATABASES.get()
    if current or dag is None:
        return dict(current)
    return dict(_BY_DAG.get(getattr(dag, "dag_id", None) or "", {}))


def environment_database(conn_id: str) -> str | None:
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


def resolve_database(conn_id: str, database: str | None = None) -> AssetDatabase:
    """The database of ``conn_id`` in Asset identities (the order is in the module docstring); no I/O."""
    if database:
        return AssetDatabase(conn_id, database, "argument")
    configured = _DATABASES.get().get(conn_id)
    if configured:
        return AssetDatabase(conn_id, configured, "config")
    found = environment_database(conn_id)
    if found:
        return AssetDatabase(conn_id, found, "environment")
    return AssetDatabase(conn_id, conn_id, "conn_id")


def connection_database(conn_id: str) -> str | None:
    """The database :func:`resolve_database` names for ``conn_id``, or None when it knows none (it would
    fall back to the connection id)."""
    found = resolve_database(conn_id)
    return found.database if found.explicit else None


def table_asset_uri(conn_id: str, table: TableRef | str, *, database: str | None = None) -> str:
    """``postgres://<conn_id>:5432/<database>/<schema>/<table>`` (see the module docstring)."""
    if not isinstance(conn_id, str) or not conn_id:
        raise ValueError(f"conn_id: expected an Airflow connection id for the asset URI, got {conn_id!r}")
    ref = TableRef.parse(table) if isinstance(table, str) else table
    parts = [resolve_database(conn_id, database).database, ref.schema, ref.table]
    return f"postgres://{quote(conn_id, safe='')}:{PORT}/" + "/".join(quote(p, safe="") for p in parts)


def table_asset(conn_id: str, table: TableRef | str, *, database: str | None = None) -> Asset:
    """The Asset of ``table`` in the warehouse reached through ``conn_id`` (name == URI)."""
    uri = table_asset_uri(conn_id, table, database=database)
    return Asset(name=uri, uri=uri)


class AssetDatabaseMismatch(AirflowFailException):
    """The task's connection reaches another database than the one its Assets and lineage name."""


def database_check(identity: AssetDatabase, log: logging.Logger | logging.LoggerAdapter | Any
                   ) -> Callable[[Any], None]:
    """A check for each connection a task opens to ``identity.conn_id`` (no query: libpq's ``dbname``).

    When the database differs from the one its Asset identity names: with an explicit name (a setting, the
    environment, an argument) the task fails before anything is written (its events would name another
    table); with the connection-id fallback (a connection defined in Airflow's UI or a secrets backend,
    which pipelines relied on before ``databases:`` existed) it logs a warning once and goes on.
    """
    warned = False

    def check(conn: Any) -> None:
        nonlocal warned
        info = getattr(conn, "info", None)
        actual = getattr(info, "dbname", None)
        if not actual or actual == identity.database:
            return
        fix = (f"set `databases: {{{identity.conn_id}: {actual}}}` in the pipeline config or in defaults.yaml "
               f"(one line covers every pipeline of the folder), or define the connection as "
               f"AIRFLOW_CONN_{identity.conn_id.upper()}")
        message = (f"Asset identity mismatch: connection '{identity.conn_id}' reaches database '{actual}', but "
                   f"this task's Assets and lineage name database '{identity.database}' "
                   f"({identity.describe()}). Downstream DAGs scheduled on the table (e.g. by dbt models, "
                   f"which name the real database) wait for an Asset this task never updates. Fix: {fix}.")
        if identity.explicit:
            raise AssetDatabaseMismatch(message + " Nothing was written.")
        if not warned:
            warned = True
            log.warning("%s Going on: the events are published under database '%s' as before.", message,
                        identity.database)

    return check
