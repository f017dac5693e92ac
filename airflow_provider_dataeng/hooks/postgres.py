"""Failover-aware PostgreSQL hook: libpq multi-host DSN, connect backoff, reconnecting units of work.

Connection form (documented in the README): the Airflow connection's ``host`` names one or more hosts,
comma separated, each optionally with its own port: ``h1:5432,h2:5433`` (a host without a port uses the
connection's port, else 5432); IPv6 addresses are written ``[::1]:5432`` (or bare ``::1`` without a port).
Extras understood here (of the rest, only libpq connection options are passed to libpq; anything else, such
as ``dbt_schema``, is left to whoever reads it):

- ``target_session_attrs``: ``read-write`` (default), ``primary``, ``prefer-standby``, ``standby``,
  ``read-only`` or ``any``.
- ``connect_timeout``: seconds per host (default 5).
- ``connect_deadline``: total seconds to keep retrying a connect (default 120).
- ``connect_backoff_max``: the longest pause between two connect attempts (default 2 s), so a client
  notices a promoted primary within seconds of it accepting writes.
- ``driver``: ``psycopg`` (3) or ``psycopg2``; default: whatever PostgresHook picks. Hooks built by
  :func:`airflow_provider_dataeng.connections.connect` always use psycopg 3, whatever this says.
- ``keepalives_idle`` / ``keepalives_interval`` / ``keepalives_count``: TCP keepalives, applied on both
  ends (libpq's client options and the server's ``tcp_keepalives_*`` settings for the session), default
  30 s / 10 s / 3: a dead worker's session, and its advisory locks, go away in about a minute.
- ``options``: libpq ``options`` (``-c name=value ...``); the session settings of the hook (``TimeZone``
  ``UTC`` by default) come after them, so they win.
- ``session_settings``: how the session settings (``TimeZone``, the server-side keepalives, a source's
  zone) reach the server: ``options`` (default: the libpq ``options`` startup parameter, no round trip) or
  ``set`` (``set_config(...)`` right after connecting, committed: for poolers such as PgBouncer that reject
  the ``options`` startup parameter; with PgBouncer use session pooling: transaction pooling is refused).
- ``pooler_check``: ``true`` (default): every connect refuses a pooler in transaction or statement pooling
  mode (PgBouncer ``pool_mode=transaction``), which breaks the publish lock and the session state
  (:mod:`airflow_provider_dataeng.hooks.pooler`); ``false`` skips that probe.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from airflow.providers.postgres.hooks.postgres import USE_PSYCOPG3, PostgresHook

from airflow_provider_dataeng.hooks.pooler import check_session_pooling, startup_refusal_error
from airflow_provider_dataeng.values import first_line

T = TypeVar("T")

TARGET_SESSION_ATTRS = ("read-write", "primary", "prefer-standby", "standby", "read-only", "any")
DRIVERS = ("psycopg", "psycopg2")
DEFAULT_PORT = 5432
DEFAULT_SESSION_SETTINGS: Mapping[str, str] = {"TimeZone": "UTC"}
# (libpq client option, server setting, default): the client notices a dead server, the server a dead client.
KEEPALIVES = (
    ("keepalives_idle", "tcp_keepalives_idle", 30),
    ("keepalives_interval", "tcp_keepalives_interval", 10),
    ("keepalives_count", "tcp_keepalives_count", 3),
)
APPLICATION_NAME_MAX_BYTES = 63  # NAMEDATALEN - 1: the server truncates longer names
DEFAULT_APPLICATION_NAME = "airflow-provider-dataeng"
BACKOFF_MAX_EXPONENT = 64  # 2**64 times any base is past every cap; larger exponents would overflow a float
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
SESSION_SETTINGS_MODES = ("options", "set")
SET_CONFIG_SQL = "select set_config(%s, %s, false)"

# SQLSTATEs after which the same work can succeed on a fresh connection (failover, restart, crash).
RECONNECT_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up / shutting down)
        "25006",  # read_only_sql_transaction: we landed on a standby after a failover
        "08000", "08003", "08006", "08001", "08004",  # connection exceptions
    }
)
# Connect errors that no retry can fix: fail fast instead of a retry storm.
FATAL_CONNECT_MARKERS = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "role \"",  # role "x" does not exist
    "does not exist",  # database "x" does not exist
    "invalid connection option",
    "invalid target_session_attrs",
    "certificate",
    "unsupported startup parameter",  # PgBouncer refuses libpq `options`: use "session_settings": "set"
    "no such database",  # PgBouncer: no [databases] entry for it
)


def parse_hosts(host_field: str | None, default_port: int | None) -> list[tuple[str, int]]:
    """Parse ``h1:5432,h2:5433`` (ports optional; IPv6 as ``[::1]:5432`` or bare ``::1``) into
    ``[(host, port), ...]``."""
    if not host_field or not host_field.strip():
        raise ValueError("connection host is empty: expected 'host[:port][,host[:port]...]'")
    hosts: list[tuple[str, int]] = []
    for item in host_field.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"connection host {host_field!r} has an empty entry")
        if item.startswith("["):
            name, bracket, rest = item[1:].partition("]")
            if not bracket or not name:
                raise ValueError(f"connection host {host_field!r}: {item!r} has no closing ']' (expected '[::1]:5432')")
            if rest and not rest.startswith(":"):
                raise ValueError(f"connection host {host_field!r}: expected ':port' after {item[:len(name) + 2]!r}")
            port = rest[1:]
        elif item.count(":") == 1:
            name, _, port = item.partition(":")
        else:  # a host name, an IPv4 address, or a bare IPv6 address (no port)
            name, port = item, ""
        if not name:
            raise ValueError(f"connection host {host_field!r}: {item!r} names no host")
        if port and not port.isdigit():
            raise ValueError(f"connection host {host_field!r}: port {port!r} is not a number")
        if port and not 0 < int(port) < 65536:
            raise ValueError(f"connection host {host_field!r}: port {port} is out of range (1-65535)")
        hosts.append((name, int(port) if port else (default_port or DEFAULT_PORT)))
    return hosts


def format_host(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:5432``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: ``min(cap, base * 2**(attempt - 1))`` scaled by U(0.5, 1).

    Never overflows, whatever ``attempt`` is (a trigger may retry for days)."""
    exponent = min(max(int(attempt) - 1, 0), BACKOFF_MAX_EXPONENT)
    return min(float(cap), math.ldexp(float(base), exponent)) * random.uniform(0.5, 1.0)


