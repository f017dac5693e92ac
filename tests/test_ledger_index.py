"""The ledger's pipeline index on real PostgreSQL: the dashboard's and the gap check's queries use it on a
large ledger (EXPLAIN of the very queries they run), and ensure_ledger adds it to an existing ledger
(concurrently, once, whoever races) while its fast path takes no lock at all."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from airflow_provider_dataeng.dashboard import ledger_queries
from airflow_provider_dataeng.gaps.catalog import read_ledger
from airflow_provider_dataeng.publish.ledger import (
    LEDGER_DDL,
    LEDGER_MIGRATION,
    PIPELINE_INDEX,
    ensure_ledger,
)

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
PIPELINES, TARGETS, DAYS = 100, 4, 500  # 200,000 ledger rows


class ExplainingCursor(psycopg.Cursor):
    """Runs ``EXPLAIN (FORMAT JSON)`` of every ledger query (same parameters) before running it."""

    plans: list[tuple[str, dict[str, Any]]] = []

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        text = query.as_string(self.connection) if hasattr(query, "as_string") else str(query)
        if "load_ledger" in text and not text.lstrip().lower().startswith(("create", "alter", "insert")):
            super().execute(b"explain (format json) " + (text.encode() if isinstance(text, str) else text), params)
            self.plans.append((text, self.fetchone()[0][0]["Plan"]))
        return super().execute(query, params, **kw)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


def _seq_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The sequential scans of the ledger table in the plan."""
    return [n for n in _nodes(plan) if n.get("Relation Name") == "load_ledger" and n["Node Type"] == "Seq Scan"]


def _indexes(plan: dict[str, Any]) -> set[str]:
    """The ledger indexes the plan reads (index, index-only and bitmap index scans)."""
    return {n["Index Name"] for n in _nodes(plan) if n.get("Index Name", "").startswith("load_ledger")}


@pytest.fixture
def big_ledger(pg_cluster: Any, pg_db: str) -> str:
    dsn = pg_cluster.dsn(pg_db)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_ledger(conn)
        conn.execute(
            """insert into dataeng.load_ledger (pipeline, task_id, target_schema, target_table, partition_column,
                   partition_start, partition_end, run_id, mode, rows, status, started_at, finished_at)
               select 'pipe_' || p, 'extract', 'raw', 't_' || p || '_' || t, '_interval_start',
                      %(t0)s + d * interval '1 day', %(t0)s + (d + 1) * interval '1 day', 'scheduled__' || d,
                      'partition_swap', 10, case when d %% 50 = 7 then 'failed' else 'published' end,
                      now(), now()
               from generate_series(1, %(p)s) p, generate_series(1, %(t)s) t, generate_series(0, %(d)s - 1) d""",
            {"t0": T0, "p": PIPELINES, "t": TARGETS, "d": DAYS})
        conn.execute("analyze dataeng.load_ledger")
        assert conn.execute("select count(*) from dataeng.load_ledger").fetchone()[0] == PIPELINES * TARGETS * DAYS
    return dsn


def test_dashboard_and_gap_queries_use_the_pipeline_index(big_ledger: str) -> None:
    ExplainingCursor.plans = []
    with psycopg.connect(big_ledger, autocommit=True, cursor_factory=ExplainingCursor) as conn:
        targets = ledger_queries.list_targets(conn, ["pipe_17"])
        assert [t.table for t in targets] == [f"t_17_{t}" for t in range(1, TARGETS + 1)]
        loads = ledger_queries.latest_loads(conn, targets, T0 + timedelta(days=DAYS - 30))
        assert {len(v) for v in loads.values()} == {30}
        assert len(ledger_queries.recent_checks(conn, targets[0])) == 10
        assert ledger_queries.newest_published(conn, targets[0])[0] == T0 + timedelta(days=DAYS)
        rows = read_ledger(conn, "raw", "t_17_1", T0 + timedelta(days=100), T0 + timedelta(days=110), pipeline="pipe_17")
        assert len(rows) == 10
    plans = ExplainingCursor.plans
    assert len(plans) == 5, [q for q, _ in plans]
    for query, plan in plans:
        assert _indexes(plan) and not _seq_scans(plan), (query, json.dumps(plan, indent=1))
    # The overview's targets of some pipelines and their newest load per interval: the pipeline index.
    for query, plan in plans[:2]:
        assert PIPELINE_INDEX in _indexes(plan), (query, json.dumps(plan, indent=1))


