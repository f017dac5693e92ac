"""Streaming COPY between two real clusters: exact round-trip of every type, binary and text, progress."""

from __future__ import annotations

import logging
import time

import psycopg
import pytest
from psycopg import sql

from airflow_provider_dataeng.extract.copy_stream import copy_in_sql, copy_out_sql, stream_copy
from tests.fixtures.extract import (
    ALL_TYPES_DDL,
    ALL_TYPES_ENUM,
    ALL_TYPES_ROWS,
    connect,
    fingerprint,
    rows_of,
)

ALL_COLUMNS = ["id", "n", "money_amount", "f8", "ts", "d", "t", "b", "j", "jb", "arr", "tarr", "u", "e", "updated_at"]


@pytest.fixture
def typed_pair(source_cluster, source_db, pg_cluster, pg_db):
    for cluster, db in ((source_cluster, source_db), (pg_cluster, pg_db)):
        cluster.psql(ALL_TYPES_ENUM + ";" + ALL_TYPES_DDL, db)
    source_cluster.psql(ALL_TYPES_ROWS, source_db)
    return source_cluster, source_db, pg_cluster, pg_db


@pytest.mark.parametrize("fmt", ["binary", "text"])
def test_every_type_round_trips_exactly(typed_pair, fmt):
    src_cluster, src_db, wh_cluster, wh_db = typed_pair
    with connect(src_cluster, src_db) as src, connect(wh_cluster, wh_db) as wh:
        stats = stream_copy(
            src, wh, copy_out_sql(sql.SQL("select * from all_types"), fmt),
            copy_in_sql(sql.Identifier("all_types"), ALL_COLUMNS, fmt), fmt=fmt, progress_interval=0,
        )
        wh.commit()
        src.commit()
    assert (stats.rows, stats.source_rows, stats.format) == (4, 4, fmt)
    assert stats.bytes > 0
    assert fingerprint(wh_cluster, wh_db, "select * from all_types") == fingerprint(
        src_cluster, src_db, "select * from all_types"
    )
    # NULL and empty string stay distinct, and the odd values survive individually too.
    with connect(wh_cluster, wh_db) as wh:
        got = dict(wh.execute("select id, t from all_types").fetchall())
        assert got[2] == "" and got[3] is None and got[4] == "\\N"
        assert got[1] == "tab\there\nnew line\\back\\slash \u00e9\u4e2d\U0001F600"
        assert wh.execute("select b from all_types where id = 1").fetchone()[0] == b"\x00\xff\x5c\x0a\x09"
        assert wh.execute("select n::text from all_types where id = 1").fetchone()[0] == (
            "123456789012345678901234567890.123456789012345678901234567890"
        )


def test_zero_rows_and_connection_reuse(typed_pair):
    src_cluster, src_db, wh_cluster, wh_db = typed_pair
    with connect(src_cluster, src_db) as src, connect(wh_cluster, wh_db) as wh:
        stats = stream_copy(
            src, wh, copy_out_sql(sql.SQL("select * from all_types where false"), "binary"),
            copy_in_sql(sql.Identifier("all_types"), ALL_COLUMNS, "binary"), fmt="binary",
        )
        assert (stats.rows, stats.source_rows) == (0, 0)
        # both connections stay usable in the same transaction afterwards
        assert src.execute("select count(*) from all_types").fetchone()[0] == 4
        assert wh.execute("select count(*) from all_types").fetchone()[0] == 0


def test_source_error_is_raised_and_target_copy_aborted(typed_pair):
    src_cluster, src_db, wh_cluster, wh_db = typed_pair
    with connect(src_cluster, src_db) as src, connect(wh_cluster, wh_db) as wh:
        with pytest.raises(psycopg.errors.DivisionByZero):
            stream_copy(
                src, wh, copy_out_sql(sql.SQL("select id / (id - 3) as id from all_types order by id"), "text"),
                copy_in_sql(sql.Identifier("all_types"), ["id"], "text"), fmt="text",
            )
        src.rollback()
        wh.rollback()
        assert wh.execute("select count(*) from all_types").fetchone()[0] == 0
        assert src.execute("select 1").fetchone()[0] == 1


def test_progress_is_logged_with_rows_and_rate(source_cluster, source_db, pg_cluster, pg_db, caplog):
    source_cluster.psql("create table big as select g as id, md5(g::text) as note from generate_series(1, 200000) g",
                        source_db)
    pg_cluster.psql("create table big (id int, note text)", pg_db)
    seen: list[int] = []
    with connect(source_cluster, source_db) as src, connect(pg_cluster, pg_db) as wh:
        with caplog.at_level(logging.INFO):
            stats = stream_copy(
                src, wh, copy_out_sql(sql.SQL("select * from big"), "binary"),
                copy_in_sql(sql.Identifier("big"), ["id", "note"], "binary"), fmt="binary",
                progress_interval=0.001, batch_bytes=16 * 1024, label="big copy",
                on_progress=lambda rows, nbytes: seen.append(rows),
            )
        wh.commit()
    assert stats.rows == 200000
    assert seen and seen == sorted(seen) and 0 < seen[-1] <= 200000
    progress = [r.getMessage() for r in caplog.records if "rows so far" in r.getMessage()]
    assert progress and "big copy" in progress[0] and "rows/s" in progress[0]


def _reader_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "copy-source-reader"]