@functools.cache
def libpq_keywords() -> frozenset[str]:
    """Every connection option the installed libpq knows (``PQconndefaults``)."""
    from psycopg import pq

    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


def clean_application_name(name: str) -> str:
    """Printable ASCII (the server shows anything else as ``?``), at most 63 bytes."""
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in str(name)).strip()
    return text[:APPLICATION_NAME_MAX_BYTES]


def task_application_name() -> str | None:
    """``<dag_id>/<task_id>[<map_index>]`` of the task running in this process, if any."""
    dag_id = task_id = None
    map_index: Any = None
    try:
        from airflow.sdk import get_current_context

        context = get_current_context()
        ti = context.get("ti") or context.get("task_instance")
        dag_id, task_id = getattr(ti, "dag_id", None), getattr(ti, "task_id", None)
        map_index = getattr(ti, "map_index", None)
    except Exception:  # noqa: BLE001 - no task is running here (triggerer, CLI, tests)
        pass
    if not (dag_id and task_id):
        dag_id, task_id = os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_TASK_ID")
    if not (dag_id and task_id):
        return None
    name = f"{dag_id}/{task_id}"
    if isinstance(map_index, int) and map_index >= 0:
        name += f"[{map_index}]"
    return name


def session_options(settings: Mapping[str, Any]) -> str:
    """libpq ``options`` text setting each server setting (``-c name=value``; spaces escaped)."""
    parts = []
    for name, value in settings.items():
        if not _SETTING_NAME.match(str(name)):
            raise ValueError(f"session setting {name!r}: expected a PostgreSQL setting name like 'TimeZone'")
        text = str(value).replace("\\", "\\\\").replace(" ", "\\ ")
        parts.append(f"-c {name}={text}")
    return " ".join(parts)


