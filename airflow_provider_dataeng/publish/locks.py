"""Locks of a publish: the per-target session advisory lock, and the swap transaction's lock_timeout retries."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.errors import PublishError, SwapLockTimeout
from airflow_provider_dataeng.publish.table_ref import TableRef
from airflow_provider_dataeng.values import first_line

log = logging.getLogger(__name__)

RETRYABLE_SQLSTATES = ("55P03", "40P01")  # lock_not_available (lock_timeout), deadlock_detected


def lock_key(*parts: Any) -> int:
    """A signed 64-bit advisory lock key from a stable hash of ``parts``."""
    text = "dataeng.publish:" + "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def advisory_lock(conn: psycopg.Connection, key: int, what: str, wait: float | None = None) -> None:
    """Session advisory lock for the target: waits (logging who holds it) while another publish holds it,
    at most ``wait`` seconds (None: no deadline), then raises PublishError naming the holder."""
    waited_since = time.monotonic()
    next_log = 0.0
    while not catalog.scalar(conn, "select pg_try_advisory_lock(%s)", [key]):
        elapsed = time.monotonic() - waited_since
        if wait is not None and elapsed >= wait:
            raise PublishError(f"could not get the publish lock of {what} within {wait:g}s: held by "
                               f"{advisory_holder(conn, key)}. Nothing was changed; retry when it is done.")
        if elapsed >= next_log:
            log.info("Waiting for the publish lock of %s (held by %s) for %.0fs", what,
                     advisory_holder(conn, key), elapsed)
            next_log = elapsed + 30
        time.sleep(0.2)


def advisory_holder(conn: psycopg.Connection, key: int) -> str:
    """Who holds the advisory lock ``key``: backend pid, application, client and since when."""
    found = catalog.rows(conn, """
        select l.pid, a.application_name, a.client_addr::text, a.backend_start
        from pg_locks l left join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.objsubid = 1
          and ((l.classid::bigint << 32) | l.objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)
        limit 1""", [key])
    if not found:
        return "no session any more"
    pid, app, client, since = found[0]
    return f"backend {pid} ({app or 'no application_name'}, client {client or 'local'}, connected {since})"


def release_advisory_lock(conn: psycopg.Connection, unlock_sql: str, params: Sequence[Any], lock_name: str) -> bool:
    """Run ``unlock_sql`` (``select pg_advisory_unlock(...), pg_backend_pid()``) and check what it returns.

    False means this session did not hold the lock: it was taken on another backend (a pooler in transaction
    mode hands statements to any server connection) and may still be held there. Logged as an ERROR naming
    the lock and the backend; never raises (callers run it in ``finally``)."""
    try:
        found = catalog.rows(conn, unlock_sql, params)
    except psycopg.Error as exc:  # the session is gone, and its session locks with it
        log.warning("Could not release the %s (%s); a closed session releases it", lock_name, first_line(exc))
        return False
    released, backend = found[0] if found else (False, None)
    if not released:
        log.error("The %s was not held by this session (backend %s): pg_advisory_unlock returned false, so it was "
                  "taken on another backend and may still be held there (a pooler in transaction/statement mode "
                  "between the worker and PostgreSQL?). Check pg_locks for advisory locks.", lock_name, backend)
    return bool(released)


def advisory_unlock(conn: psycopg.Connection, key: int, what: str = "") -> bool:
    """Release the publish lock ``key`` (rolling back an open transaction first); whether this session held
    it (see :func:`release_advisory_lock`). Never raises."""
    if conn.closed:
        return False
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
    except psycopg.Error as exc:
        log.warning("Could not roll back before releasing the publish lock of %s: %s", what or key, first_line(exc))
        return False
    return release_advisory_lock(conn, "select pg_advisory_unlock(%s), pg_backend_pid()", [key],
                                 f"publish lock of {what or key} (key {key})")


def set_lock_timeout(conn: psycopg.Connection, seconds: float) -> None:
    """``SET LOCAL lock_timeout`` for the current transaction."""
    catalog.execute(conn, "select set_config('lock_timeout', %s, true)", [f"{int(seconds * 1000)}ms"])


def with_lock_retries(conn: psycopg.Connection, what: str, watched: Sequence[TableRef], attempt_fn: Callable[[], Any],
                      *, lock_timeout: float, attempts: int, backoff: float, action: str = "swap",
                      unchanged: str = "Live data is unchanged") -> tuple[Any, float]:
    """Run one transaction, retrying on lock timeout or deadlock with exponential backoff (with jitter).

    Returns the attempt's result and how long the successful attempt took. ``action`` names the transaction
    in messages (the swap, or an extract's DDL), ``unchanged`` says what a final failure left as it was.
    """
    for attempt in range(1, attempts + 1):
        try:
            started = time.monotonic()
            out = attempt_fn()
            return out, time.monotonic() - started
        except psycopg.Error as exc:
            if exc.sqlstate not in RETRYABLE_SQLSTATES:
                raise
            blockers = describe_lock_holders(conn, watched)
            if attempt >= attempts:
                raise SwapLockTimeout(
                    f"{action} of {what} failed: could not get its locks within lock_timeout {lock_timeout:g}s in "
                    f"{attempts} attempts (last error: {exc.sqlstate} {first_line(exc)}). Sessions holding locks: "
                    f"{blockers or 'none found'}. {unchanged}."
                ) from exc
            delay = min(10.0, backoff * 2 ** min(attempt - 1, 30)) * random.uniform(0.5, 1.0)
            log.warning("%s of %s: lock not available within %gs (attempt %d/%d, %s); holders: %s; "
                        "retrying in %.2fs", action[:1].upper() + action[1:], what, lock_timeout, attempt, attempts, exc.sqlstate,
                        blockers or "none found", delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def describe_lock_holders(conn: psycopg.Connection, refs: Sequence[TableRef]) -> str:
    """The sessions (other than ours) holding locks on ``refs``, for an error message."""
    try:
        found = catalog.rows(conn, """
            select distinct l.pid, l.mode, a.state, a.usename,
                   extract(epoch from now() - a.xact_start)::int, left(a.query, 80)
            from pg_locks l join pg_stat_activity a on a.pid = l.pid
            join pg_class c on c.oid = l.relation join pg_namespace n on n.oid = c.relnamespace
            where l.granted and l.pid <> pg_backend_pid()
              and (n.nspname, c.relname) in (select * from unnest(%s::text[], %s::text[]))
            order by 1 limit 5""", [[r.schema for r in refs], [r.table for r in refs]])
    except psycopg.Error:
        return ""
    return "; ".join(f"pid {p} ({m}, {s}, user {u}, transaction open {age}s: {q!r})" for p, m, s, u, age, q in found)
