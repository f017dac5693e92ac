"""Behind a real PgBouncer: transaction pooling is refused at connect, the default ``options`` startup
parameter fails fast with its fix, session pooling runs extracts and publishes with a working lock."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from airflow_provider_dataeng.connections import connect
from airflow_provider_dataeng.hooks import pooler
from airflow_provider_dataeng.hooks.pooler import StartupParameterRefusedError, TransactionPoolingError
from airflow_provider_dataeng.publish.locks import advisory_lock, advisory_unlock, lock_key
from devstack.airflow_env import register_connection, unregister_connection
from devstack.pg import PgCluster
from tests.fixtures.pgbouncer import PGBOUNCER, Bouncer

pytestmark = pytest.mark.skipif(PGBOUNCER is None, reason="the pgbouncer binary is not installed "
                                "(scripts/system_deps.sh installs the Debian package pgbouncer)")

LOWER = datetime(2026, 1, 1, tzinfo=timezone.utc)
UPPER = LOWER + timedelta(days=1)
ROWS = 1000
FAST = 5.0  # seconds: a refusal must come at once, not after connect_deadline
SELECT = "select g as id, g * 2 as v from generate_series(1, 1000) g"


@dataclass
class Stack:
    warehouse: PgCluster
    source: PgCluster
    wh_db: str
    src_db: str
    session: Bouncer
    transaction: Bouncer
    statement: Bouncer

    def register(self, bouncer: Bouncer, db: str, **extra: object) -> str:
        conn_id = f"pgb_{uuid.uuid4().hex[:8]}"
        register_connection(conn_id, host="127.0.0.1", port=bouncer.port, schema=db,
                            extra={"connect_deadline": 60, **extra})
        return conn_id

    def warehouse_rows(self, query: str) -> list[tuple]:
        with psycopg.connect(self.warehouse.dsn(self.wh_db), autocommit=True) as conn:
            return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def stack(pg_cluster: PgCluster, source_cluster: PgCluster) -> Iterator[Stack]:
    """A warehouse and a source database on the session clusters, one PgBouncer per pool mode in front
    (session, transaction, statement)."""
    wh_db, src_db = f"pgbwh_{uuid.uuid4().hex[:8]}", f"pgbsrc_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(wh_db)
    source_cluster.create_database(src_db)
    source_cluster.psql("create table orders (id bigint primary key, amount numeric(12,2) not null, "
                        "created_at timestamptz not null, updated_at timestamptz not null)", src_db)
    source_cluster.psql(f"insert into orders select g, g / 100.0, timestamptz '2025-12-31' + g * interval '1 minute', "
                        f"timestamptz '2026-01-01' + g * interval '1 second' from generate_series(1, {ROWS}) g", src_db)
    databases = {wh_db: (pg_cluster.host, pg_cluster.port), src_db: (source_cluster.host, source_cluster.port)}
    bouncers: list[Bouncer] = []
    try:
        for mode in ("session", "transaction", "statement"):
            bouncers.append(Bouncer(mode, databases))
            bouncers[-1].start()
        pooler.clear_verdicts()  # a bouncer port may have served a direct cluster earlier in this process
        yield Stack(pg_cluster, source_cluster, wh_db, src_db, *bouncers)
    finally:
        for bouncer in bouncers:
            bouncer.stop()
        pooler.clear_verdicts()
        pg_cluster.drop_database(wh_db)
        source_cluster.drop_database(src_db)


def _extract(src: str, wh: str, target: str, mode: str = "full_snapshot") -> object:
    from airflow_provider_dataeng.extract.job import ExtractJob
    from airflow_provider_dataeng.extract.spec import ExtractSpec

    spec = ExtractSpec(source_conn_id=src, target_conn_id=wh, source_table="orders", target_table=target, mode=mode)
    return ExtractJob(spec).run(LOWER, UPPER, pipeline="pgb", task_id="extract", run_id="r1")


def _publish(wh: str, target: str, **kw: object) -> object:
    from airflow_provider_dataeng.publish.engine import PublishEngine

    engine = PublishEngine(connect(wh), pipeline="pgb", task_id="publish", run_id="r1", **kw)
    return engine.publish_table(target, select_sql=SELECT)


@pytest.mark.parametrize("mode", ["transaction", "statement"])
def test_transaction_pooling_is_refused_at_connect_and_nothing_is_written(stack: Stack, mode: str):
    bouncer: Bouncer = getattr(stack, mode)
    wh = stack.register(bouncer, stack.wh_db, session_settings="set")
    src = stack.register(stack.session, stack.src_db, session_settings="set")
    started = time.monotonic()
    with pytest.raises(TransactionPoolingError) as info:
        connect(wh).get_conn()
    assert time.monotonic() - started < FAST
    message = str(info.value)
    assert repr(wh) in message and f"127.0.0.1:{bouncer.port}" in message
    assert "publish lock" in message and "session pooling" in message
    with pytest.raises(TransactionPoolingError):
        _publish(wh, "mart.refused")
    with pytest.raises(TransactionPoolingError):
        _extract(src, wh, "raw.refused")
    tables = stack.warehouse_rows("select relname from pg_class where relname in ('refused', 'refused__staging')")
    assert tables == []
    assert stack.warehouse_rows("select count(*) from pg_locks where locktype = 'advisory'") == [(0,)]
    unregister_connection(wh)
    unregister_connection(src)


def test_default_options_parameter_fails_fast_with_the_fix(stack: Stack):
    wh = stack.register(stack.session, stack.wh_db)  # no session_settings: the libpq options parameter is sent
    started = time.monotonic()
    with pytest.raises(StartupParameterRefusedError) as info:
        connect(wh).get_conn()
    assert time.monotonic() - started < FAST, "a refused startup parameter must not be retried until the deadline"
    message = str(info.value)
    assert repr(wh) in message and '"session_settings": "set"' in message and "options" in message
    unregister_connection(wh)


def test_session_pooling_extracts_publishes_and_serializes_the_lock(stack: Stack, caplog):
    wh = stack.register(stack.session, stack.wh_db, session_settings="set")
    src = stack.register(stack.session, stack.src_db, session_settings="set")
    conn = connect(wh).get_conn()
    try:
        assert conn.info.backend_pid != conn.execute("select pg_backend_pid()").fetchone()[0]  # really via the pooler
    finally:
        conn.close()
    assert pooler.cached_verdict(("127.0.0.1", stack.session.port, stack.wh_db, "postgres")) == pooler.SESSION_POOLING

    first, rerun = _extract(src, wh, "raw.orders"), _extract(src, wh, "raw.orders")
    assert (first.status, first.rows) == ("published", ROWS), first
    assert (rerun.status, rerun.rows) == ("published", ROWS), rerun
    assert stack.warehouse_rows("select count(*) from raw.orders") == [(ROWS,)]

    with caplog.at_level(logging.ERROR):
        by_id = [_extract(src, wh, "raw.orders_id", mode="incremental_id") for _ in range(2)]
    assert [r.rows for r in by_id] == [ROWS, ROWS], by_id  # a rerun replaces its own interval's partition
    assert stack.warehouse_rows("select count(*), count(distinct id) from raw.orders_id") == [(ROWS, ROWS)]
    assert "was not held by this session" not in caplog.text  # the id lock was released where it was taken

    assert _publish(wh, "mart.t").status == "published"
    assert stack.warehouse_rows("select count(*), sum(v) from mart.t") == [(1000, 1001000)]

    events: list[tuple[float, str]] = []
    lock = threading.Lock()

    def on_step(step: str, _conn: object) -> None:
        if step in ("locked", "committed"):
            with lock:
                events.append((time.monotonic(), f"{threading.current_thread().name} {step}"))
        if step == "locked":
            time.sleep(1.0)

    results: dict[str, object] = {}

    def worker() -> None:
        try:
            results[threading.current_thread().name] = _publish(wh, "mart.c", on_step=on_step, lock_wait=30)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[threading.current_thread().name] = exc

    threads = [threading.Thread(target=worker, name=name) for name in ("P1", "P2")]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join(60)
    assert all(getattr(r, "status", None) == "published" for r in results.values()), results
    order = [name for _, name in sorted(events)]
    assert order in (["P1 locked", "P1 committed", "P2 locked", "P2 committed"],
                     ["P2 locked", "P2 committed", "P1 locked", "P1 committed"]), order
    assert stack.warehouse_rows("select count(*) from pg_locks where locktype = 'advisory'") == [(0,)]
    unregister_connection(wh)
    unregister_connection(src)


def test_an_unlock_that_reaches_another_backend_is_reported(stack: Stack, caplog):
    """What the refusal prevents, with the check turned off: under transaction pooling the unlock runs on
    another server connection; it is logged as an ERROR naming the lock and that backend, not raised."""
    wh = stack.register(stack.transaction, stack.wh_db, session_settings="set", pooler_check=False)
    key = lock_key("pgbouncer", "leak")
    conn = connect(wh).get_conn()
    other = psycopg.connect(f"postgresql://postgres@127.0.0.1:{stack.transaction.port}/{stack.wh_db}",
                            prepare_threshold=None)
    try:
        conn.autocommit = True
        advisory_lock(conn, key, "mart.leak", wait=5)  # autocommit: its server connection goes back to the pool
        (locked_on,) = stack.warehouse_rows("select pid from pg_locks where locktype = 'advisory' and granted")[0]
        pinned = other.execute("select pg_backend_pid()").fetchone()[0]  # an open transaction pins that server
        assert pinned == locked_on
        with caplog.at_level(logging.ERROR):
            assert advisory_unlock(conn, key, "mart.leak") is False
        assert "publish lock of mart.leak" in caplog.text and "was not held by this session" in caplog.text
        assert f"backend {locked_on}" not in caplog.text  # the unlock ran on another backend, which is named
        leaked = stack.warehouse_rows("select pid from pg_locks where locktype = 'advisory' and granted")
        assert leaked == [(locked_on,)]
    finally:
        other.close()
        conn.close()
        stack.warehouse_rows(f"select pg_terminate_backend({locked_on})" if "locked_on" in locals() else "select 1")
        unregister_connection(wh)
