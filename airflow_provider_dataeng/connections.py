"""The one way to connect: every warehouse, source and monitor connection is built here.

Nothing else in the provider constructs a hook. The function decides the driver, the session settings
(time zone, keepalives), and the ``application_name`` that names the DAG and task in ``pg_stat_activity``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from airflow_provider_dataeng.hooks.pg_auto_failover import PgAutoFailoverHook
    from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

Role = Literal["warehouse", "source", "monitor"]


def connect(
    conn_id: str,
    *,
    role: Role = "warehouse",
    application_name: str | None = None,
) -> FailoverPostgresHook | PgAutoFailoverHook:
    """The hook for ``conn_id`` in ``role`` (``monitor`` gives a :class:`PgAutoFailoverHook`).

    Always psycopg 3 (the engines use its COPY and ``sql`` APIs), whatever the connection's extras say.
    """
    if role == "monitor":
        from airflow_provider_dataeng.hooks.pg_auto_failover import PgAutoFailoverHook

        return PgAutoFailoverHook(monitor_conn_id=conn_id, driver="psycopg")
    from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

    return FailoverPostgresHook(postgres_conn_id=conn_id, driver="psycopg")
