"""Connection poolers (PgBouncer) between the hook and PostgreSQL: what the provider accepts and refuses.

The provider needs a real session: the publish lock and the incremental_id lock are session advisory
locks, incremental_id keeps a temp table across transactions, and the keepalives and ``TimeZone`` are
session settings. Behind PgBouncer in ``transaction`` (or ``statement``) pooling mode each statement may
run on another server connection: two publishers both get the lock, an unlock reaches another backend
and the lock leaks on a pooled server connection. Session pooling (one server connection per client for
the client's lifetime) keeps all of it. So:

- a refused startup parameter (PgBouncer refuses the libpq ``options`` parameter that carries the session
  settings) fails at once with the fix (``"session_settings": "set"``), instead of a 2-minute retry;
- :func:`check_session_pooling` refuses a connection that goes through transaction/statement pooling.
"""

from __future__ import annotations

import contextlib
import re
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_dataeng.values import first_line

STARTUP_REFUSAL_MARKER = "unsupported startup parameter"
_REFUSED_PARAMETER = re.compile(r"unsupported startup parameter:?\s*([A-Za-z_][A-Za-z0-9_.]*)", re.IGNORECASE)
PROBE_SQL = "select pg_backend_pid()"
PROBE_ROUNDS = 10
PEER_WAIT_S = 2.0  # a session pool with no free server makes the second client wait: that is not sharing

DIRECT = "direct"
SESSION_POOLING = "session pooling"
TRANSACTION_POOLING = "transaction/statement pooling"

_verdicts: dict[tuple[str, int, str, str], str] = {}
_verdicts_lock = threading.Lock()


class PoolerError(RuntimeError):
    """A proxy between the provider and PostgreSQL that no retry can fix (not a connection error)."""


class StartupParameterRefusedError(PoolerError):
    """The server or a proxy refused a startup parameter (PgBouncer: ``options``)."""


class TransactionPoolingError(PoolerError):
    """The connection goes through transaction or statement pooling."""


def refused_startup_parameter(exc: BaseException) -> str | None:
    """The startup parameter a proxy refused in ``exc`` (``options``), ``""`` if unnamed, else None."""
    text = str(exc)
    if STARTUP_REFUSAL_MARKER not in text.lower():
        return None
    match = _REFUSED_PARAMETER.search(text)
    return match.group(1) if match else ""


def startup_refusal_error(conn_id: str, where: str, exc: BaseException) -> StartupParameterRefusedError | None:
    """The clear error for a refused startup parameter, or None when ``exc`` is something else."""
    parameter = refused_startup_parameter(exc)
    if parameter is None:
        return None
    if parameter in ("options", ""):
        fix = ('set "session_settings": "set" in the connection\'s extra (the session settings are then applied '
               "with set_config after connecting; see docs/failover.md, PgBouncer)")
    else:
        fix = (f"remove the {parameter!r} extra from the connection, or list it in PgBouncer's "
               "ignore_startup_parameters")
    return StartupParameterRefusedError(
        f"connection {conn_id!r} ({where}): the server or a proxy in front of it (PgBouncer) refused the startup "
        f"parameter {parameter or 'options'!r}: {fix}. Not retrying. ({first_line(exc)})"
    )


def clear_verdicts() -> None:
    """Forget every cached verdict (tests reuse ports across servers)."""
    with _verdicts_lock:
        _verdicts.clear()


def cached_verdict(key: tuple[str, int, str, str]) -> str | None:
    """The verdict already found in this process for ``(host, port, dbname, user)``, if any."""
    with _verdicts_lock:
        return _verdicts.get(key)


def verdict_key(conn: Any) -> tuple[str, int, str, str]:
    """``(host, port, dbname, user)`` the connection reached (psycopg 3 or psycopg2)."""
    info = conn.info
    return (str(info.host), int(info.port), str(info.dbname), str(info.user))


