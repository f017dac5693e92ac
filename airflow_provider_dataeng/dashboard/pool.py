"""Warehouse connections kept between the dashboard's requests (a page polls every few seconds).

A connection is opened by :func:`airflow_provider_dataeng.connections.connect` (failover-aware hook,
``target_session_attrs`` from the Airflow connection), used by one request at a time, and put back after a
rollback. It is closed instead when the request failed, when it is older than ``max_age`` seconds (so a
changed Airflow connection or a failover is picked up within that time), when the server ended it (checked
with one round trip before reuse), or when more than ``max_idle`` are idle. Opening a connection costs about as much as the whole overview query; reusing one saves that.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg

MAX_AGE_SECONDS = 60.0
MAX_IDLE = 4


class WarehousePool:
    def __init__(self, max_age: float = MAX_AGE_SECONDS, max_idle: int = MAX_IDLE) -> None:
        self.max_age = max_age
        self.max_idle = max_idle
        self._idle: dict[str, list[tuple[float, Any]]] = {}
        self._lock = threading.Lock()
        self.opened = 0  # connections opened so far (for tests)

    def _take(self, conn_id: str) -> tuple[float, Any] | None:
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(conn_id)
                if not idle:
                    return None
                born, conn = idle.pop()
            if now - born <= self.max_age and not conn.closed and (
                    conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE) and _alive(conn):
                return born, conn
            _close(conn)

    def _open(self, conn_id: str) -> tuple[float, Any]:
        from airflow_provider_dataeng.connections import connect

        conn = connect(conn_id, role="warehouse", application_name="dataeng-dashboard").get_conn()
        conn.autocommit = False
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot for all reads
        self.opened += 1
        return time.monotonic(), conn

    @contextlib.contextmanager
    def connection(self, conn_id: str) -> Iterator[Any]:
        """A read-only REPEATABLE READ connection to ``conn_id``; its transaction is rolled back after use."""
        born, conn = self._take(conn_id) or self._open(conn_id)
        ok = False
        try:
            yield conn
            ok = True
        finally:
            try:
                conn.rollback()
            except Exception:
                ok = False
            if ok:
                with self._lock:
                    idle = self._idle.setdefault(conn_id, [])
                    if len(idle) < self.max_idle:
                        idle.append((born, conn))
                        conn = None
            if conn is not None:
                _close(conn)

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for _born, conn in conns:
                _close(conn)


def _alive(conn: Any) -> bool:
    """One round trip: a connection the server ended (restart, failover, idle timeout) is not handed out."""
    try:
        conn.execute("select 1")
        conn.rollback()
        return True
    except Exception:
        return False


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


POOL = WarehousePool()
