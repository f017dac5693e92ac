"""The one way to connect: every warehouse, source and monitor hook of the provider is built here.

Nothing else in the provider constructs a hook (``tests/test_architecture.py`` enforces it). Every hook
built here

- uses psycopg 3 (the engines use its COPY, ``sql`` and async APIs), whatever the connection's ``driver``
  extra says;
- sets the session's ``TimeZone`` to UTC (callers may add or override server settings, e.g. a source's
  zone, with ``session_settings``);
- turns on TCP keepalives on both ends (extras ``keepalives_idle``/``_interval``/``_count``, default
  30 s / 10 s / 3), so the server drops a dead worker's session, and its advisory locks, within minutes;
- names the running DAG and task in ``application_name`` (``pg_stat_activity``), at most 63 bytes;
- passes only libpq options to libpq: extras such as ``dbt_schema`` or ``connect_deadline`` are read by
  the provider, never handed to ``PQconnectdb``;
- accepts IPv6 hosts (``[::1]:5432`` or bare ``::1``) in the multi-host host field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from airflow_provider_dataeng.hooks.pg_auto_failover import PgAutoFailoverHook
    from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

Role = Literal["warehouse", "source", "monitor"]
ROLES: tuple[str, ...] = ("warehouse", "source", "monitor")
DRIVER = "psycopg"


@overload
def connect(
    conn_id: str,
    *,
    role: Literal["monitor"],
    application_name: str | None = None,
    session_settings: Mapping[str, Any] | None = None,
    target_session_attrs: str | None = None,
    connect_deadline: float | None = None,
    connect_backoff_max: float | None = None,
) -> PgAutoFailoverHook: ...


@overload
def connect(
    conn_id: str,
    *,
    role: Literal["warehouse", "source"] = "warehouse",
    application_name: str | None = None,
    session_settings: Mapping[str, Any] | None = None,
    target_session_attrs: str | None = None,
    connect_deadline: float | None = None,
    connect_backoff_max: float | None = None,
) -> FailoverPostgresHook: ...


def connect(
    conn_id: str,
    *,
    role: Role = "warehouse",
    application_name: str | None = None,
    session_settings: Mapping[str, Any] | None = None,
    target_session_attrs: str | None = None,
    connect_deadline: float | None = None,
    connect_backoff_max: float | None = None,
) -> FailoverPostgresHook | PgAutoFailoverHook:
    """The hook for ``conn_id`` in ``role`` (``monitor`` gives a :class:`PgAutoFailoverHook`).

    Building the hook makes no connection; ``hook.get_conn()`` / ``run_with_reconnect`` do.

    :param conn_id: the Airflow connection.
    :param role: ``warehouse`` or ``source`` (a failover-aware :class:`FailoverPostgresHook`), or
        ``monitor`` (a pg_auto_failover monitor).
    :param application_name: the name in ``pg_stat_activity``; default: ``<dag_id>/<task_id>`` of the
        running task, else the connection's ``application_name`` extra, else the provider's name.
    :param session_settings: server settings for the session on top of ``{"TimeZone": "UTC"}`` (e.g.
        ``{"TimeZone": "Europe/Berlin"}`` for a source whose naive timestamps are in that zone).
    :param target_session_attrs: override the connection's ``target_session_attrs`` extra.
    :param connect_deadline: override the connection's ``connect_deadline`` extra (seconds).
    :param connect_backoff_max: override the connection's ``connect_backoff_max`` extra (seconds).
    """
    if role not in ROLES:
        raise ValueError(f"role={role!r}: expected one of {', '.join(ROLES)}")
    if not isinstance(conn_id, str) or not conn_id.strip():
        raise ValueError(f"conn_id={conn_id!r}: expected an Airflow connection id")
    kwargs: dict[str, Any] = {
        "driver": DRIVER,
        "application_name": application_name,
        "session_settings": session_settings,
        "target_session_attrs": target_session_attrs,
        "connect_deadline": connect_deadline,
        "connect_backoff_max": connect_backoff_max,
    }
    if role == "monitor":
        from airflow_provider_dataeng.hooks.pg_auto_failover import PgAutoFailoverHook

        return PgAutoFailoverHook(monitor_conn_id=conn_id, **kwargs)
    from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

    return FailoverPostgresHook(postgres_conn_id=conn_id, **kwargs)


def trigger_application_name(trigger: Any) -> str | None:
    """``<dag_id>/<task_id> (triggerer)`` for a trigger running for a task instance, else None.

    In the triggerer no task context exists; the trigger runner sets ``trigger.task_instance``."""
    ti = getattr(trigger, "task_instance", None)
    dag_id, task_id = getattr(ti, "dag_id", None), getattr(ti, "task_id", None)
    if not (isinstance(dag_id, str) and isinstance(task_id, str)):
        return None
    suffix = " (triggerer)"
    from airflow_provider_dataeng.hooks.postgres import APPLICATION_NAME_MAX_BYTES

    return f"{dag_id}/{task_id}"[: APPLICATION_NAME_MAX_BYTES - len(suffix)] + suffix