def sqlstate_of(exc: BaseException) -> str | None:
    """SQLSTATE of a psycopg2 or psycopg 3 error, if any."""
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def _driver_errors(driver: str) -> tuple[type[BaseException], type[BaseException], type[BaseException]]:
    if driver == "psycopg":
        import psycopg

        return psycopg.Error, psycopg.OperationalError, psycopg.InterfaceError
    import psycopg2

    return psycopg2.Error, psycopg2.OperationalError, psycopg2.InterfaceError


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the connection (not the SQL) failed: worth retrying on a new connection."""
    state = sqlstate_of(exc)
    if state is not None:
        return state in RECONNECT_SQLSTATES or state.startswith("08")
    for driver in DRIVERS:
        try:
            _, operational, interface = _driver_errors(driver)
        except ImportError:  # pragma: no cover - both drivers are dependencies
            continue
        if isinstance(exc, (operational, interface)):
            return True
    return isinstance(exc, (ConnectionError, EOFError))


def is_fatal_connect_error(exc: BaseException) -> bool:
    """True for connect errors that retrying cannot fix (bad password, unknown role or database, a startup
    parameter refused by a proxy such as PgBouncer)."""
    text = str(exc).lower()
    return any(marker in text for marker in FATAL_CONNECT_MARKERS)


class FailoverPostgresHook(PostgresHook):
    """PostgresHook that follows the primary across failovers.

    :param target_session_attrs: override the connection's ``target_session_attrs``.
    :param connect_deadline: total seconds to keep retrying a connect.
    :param connect_backoff_max: the longest pause between connect attempts (seconds, default 2).
    :param driver: ``psycopg`` or ``psycopg2``; default from the connection extra, else PostgresHook's pick.
    :param application_name: the name in ``pg_stat_activity`` (cut to 63 bytes); default: the running task
        (``<dag_id>/<task_id>``), else the connection's ``application_name`` extra, else the provider's name.
    :param session_settings: server settings for the session (``{"TimeZone": "UTC"}`` is the default and
        is always set unless overridden here).
    """

    conn_type = "dataeng_postgres"
    hook_name = "PostgreSQL (failover-aware, multi-host)"
    default_conn_name = "dataeng_default"
    ignored_extra_options = PostgresHook.ignored_extra_options | {"connect_deadline", "connect_backoff_max", "driver",
                                                                  "session_settings", "pooler_check"}
    # Set by this hook from its own arguments and extras; never copied from the extras as they are.
    managed_options = frozenset({"host", "port", "dbname", "user", "password", "connect_timeout",
                                 "target_session_attrs", "options", "application_name", "keepalives",
                                 *(client for client, _, _ in KEEPALIVES)})

    def __init__(
        self,
        *args: Any,
        target_session_attrs: str | None = None,
        connect_deadline: float | None = None,
        connect_backoff_max: float | None = None,
        driver: str | None = None,
        application_name: str | None = None,
        session_settings: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if target_session_attrs is not None and target_session_attrs not in TARGET_SESSION_ATTRS:
            raise ValueError(
                f"target_session_attrs={target_session_attrs!r}: expected one of {', '.join(TARGET_SESSION_ATTRS)}"
            )
        if driver is not None and driver not in DRIVERS:
            raise ValueError(f"driver={driver!r}: expected one of {', '.join(DRIVERS)}")
        self._target_session_attrs = target_session_attrs
        self._connect_deadline = connect_deadline
        self._connect_backoff_max = connect_backoff_max
        self._driver = driver
        self._application_name = application_name
        self.session_settings: dict[str, Any] = {**DEFAULT_SESSION_SETTINGS, **(session_settings or {})}
        session_options(self.session_settings)  # a bad setting name fails here, not at connect time

    # -- connection parameters -------------------------------------------------------------------
    @property
    def driver(self) -> str:
        """The DB-API driver this hook connects with: ``psycopg`` (3) or ``psycopg2``."""
        driver = self._driver or self.connection.extra_dejson.get("driver")
        if driver is None:
            return "psycopg" if USE_PSYCOPG3 else "psycopg2"
        if driver not in DRIVERS:
            raise ValueError(f"connection {self.get_conn_id()!r} extra driver={driver!r}: expected one of {DRIVERS}")
        return driver

    def get_conn_id(self) -> str:
        return getattr(self, self.conn_name_attr)

    @property
    def hosts(self) -> list[tuple[str, int]]:
        """The ``(host, port)`` pairs named by the connection, in order."""
        return parse_hosts(self.connection.host, self.connection.port)

    @property
    def target_session_attrs(self) -> str:
        value = self._target_session_attrs or self.connection.extra_dejson.get("target_session_attrs", "read-write")
        if value not in TARGET_SESSION_ATTRS:
            raise ValueError(
                f"connection {self.get_conn_id()!r} extra target_session_attrs={value!r}: "
                f"expected one of {', '.join(TARGET_SESSION_ATTRS)}"
            )
        return value

    @property
    def connect_deadline(self) -> float:
        if self._connect_deadline is not None:
            return float(self._connect_deadline)
        return float(self.connection.extra_dejson.get("connect_deadline", 120))

    @property
    def connect_backoff_max(self) -> float:
        if self._connect_backoff_max is not None:
            return float(self._connect_backoff_max)
        return float(self.connection.extra_dejson.get("connect_backoff_max", 2))

    @property
    def dbname(self) -> str | None:
        return self.database or self.connection.schema

    @property
    def application_name(self) -> str:
        """The session's ``application_name``: explicit, else the running task, else the extra, else ours."""
        name = (self._application_name or task_application_name()
                or self.connection.extra_dejson.get("application_name") or DEFAULT_APPLICATION_NAME)
        return clean_application_name(name)

    def keepalive_settings(self) -> dict[str, int]:
        """``{libpq option: seconds or count}`` from the extras, else the defaults (30 s / 10 s / 3)."""
        extras = self.connection.extra_dejson
        values = {}
        for client, _, default in KEEPALIVES:
            raw = extras.get(client, default)
            try:
                value = int(raw)
            except (TypeError, ValueError):
                raise ValueError(
                    f"connection {self.get_conn_id()!r} extra {client}={raw!r}: expected a whole number"
                ) from None
            if value < 1:
                raise ValueError(f"connection {self.get_conn_id()!r} extra {client}={raw!r}: expected >= 1")
            values[client] = value
        return values

    @property
    def session_settings_mode(self) -> str:
        """``options`` (the libpq startup parameter) or ``set`` (applied after connecting; the
        ``session_settings`` extra)."""
        mode = self.connection.extra_dejson.get("session_settings", "options")
        if mode not in SESSION_SETTINGS_MODES:
            raise ValueError(f"connection {self.get_conn_id()!r} extra session_settings={mode!r}: expected one of "
                             f"{', '.join(SESSION_SETTINGS_MODES)} (set: for poolers such as PgBouncer that reject "
                             "the options startup parameter)")
        return mode

    def server_settings(self) -> dict[str, str]:
        """The server settings every session gets: the server-side keepalives, then the session settings."""
        keepalives = self.keepalive_settings()
        settings = {server: keepalives[client] for client, server, _ in KEEPALIVES}
        return {name: str(value) for name, value in {**settings, **self.session_settings}.items()}

    def session_setup(self) -> list[tuple[str, tuple[str, str]]]:
        """``(statement, params)`` to run right after connecting: the server settings under
        ``session_settings: set``, else nothing (libpq ``options`` carried them)."""
        if self.session_settings_mode != "set":
            return []
        return [(SET_CONFIG_SQL, (name, value)) for name, value in self.server_settings().items()]

    def apply_session_settings(self, conn: Any) -> None:
        """Run :meth:`session_setup` on a new psycopg 3 or psycopg2 connection, committed (so a later
        rollback keeps them)."""
        statements = self.session_setup()
        if not statements:
            return
        cur = conn.cursor()
        try:
            for statement, params in statements:
                cur.execute(statement, params)
        finally:
            cur.close()
        if not getattr(conn, "autocommit", False):
            conn.commit()

    async def aapply_session_settings(self, aconn: Any) -> None:
        """:meth:`apply_session_settings` for a psycopg 3 ``AsyncConnection``."""
        statements = self.session_setup()
        if not statements:
            return
        async with aconn.cursor() as cur:
            for statement, params in statements:
                await cur.execute(statement, params)
        if not aconn.autocommit:
            await aconn.commit()

    def passed_extras(self) -> dict[str, Any]:
        """The extras that are libpq options this hook does not set itself (``sslmode``, ...).

        Anything else (``dbt_schema``, ``connect_deadline``, a typo) is never passed to libpq, where it
        would fail every connect with "invalid connection option"."""
        known = libpq_keywords()
        return {
            key: value for key, value in self.connection.extra_dejson.items()
            if key in known and key not in self.managed_options and key not in self.ignored_extra_options
            and value is not None
        }

    def conn_params(self, *, include_password: bool = True) -> dict[str, Any]:
        """libpq keyword parameters (multi-host) for either driver or an async connection."""
        conn = self.connection
        hosts = self.hosts
        keepalives = self.keepalive_settings()
        startup = session_options(self.server_settings()) if self.session_settings_mode == "options" else None
        options = " ".join(part for part in (conn.extra_dejson.get("options"), self.options, startup) if part)
        params: dict[str, Any] = {
            "host": ",".join(h for h, _ in hosts),
            "port": ",".join(str(p) for _, p in hosts),
            "dbname": self.dbname,
            "user": conn.login,
            "connect_timeout": int(conn.extra_dejson.get("connect_timeout", 5)),
            "target_session_attrs": self.target_session_attrs,
            "application_name": self.application_name,
            "keepalives": 1,
            **keepalives,
            "options": options or None,
            **self.passed_extras(),
        }
        if include_password and conn.password:
            params["password"] = conn.password
        return {k: v for k, v in params.items() if v is not None}

    def describe(self) -> str:
        """A log-safe description: hosts, database, user and session attrs, never the password."""
        hosts = ",".join(format_host(h, p) for h, p in self.hosts)
        return f"{hosts}/{self.dbname} as {self.connection.login} ({self.target_session_attrs})"

    def get_uri(self) -> str:
        """A libpq URI naming every host (``postgresql://u:p@h1:1,h2:2/db?target_session_attrs=...``)."""
        from urllib.parse import quote

        conn = self.connection
        auth = quote(conn.login or "", safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        netloc = ",".join(format_host(h, p) for h, p in self.hosts)
        return f"postgresql://{auth}@{netloc}/{quote(self.dbname or '', safe='')}?target_session_attrs={self.target_session_attrs}"

    # -- connecting ------------------------------------------------------------------------------
    @property
    def pooler_check(self) -> bool:
        """Whether connects refuse transaction/statement pooling (the ``pooler_check`` extra, default true)."""
        value = self.connection.extra_dejson.get("pooler_check", True)
        if not isinstance(value, bool):
            raise ValueError(f"connection {self.get_conn_id()!r} extra pooler_check={value!r}: expected true or false")
        return value

    def _open_probe_peer(self, params: Mapping[str, Any], conn: Any) -> Any:
        """A second autocommit psycopg 3 connection to the host:port ``conn`` reached (for the pooler probe)."""
        import psycopg

        peer = {**params, "host": conn.info.host, "port": str(conn.info.port), "target_session_attrs": "any"}
        peer.pop("hostaddr", None)
        return psycopg.connect(**peer, autocommit=True, prepare_threshold=None)

    def _connect_once(self) -> Any:
        params = self.conn_params()
        if self.driver == "psycopg":
            import psycopg

            conn = psycopg.connect(**params)
        else:
            import psycopg2

            conn = psycopg2.connect(**params)
        try:
            if self.pooler_check:
                check_session_pooling(conn, lambda: self._open_probe_peer(params, conn), conn_id=self.get_conn_id())
            self.apply_session_settings(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        return conn

    def get_conn(self) -> Any:
        """Connect to the first host that satisfies ``target_session_attrs``, retrying with backoff.

        Retries use exponential backoff with full jitter until ``connect_deadline``; errors that no retry
        can fix (wrong password, unknown role or database) fail at once.
        """
        deadline = time.monotonic() + self.connect_deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                self.conn = self._connect_once()
            except Exception as exc:
                if not is_connection_error(exc) or is_fatal_connect_error(exc):
                    self.log.error("Connect to %s failed (%s); not retrying", self.describe(), type(exc).__name__)
                    refusal = startup_refusal_error(self.get_conn_id(), self.describe(), exc)
                    if refusal is not None:
                        raise refusal from exc
                    raise
                delay = backoff_delay(attempt, base=0.25, cap=self.connect_backoff_max)
                left = deadline - time.monotonic()
                if left <= 0:
                    self.log.error(
                        "Connect to %s failed after %d attempts (%s); deadline %.0fs reached",
                        self.describe(), attempt, type(exc).__name__, self.connect_deadline,
                    )
                    raise
                self.log.warning(
                    "Connect attempt %d to %s failed (%s: %s); retrying in %.2fs",
                    attempt, self.describe(), type(exc).__name__, first_line(exc), min(delay, left),
                )
                time.sleep(min(delay, left))
                continue
            if attempt > 1:
                self.log.info("Connected to %s after %d attempts", self.describe(), attempt)
            return self.conn

    def cancel(self) -> bool:
        """Cancel the statement running on the hook's current connection (a libpq cancel request).

        Safe to call from another thread or a signal handler (an operator's ``on_kill``): a query that
        waits for a lock or runs long stops on the server, instead of outliving the killed task. Returns
        whether a cancel request was sent."""
        conn = getattr(self, "conn", None)
        if conn is None or conn.closed:
            return False
        try:
            if hasattr(conn, "cancel_safe"):  # psycopg 3.2+: does not block the event loop or a signal handler
                conn.cancel_safe(timeout=5.0)
            else:
                conn.cancel()
        except Exception as exc:  # noqa: BLE001 - a broken connection has nothing left to cancel
            self.log.info("Nothing to cancel on %s: %s", self.describe(), first_line(exc))
            return False
        self.log.info("Sent a cancel request for the statement running on %s", self.describe())
        return True

    @contextlib.contextmanager
    def connection_scope(self) -> Iterator[Any]:
        """A fresh connection that is always closed on exit."""
        conn = self.get_conn()
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def run_with_reconnect(
        self,
        work: Callable[[Any], T],
        *,
        max_attempts: int = 5,
        deadline: float | None = None,
        description: str = "unit of work",
    ) -> T:
        """Run ``work(conn)`` in a transaction; on a connection-level failure, retry on a fresh connection.

        ``work`` must be idempotent as a whole (it is re-run from the start). It is committed when it
        returns. Errors in the user's SQL (syntax, constraint, data) are raised at once.
        """
        stop_at = time.monotonic() + (self.connect_deadline if deadline is None else deadline)
        attempt = 0
        while True:
            attempt += 1
            conn = None
            try:
                conn = self.get_conn()
                result = work(conn)
                conn.commit()
                return result
            except Exception as exc:
                if not is_connection_error(exc) or attempt >= max_attempts or time.monotonic() >= stop_at:
                    raise
                self.log.warning(
                    "%s failed on a connection-level error (%s, sqlstate %s, attempt %d/%d); retrying on a "
                    "fresh connection", description, type(exc).__name__, sqlstate_of(exc), attempt, max_attempts,
                )
                time.sleep(backoff_delay(attempt, base=0.5, cap=self.connect_backoff_max))
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Database", "host": "Hosts (h1:5432,h2:5433)"},
            "placeholders": {
                "host": "pg-node-1:5432,pg-node-2:5432",
                "extra": '{"target_session_attrs": "read-write", "connect_timeout": 5, "connect_deadline": 120, '
                '"connect_backoff_max": 2}',
            },
        }

