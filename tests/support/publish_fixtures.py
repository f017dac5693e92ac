"""Fixtures and helpers for the publish engine tests (real PostgreSQL through the harness)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook
from airflow_provider_dataeng.publish import PublishEngine


@pytest.fixture(name="wh_hook")
def wh_hook_fixture(warehouse_conn_id: str) -> FailoverPostgresHook:
    return FailoverPostgresHook(postgres_conn_id=warehouse_conn_id, driver="psycopg")


@pytest.fixture(name="db")
def db_fixture(pg_cluster: Any, pg_db: str) -> Iterator[psycopg.Connection]:
    """An autocommit psycopg 3 connection to the test database (the 'other session')."""
    conn = psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(name="dsn")
def dsn_fixture(pg_cluster: Any, pg_db: str) -> str:
    return pg_cluster.dsn(pg_db)


def make_engine(hook: FailoverPostgresHook, **kw: Any) -> PublishEngine:
    kw.setdefault("retry_backoff", 0.05)
    kw.setdefault("pipeline", "test_pipeline")
    kw.setdefault("task_id", "publish")
    kw.setdefault("run_id", "manual__1")
    return PublishEngine(hook, **kw)


def q(conn: psycopg.Connection, query: Any, params: Any = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def one(conn: psycopg.Connection, query: Any, params: Any = None) -> Any:
    found = q(conn, query, params)
    return found[0][0] if found else None


def ledger(conn: psycopg.Connection) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("select * from dataeng.load_ledger order by id")
        return cur.fetchall()


class Terminator:
    """An ``on_step`` callback that kills the publishing backend (pg_terminate_backend) at one step."""

    def __init__(self, dsn: str, step: str) -> None:
        self.dsn = dsn
        self.step = step
        self.fired = False

    def __call__(self, step: str, conn: psycopg.Connection) -> None:
        if step != self.step or self.fired:
            return
        self.fired = True
        pid = conn.info.backend_pid
        with psycopg.connect(self.dsn, autocommit=True) as killer:
            killer.execute("select pg_terminate_backend(%s, 5000)", [pid])


class BackgroundReader(threading.Thread):
    """Loops ``query`` on its own connection, recording every result, error and the longest wait."""

    def __init__(self, dsn: str, query: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.query = query
        self.results: list[Any] = []
        self.errors: list[str] = []
        self.max_stall = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._halt.is_set():
                started = time.monotonic()
                try:
                    self.results.append(conn.execute(self.query).fetchone()[0])
                except psycopg.Error as exc:  # recorded: the test asserts there are none
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self.max_stall = max(self.max_stall, time.monotonic() - started)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