def _source_copies(cluster, db) -> list[tuple]:
    with connect(cluster, db) as conn:
        return conn.execute("select pid from pg_stat_activity where query ilike 'copy%to stdout%'"
                            " and pid <> pg_backend_pid() and state = 'active'").fetchall()


@pytest.fixture
def big_pair(source_cluster, source_db, pg_cluster, pg_db):
    source_cluster.psql("create table big (id bigint primary key, v int not null, note text);"
                        "insert into big select g, 0, md5(g::text) from generate_series(1, 200000) g", source_db)
    pg_cluster.psql("create table big (id bigint, v int, note text)", pg_db)
    return source_cluster, source_db, pg_cluster, pg_db


@pytest.mark.parametrize("depth", [1, 3])
def test_reader_thread_copy_is_exactly_the_snapshot_while_the_source_is_written(big_pair, depth):
    """The source is read by a reader thread and written by the caller through a bounded queue of small blocks
    while other sessions update, delete and insert on the source: the target gets exactly the rows of the
    COPY's snapshot (the same REPEATABLE READ transaction reads them back afterwards), and every row once."""
    import threading

    src_cluster, src_db, wh_cluster, wh_db = big_pair
    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        with connect(src_cluster, src_db, autocommit=True) as w:
            i = 0
            while not stop.is_set():
                i += 1
                w.execute("update big set v = v + 1, note = note || 'x' where id %% 97 = %s", [i % 97])
                w.execute("delete from big where id = %s", [1 + (i * 7919) % 200000])
                w.execute("insert into big values (%s, 1, 'new')", [200000 + i])
                writes[0] = i

    with connect(src_cluster, src_db) as src, connect(wh_cluster, wh_db) as wh:
        bg = threading.Thread(target=writer, daemon=True)
        bg.start()
        while writes[0] < 3:  # the source is being written before the snapshot and during the copy
            time.sleep(0.01)
        src.execute("begin isolation level repeatable read read only")
        expected = src.execute("select count(*) from big").fetchone()[0]
        try:
            stats = stream_copy(
                src, wh, copy_out_sql(sql.SQL("select id, v, note from big"), "binary"),
                copy_in_sql(sql.Identifier("big"), ["id", "v", "note"], "binary"), fmt="binary",
                progress_interval=0, batch_bytes=8 * 1024, queue_depth=depth,
            )
            snapshot = src.execute("select md5(string_agg(b::text, '|' order by id)) from big b").fetchone()[0]
            during = writes[0]
        finally:
            stop.set()
            bg.join(timeout=30)
        src.commit()
        wh.commit()
    assert during > 3, "the source was not written during the copy"
    assert (stats.rows, stats.source_rows) == (expected, expected)
    got = rows_of(wh_cluster, wh_db, "select count(*), count(distinct id), md5(string_agg(b::text, '|' order by id))"
                                     " from big b")
    assert got == [(expected, expected, snapshot)]
    assert fingerprint(src_cluster, src_db, "select id, v, note from big") != fingerprint(
        wh_cluster, wh_db, "select id, v, note from big")  # the source moved on; the copy is the snapshot
    assert _reader_threads() == []


class _Interrupt(BaseException):
    """Stands in for an interrupt of the calling thread (execution_timeout, a signal)."""


@pytest.mark.parametrize("depth", [1, 4])
def test_interrupt_of_the_calling_thread_cancels_the_source_and_ends_the_reader(big_pair, depth):
    src_cluster, src_db, wh_cluster, wh_db = big_pair
    calls: list[int] = []

    def interrupt(rows: int, nbytes: int) -> None:
        calls.append(rows)
        if len(calls) == 2:
            raise _Interrupt

    with connect(src_cluster, src_db) as src, connect(wh_cluster, wh_db) as wh:
        with pytest.raises(_Interrupt):
            stream_copy(
                src, wh, copy_out_sql(sql.SQL("select id, v, note from big"), "binary"),
                copy_in_sql(sql.Identifier("big"), ["id", "v", "note"], "binary"), fmt="binary",
                progress_interval=0.0001, batch_bytes=8 * 1024, queue_depth=depth, on_progress=interrupt,
            )
        assert 0 < calls[-1] < 200000  # interrupted mid-copy
        assert _reader_threads() == []
        assert _source_copies(src_cluster, src_db) == []  # the source COPY was cancelled, not left running
        src.rollback()
        wh.rollback()
        assert src.execute("select count(*) from big").fetchone()[0] == 200000  # both sessions stay usable
        assert wh.execute("select count(*) from big").fetchone()[0] == 0  # nothing half-written


def test_source_error_after_many_blocks_aborts_the_target(big_pair):
    src_cluster, src_db, wh_cluster, wh_db = big_pair
    with connect(src_cluster, src_db) as src, connect(wh_cluster, wh_db) as wh:
        with pytest.raises(psycopg.errors.DivisionByZero):
            stream_copy(
                src, wh, copy_out_sql(sql.SQL("select id / (id - 150000) as id, v, note from big order by id"),
                                      "binary"),
                copy_in_sql(sql.Identifier("big"), ["id", "v", "note"], "binary"), fmt="binary",
                progress_interval=0, batch_bytes=8 * 1024, queue_depth=2,
            )
        assert _reader_threads() == []
        src.rollback()
        wh.rollback()
        assert wh.execute("select count(*) from big").fetchone()[0] == 0
        assert src.execute("select 1").fetchone()[0] == 1