@contextlib.contextmanager
def _autocommit(conn: Any) -> Iterator[None]:
    """Autocommit for the block on an idle connection, restored afterwards (isolation etc. untouched)."""
    previous = bool(conn.autocommit)
    if previous:
        yield
        return
    conn.autocommit = True
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # a broken connection: the probe's error is the one to report
            conn.autocommit = False
        raise
    conn.autocommit = False


def _backend_pid(conn: Any) -> int:
    """``pg_backend_pid()`` in its own autocommit statement, never server-side prepared."""
    cur = conn.cursor()
    try:
        if hasattr(conn, "pgconn"):  # psycopg 3: no auto-prepare (a prepared name would leak on a pooled server)
            cur.execute(PROBE_SQL, prepare=False)
        else:
            cur.execute(PROBE_SQL)
        return int(cur.fetchone()[0])
    finally:
        cur.close()


def _peer_pid(peer: Any, timeout: float) -> int | None:
    """``pg_backend_pid()`` on a psycopg 3 connection, None if no answer within ``timeout`` (the client
    waits in a full pool). libpq-level, so the wait has a deadline."""
    pgconn = peer.pgconn
    deadline = time.monotonic() + timeout
    pgconn.send_query(PROBE_SQL.encode())  # raises on failure
    while pgconn.flush() == 1:
        if not select.select([], [pgconn.socket], [], max(deadline - time.monotonic(), 0))[1]:
            return None
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        if not select.select([pgconn.socket], [], [], max(deadline - time.monotonic(), 0))[0]:
            return None
    result = pgconn.get_result()
    while pgconn.get_result() is not None:
        pass
    if result is None or result.ntuples != 1:
        return None
    value = result.get_value(0, 0)
    return int(value.decode()) if value is not None else None


def probe(conn: Any, open_peer: Callable[[], Any]) -> str:
    """The verdict for an idle connection: :data:`DIRECT`, :data:`SESSION_POOLING` or
    :data:`TRANSACTION_POOLING`.

    Direct when ``pg_backend_pid()`` is the pid the server announced at connect (one round trip). Else a
    proxy announced its own: a second connection (``open_peer``, psycopg 3) asks its backend pid up to
    :data:`PROBE_ROUNDS` times, and so does ``conn``, all in autocommit; if the second one ever reaches the
    first one's backend, or the first one's backend changes, the pooler shares server connections between
    clients (transaction/statement pooling). Session pooling never does. Leaves no transaction open and
    ``conn``'s autocommit as it was.
    """
    with _autocommit(conn):
        first = _backend_pid(conn)
        if first == conn.info.backend_pid:
            return DIRECT
        peer = open_peer()
        try:
            peer_answers = True
            for _ in range(PROBE_ROUNDS):
                if peer_answers:
                    pid = _peer_pid(peer, PEER_WAIT_S)
                    if pid == first:
                        return TRANSACTION_POOLING
                    peer_answers = pid is not None
                if _backend_pid(conn) != first:
                    return TRANSACTION_POOLING
        finally:
            with contextlib.suppress(Exception):
                peer.close()
    return SESSION_POOLING


def check_session_pooling(conn: Any, open_peer: Callable[[], Any], *, conn_id: str) -> str:
    """Probe ``conn`` once per process per ``(host, port, dbname, user)``; raise
    :class:`TransactionPoolingError` (naming the connection and host:port) under transaction/statement
    pooling. Returns the verdict."""
    key = verdict_key(conn)
    verdict = cached_verdict(key)
    if verdict is None:
        verdict = probe(conn, open_peer)
        with _verdicts_lock:
            _verdicts[key] = verdict
    if verdict == TRANSACTION_POOLING:
        host, port, dbname, user = key
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise TransactionPoolingError(
            f"connection {conn_id!r} reaches {where} (database {dbname!r}, user {user!r}) through a pooler in "
            "transaction or statement pooling mode (PgBouncer pool_mode=transaction/statement): it hands each "
            "transaction to any server connection, which breaks the publish lock (session advisory locks), "
            "temp tables and the session settings. Use session pooling (pool_mode=session, with the "
            '"session_settings": "set" extra) or connect to PostgreSQL directly. Not retrying.'
        )
    return verdict