def _old_ledger(dsn: str) -> None:
    """A ledger as an older version created it: no pipeline index, some rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
        conn.execute(LEDGER_MIGRATION)
        conn.execute("""insert into dataeng.load_ledger (pipeline, target_schema, target_table, mode, status,
                        started_at) select 'p' || (g % 7), 'raw', 't', 'table_swap', 'published', now()
                        from generate_series(1, 5000) g""")
        assert conn.execute("select to_regclass('dataeng.load_ledger_pipeline')").fetchone()[0] is None


def _index_state(conn: psycopg.Connection) -> list[tuple[str, bool]]:
    return conn.execute("""select c.relname::text, i.indisvalid from pg_index i join pg_class c on c.oid = i.indexrelid
                           where i.indrelid = 'dataeng.load_ledger'::regclass and c.relname = %s""",
                        [PIPELINE_INDEX]).fetchall()


def test_existing_ledger_gets_the_index_once_under_concurrent_publishes(pg_cluster: Any, pg_db: str) -> None:
    dsn = pg_cluster.dsn(pg_db)
    _old_ledger(dsn)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def publish_like() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                barrier.wait()
                ensure_ledger(conn)
                # and a ledger row right after, as a publish writes one
                conn.execute("""insert into dataeng.load_ledger (pipeline, target_schema, target_table, mode, status,
                                started_at) values ('px', 'raw', 't', 'table_swap', 'published', now())""")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish_like) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_ledger(conn)  # whoever lost the race to build it: it is there now (or built here)
        assert _index_state(conn) == [(PIPELINE_INDEX, True)]
        assert conn.execute("select count(*) from dataeng.load_ledger where pipeline = 'px'").fetchone()[0] == 6


def test_index_waiting_on_a_long_transaction_gives_up_without_failing(pg_cluster: Any, pg_db: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent build waits for older transactions: past the timeout the publish goes on without the
    index (an invalid leftover is dropped by the next call), and the next call builds it."""
    from airflow_provider_dataeng.publish import ledger

    monkeypatch.setattr(ledger, "INDEX_LOCK_TIMEOUT", "300ms")
    dsn = pg_cluster.dsn(pg_db)
    _old_ledger(dsn)
    with psycopg.connect(dsn) as blocker:  # an open transaction that wrote a ledger row
        blocker.execute("""insert into dataeng.load_ledger (pipeline, target_schema, target_table, mode, status,
                           started_at) values ('slow', 'raw', 't', 'table_swap', 'published', now())""")
        with psycopg.connect(dsn, autocommit=True) as conn:
            ensure_ledger(conn)  # does not raise
            assert all(not valid for _, valid in _index_state(conn))  # none, or an invalid leftover
        blocker.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_ledger(conn)
        assert _index_state(conn) == [(PIPELINE_INDEX, True)]


def test_fast_path_takes_no_lock_on_the_ledger(pg_cluster: Any, pg_db: str) -> None:
    dsn = pg_cluster.dsn(pg_db)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_ledger(conn)
        assert _index_state(conn) == [(PIPELINE_INDEX, True)]
    with psycopg.connect(dsn) as conn:  # a transaction stays open: every lock it took is still held
        ensure_ledger(conn)
        locks = conn.execute("""select mode from pg_locks where pid = pg_backend_pid() and locktype in
                                ('relation', 'advisory') and relation is distinct from 'pg_locks'::regclass
                                and (relation is null or relation not in (select oid from pg_class
                                                                          where relnamespace = 'pg_catalog'::regnamespace))""").fetchall()
        assert locks == []
        conn.rollback()


def _buffers(plan: dict[str, Any]) -> int:
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


class BufferCountingCursor(psycopg.Cursor):
    """Adds up the shared buffers every ledger statement touches (``EXPLAIN (ANALYZE, BUFFERS)``)."""

    buffers = 0

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        text = query.as_string(self.connection) if hasattr(query, "as_string") else str(query)
        if "load_ledger" in text:
            super().execute("explain (analyze, buffers, format json) " + text, params)
            BufferCountingCursor.buffers += _buffers(self.fetchone()[0][0]["Plan"])
        return super().execute(query, params, **kw)


def test_dashboard_change_check_reads_a_few_pages_not_the_ledger(big_ledger: str) -> None:
    """The dashboard's per-request version check (is the cached ledger copy still current?) touches a handful of
    index pages, however long the ledger; a ``count(*)`` reads all of it."""
    from airflow_provider_dataeng.dashboard.loads_cache import LoadsCache

    cache = LoadsCache()
    with psycopg.connect(big_ledger, autocommit=True, cursor_factory=BufferCountingCursor) as conn:
        BufferCountingCursor.buffers = 0
        conn.cursor().execute("select coalesce(max(id), 0), count(*) from dataeng.load_ledger")  # the old check
        old = BufferCountingCursor.buffers
        first = cache.version(conn, "wh")
        BufferCountingCursor.buffers = 0
        again = cache.version(conn, "wh")
        new = BufferCountingCursor.buffers
    assert first == again == (PIPELINES * TARGETS * DAYS, 0)
    assert new <= 40 and old >= 25 * new, (old, new)
