"""Streaming COPY between two real clusters: exact round-trip of every type, binary and text, progress."""

from __future__ import annotations

import logging

import psycopg
import pytest
from psycopg import sql

from airflow_provider_dataeng.extract.copy_stream import copy_in_sql, copy_out_sql, stream_copy
from tests.fixtures.extract import ALL_TYPES_DDL, ALL_TYPES_ENUM, ALL_TYPES_ROWS, connect, fingerprint

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
