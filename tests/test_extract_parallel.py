"""copy_sessions > 1: K block ranges of the source table read under ONE exported snapshot into the same staging
table through K warehouse sessions, on real PostgreSQL: exactly the snapshot's rows while the source is being
written, idempotent reruns, a killed session fails the whole load (published partition intact, no session left
running) and the retry is exact; the spec refuses what cannot be split."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import psycopg
import pytest
from pydantic import ValidationError

from airflow_provider_dataeng.extract import job as job_module
from airflow_provider_dataeng.extract.spec import ExtractSpec
from tests.fixtures.extract import BackendKiller, fingerprint, rows_of, run_extract

D1 = datetime(2024, 1, 1, tzinfo=timezone.utc)
ROWS = 120_000
TOTAL = ROWS * 100  # sum(amount): every writer transaction keeps it
PART = f"select id, amount, note from raw.accounts where _interval_start = '{D1.isoformat()}'"


@pytest.fixture
def accounts(source_cluster, source_db, monkeypatch):
    source_cluster.psql(
        f"""create table accounts (id bigint primary key, amount bigint not null, note text not null);
            insert into accounts select g, 100, md5(g::text) from generate_series(1, {ROWS}) g""", source_db)
    # a few MB: lower the per-session minimum so this table splits into three ranges
    monkeypatch.setattr(job_module, "MIN_BLOCKS_PER_SESSION", 64)
    return source_cluster, source_db


def _params(source_conn_id, warehouse_conn_id, **kw):
    return {"source_conn_id": source_conn_id, "target_conn_id": warehouse_conn_id, "source_table": "accounts",
            "target_table": "raw.accounts", "copy_sessions": 3, **kw}


def _active_copies(cluster, db) -> list[tuple]:
    return rows_of(cluster, db, "select pid, query from pg_stat_activity where query ilike 'copy%' and state = 'active'"
                                " and pid <> pg_backend_pid()")


@pytest.mark.parametrize("sessions", [3, 1])
def test_copy_and_count_are_one_snapshot_while_the_source_is_written(sessions, accounts, pg_cluster, pg_db,
                                                                     source_conn_id, warehouse_conn_id):
    """Writers move amounts between accounts (sum kept), delete one account and insert its replacement, add an
    empty account (count grows) and rewrite notes, so rows move between blocks (and ranges) during the copy:
    sessions reading different snapshots would see a row twice or not at all and break an invariant, and a
    count (run in its own session alongside the COPY) on another snapshot would not match the COPY."""
    src_cluster, src_db = accounts
    stop = threading.Event()
    commits = [0]

    def writer() -> None:
        with psycopg.connect(src_cluster.dsn(src_db), autocommit=True) as w:
            i = 0
            while not stop.is_set():
                i += 1
                # two distinct live accounts: one in the lower half (ids there may have been deleted), one above
                a, b = 1 + (i * 7919) % (ROWS // 2 - 1), ROWS // 2 + 1 + (i * 104729) % (ROWS // 2)
                with w.transaction():
                    w.execute("update accounts set amount = amount - 7, note = note || 'a'"
                              " where id = (select min(id) from accounts where id >= %s)", [a])
                    w.execute("update accounts set amount = amount + 7, note = note || 'b'"
                              " where id = (select max(id) from accounts where id <= %s)", [b])
                    gone = w.execute("delete from accounts where id = (select min(id) from accounts) returning amount"
                                     ).fetchone()[0]
                    w.execute("insert into accounts values ((select max(id) + 1 from accounts), %s, 'moved')", [gone])
                    w.execute("insert into accounts values ((select max(id) + 1 from accounts), 0, 'new')")
                commits[0] = i

    params = _params(source_conn_id, warehouse_conn_id, copy_sessions=sessions)
    bg = threading.Thread(target=writer, daemon=True)
    bg.start()
    try:
        while commits[0] < 5:
            time.sleep(0.01)
        for run in range(2):  # a rerun replaces the partition with another consistent snapshot
            before = commits[0]
            out = run_extract(D1, **params)
            assert commits[0] > before, "the source was not written during the extract"
            assert out["status"] == "published" and out["rows"] > ROWS
            got = rows_of(pg_cluster, pg_db, f"select count(*), count(distinct id), sum(amount) from ({PART}) p")
            assert got == [(out["rows"], out["rows"], TOTAL)], f"run {run + 1}: not one snapshot: {got}"
    finally:
        stop.set()
        bg.join(timeout=30)
    # quiet source: the partition is exactly the source table
    run_extract(D1, **params)
    assert fingerprint(pg_cluster, pg_db, PART) == fingerprint(src_cluster, src_db, "select id, amount, note from accounts")
    ledger = rows_of(pg_cluster, pg_db, "select status, details->>'copy_sessions', rows = (details->>'source_count')::int"
                                        " from dataeng.load_ledger order by id")
    assert ledger == [("published", str(sessions), True)] * 3
    assert rows_of(pg_cluster, pg_db, "select count(*) from pg_class where relname like '%staging%'") == [(0,)]


@pytest.mark.parametrize("side", ["source", "warehouse"])
def test_a_killed_session_fails_the_load_cancels_the_others_and_the_retry_is_exact(
        side, accounts, pg_cluster, pg_db, source_conn_id, warehouse_conn_id):
    src_cluster, src_db = accounts
    params = _params(source_conn_id, warehouse_conn_id)
    run_extract(D1, **params)
    v1 = fingerprint(pg_cluster, pg_db, PART)
    src_cluster.psql("update accounts set note = note || ' v2' where id % 5 = 0", src_db)
    cluster, db, command = (src_cluster, src_db, "COPY TO") if side == "source" else (pg_cluster, pg_db, "COPY FROM")
    killer = BackendKiller(cluster, db, command=command, min_tuples=5_000)
    killer.start()
    with pytest.raises(Exception) as info:
        run_extract(D1, **params)
    killer.join(timeout=30)
    assert killer.killed_pid is not None, "no session was interrupted"
    assert isinstance(info.value, psycopg.Error) or "terminat" in str(info.value).lower(), info.value
    # every other session was cancelled: nothing keeps copying on either side
    assert _active_copies(src_cluster, src_db) == [] and _active_copies(pg_cluster, pg_db) == []
    assert fingerprint(pg_cluster, pg_db, PART) == v1  # the published partition is untouched
    out = run_extract(D1, **params)
    assert out["status"] == "published" and out["rows"] == ROWS
    assert fingerprint(pg_cluster, pg_db, PART) == fingerprint(src_cluster, src_db,
                                                               "select id, amount, note from accounts")
    assert rows_of(pg_cluster, pg_db, "select count(*) from pg_class where relname like '%staging%'") == [(0,)]


@pytest.mark.parametrize("source", ["small_table", "view"])
def test_small_table_or_view_uses_one_session(source, source_cluster, source_db, pg_cluster, pg_db, source_conn_id,
                                              warehouse_conn_id, monkeypatch):
    monkeypatch.setattr(job_module, "MIN_BLOCKS_PER_SESSION", 1)
    rows = 1000 if source == "small_table" else 50_000
    source_cluster.psql("create table t (id bigint primary key, amount bigint not null, note text not null);"
                        f"insert into t select g, 100, md5(g::text) from generate_series(1, {rows}) g;"
                        "create view v as select * from t", source_db)
    if source == "small_table":
        monkeypatch.setattr(job_module, "MIN_BLOCKS_PER_SESSION", 64)  # 1000 rows: a handful of blocks
    out = run_extract(D1, **_params(source_conn_id, warehouse_conn_id, source_table="t" if source == "small_table"
                                    else "v"))
    assert out["rows"] == rows
    assert rows_of(pg_cluster, pg_db, "select details->>'copy_sessions' from dataeng.load_ledger") == [("1",)]


def test_spec_refuses_what_cannot_be_split():
    base = {"source_conn_id": "s", "target_conn_id": "w", "target_table": "raw.t"}
    assert ExtractSpec(**base, source_table="t").copy_sessions == 1
    with pytest.raises(ValidationError, match="copy_sessions=2: parallel streams split a source_table"):
        ExtractSpec(**base, source_sql="select 1", copy_sessions=2)
    with pytest.raises(ValidationError, match="copy_sessions=4"):
        ExtractSpec(**base, source_table="t", mode="incremental_id", copy_sessions=4)
    with pytest.raises(ValidationError):
        ExtractSpec(**base, source_table="t", copy_sessions=0)
