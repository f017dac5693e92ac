"""Issue 14 regressions on real PostgreSQL: late commits (item 2), incremental modes with a source
partition column (item 4)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from tests.fixtures.extract import rows_of, run_extract

D1 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("mode", ["incremental_timestamp", "incremental_id"])
def test_incremental_mode_with_a_source_partition_column_is_refused(mode, source_cluster, source_db, pg_cluster,
                                                                      pg_db, source_conn_id, warehouse_conn_id):
    """Before: an update on day 2 of a row created on day 1 (partitioned by created_at) was never loaded."""
    source_cluster.psql(
        "create table orders (id int primary key, created_at timestamptz, updated_at timestamptz);"
        "insert into orders values (1, '2024-01-01 10:00+00', '2024-01-02 10:00+00')", source_db)
    params = dict(source_conn_id=source_conn_id, target_conn_id=warehouse_conn_id, source_table="orders",
                  target_table="raw.orders", mode=mode, partition_column="created_at")
    with pytest.raises(AirflowFailException, match="partition_column='created_at' is a source column"):
        run_extract(D1 + timedelta(days=1), **params)
    # refused before any DDL on the target
    assert rows_of(pg_cluster, pg_db, "select count(*) from pg_class where relname like 'orders%'") == [(0,)]
    # full_snapshot may partition on a source column: each interval takes the rows whose value is inside it
    out = run_extract(D1, **{**params, "mode": "full_snapshot"})
    assert out["rows"] == 1


def test_late_commit_across_the_boundary_is_loaded_by_the_next_run(source_cluster, source_db, pg_cluster, pg_db,
                                                                   source_conn_id, warehouse_conn_id):
    """A writer's transaction starts before an interval's end (updated_at = now() = its start) and commits after
    that interval's run took its snapshot: the default lag makes the next run load the row. With lag 0 the row
    is lost, and the run says so (warning + ledger details.late_commit_risk)."""
    params = dict(source_conn_id=source_conn_id, target_conn_id=warehouse_conn_id, mode="incremental_timestamp",
                  key_columns=["id"])

    def scenario(target: str, **kw) -> tuple[list, list]:
        table = target.split(".")[1]
        source_cluster.psql(f"create table {table} (id int primary key, updated_at timestamptz not null default now())",
                            source_db)
        params["source_table"] = table
        writer = psycopg.connect(source_cluster.dsn(source_db))
        try:
            with writer.cursor() as cur:
                cur.execute("insert into " + table + " (id) values (1) returning updated_at")
                started = cur.fetchone()[0]
            boundary = started.replace(microsecond=0) + timedelta(seconds=2)
            while datetime.now(timezone.utc) < boundary + timedelta(milliseconds=200):
                time.sleep(0.1)
            first = run_extract(boundary - timedelta(hours=1), boundary, target_table=target, **params, **kw)
            writer.commit()
        finally:
            writer.close()
        run_extract(boundary, boundary + timedelta(hours=1), target_table=target, **params, **kw)
        loaded = rows_of(pg_cluster, pg_db, f"select id, _interval_start from {target}__latest")
        details = rows_of(pg_cluster, pg_db, f"select details from dataeng.load_ledger where target_table = "
                          f"'{target.split('.')[1]}' order by id")
        assert first["rows"] == 0
        return [(i, s == boundary) for i, s in loaded], [d[0] for d in details]

    loaded, details = scenario("raw.orders_default_lag")
    assert loaded == [(1, True)], "the default lag loads the late commit in the next interval"
    assert details[0]["lag_s"] == 900 and "late_commit_risk" not in details[0]

    loaded, details = scenario("raw.orders_no_lag", lag="0s")
    assert loaded == [], "without lag the late commit is in no partition"
    (risk,) = details[0]["late_commit_risk"]
    assert risk["pid"] > 0 and risk["xact_start"]


def test_incremental_id_watermark_ships_a_window_not_every_id(source_cluster, source_db, pg_cluster, pg_db,
                                                              source_conn_id, warehouse_conn_id):
    """Issue 14 item 5: before, every run streamed every known id (here ~20,000) to the source, and the
    NULL-id rows were loaded into every partition."""
    source_cluster.psql(
        "create table events (id bigint, note text);"
        "insert into events select g, 'h' || g from generate_series(1, 20000) g where g not in (100, 19600);"
        "insert into events values (null, 'no id'), (null, 'no id either')", source_db)
    params = dict(source_conn_id=source_conn_id, target_conn_id=warehouse_conn_id, source_table="events",
                  target_table="raw.events", mode="incremental_id", id_safety_window=500)
    days = [D1 + timedelta(days=i) for i in range(3)]

    def ledger_last() -> dict:
        return rows_of(pg_cluster, pg_db, "select details from dataeng.load_ledger order by id desc limit 1")[0][0]

    def ids(day) -> list[int]:
        return [r[0] for r in rows_of(pg_cluster, pg_db, "select id from raw.events where _interval_start = "
                                                         f"'{day.isoformat()}' order by id")]

    assert run_extract(days[0], **params)["rows"] == 19998
    first = ledger_last()
    assert first["null_ids"] == 2 and first["max_id"] == 20000 and first["id_watermark"] is None

    # 100 new ids; 19600 commits late but inside the window (> 20000 - 500); 100 commits far too late; a delete
    source_cluster.psql("insert into events select g, 'n' || g from generate_series(20001, 20100) g;"
                        "insert into events values (19600, 'late'), (100, 'too late');"
                        "delete from events where id = 19900", source_db)
    out = run_extract(days[1], **params)
    details = ledger_last()
    assert details["known_ids"] == 499, details  # ids above the watermark only, not the 19,998 known ids
    assert details["id_watermark"]["low"] == 19500 and details["null_ids"] == 2
    assert out["rows"] == 101 and ids(days[1]) == [19600, *range(20001, 20101)]
    assert rows_of(pg_cluster, pg_db, "select count(*) from raw.events where id is null or id = 100") == [(0,)]

    # a rerun of the old interval reloads exactly the ids it owns (minus the source delete), nothing else
    assert run_extract(days[0], **params)["rows"] == 19997
    assert ids(days[0]) == [i for i in range(1, 20001) if i not in (100, 19600, 19900)]
    assert ledger_last()["id_watermark"]["own_ids_reloaded"] == 19598
    # the next interval: nothing new above the watermark, ids compared with the two recent partitions only
    assert run_extract(days[2], **params)["rows"] == 0
    assert ledger_last()["known_ids"] == 499
    assert rows_of(pg_cluster, pg_db, "select count(*), count(distinct id) from raw.events") == [(20098, 20098)]


def test_delete_detection_writes_tombstones_that_latest_hides(source_cluster, source_db, pg_cluster, pg_db,
                                                              source_conn_id, warehouse_conn_id):
    """Issue 14 item 6: before, a row deleted in the source stayed in <table>__latest forever."""
    source_cluster.psql(
        "create table orders (id int primary key, status text, updated_at timestamptz not null);"
        "insert into orders values (1, 'placed', '2024-01-01 08:00+00'), (2, 'placed', '2024-01-01 09:00+00'),"
        " (3, 'placed', '2024-01-01 10:00+00')", source_db)
    params = dict(source_conn_id=source_conn_id, target_conn_id=warehouse_conn_id, source_table="orders",
                  target_table="raw.orders", mode="incremental_timestamp", lag="0s", key_columns=["id"],
                  detect_deletes=True)
    d2, d3 = D1 + timedelta(days=1), D1 + timedelta(days=2)

    def latest() -> list[tuple]:
        return rows_of(pg_cluster, pg_db, "select id, status from raw.orders__latest order by id")

    def deletes_detail() -> dict:
        return rows_of(pg_cluster, pg_db, "select details from dataeng.load_ledger order by id desc limit 1")[0][0][
            "deletes"]

    assert run_extract(D1, **params)["rows"] == 3
    assert latest() == [(1, "placed"), (2, "placed"), (3, "placed")]
    assert deletes_detail() == {"keys_compared": 0, "tombstones": 0, "seconds": deletes_detail()["seconds"]}

    source_cluster.psql("delete from orders where id = 2; update orders set status = 'shipped', "
                        "updated_at = '2024-01-02 10:00+00' where id = 3", source_db)
    assert run_extract(d2, **params)["rows"] == 2  # row 3's update + the tombstone of 2
    assert latest() == [(1, "placed"), (3, "shipped")]
    detail = deletes_detail()
    assert (detail["keys_compared"], detail["tombstones"]) == (3, 1) and detail["seconds"] >= 0
    tomb = rows_of(pg_cluster, pg_db, "select id, status, updated_at, _deleted from raw.orders where _deleted")
    assert tomb == [(2, None, d3, True)]
    # a rerun of the interval is exact: the same tombstone, once
    run_extract(d2, **params)
    assert latest() == [(1, "placed"), (3, "shipped")]
    assert rows_of(pg_cluster, pg_db, "select count(*) from raw.orders where _deleted") == [(1,)]
    # the key comes back later: the new row wins over the tombstone; a deleted key is not compared again
    source_cluster.psql("insert into orders values (2, 'again', '2024-01-03 05:00+00')", source_db)
    run_extract(d3, **params)
    assert latest() == [(1, "placed"), (2, "again"), (3, "shipped")]
    assert deletes_detail()["tombstones"] == 0
    # the base table keeps every version and every tombstone (nothing is mutated in place)
    assert rows_of(pg_cluster, pg_db, "select count(*) from raw.orders") == [(6,)]
    # deleted again, and detected by a rerun of an EARLIER interval: the tombstone still beats the later version
    source_cluster.psql("delete from orders where id = 2", source_db)
    run_extract(d2, **params)
    assert latest() == [(1, "placed"), (3, "shipped")]
    assert rows_of(pg_cluster, pg_db, "select updated_at from raw.orders where _deleted and id = 2") == [
        (datetime(2024, 1, 3, 5, 0, 0, 1, tzinfo=timezone.utc),)]


# -- 14.3 (extract side): every check of the target runs before any DDL ----------------------------------------
REFUSED_TARGETS = {
    "ordinary_table": ("create table raw.orders (id int, note text, _interval_start timestamptz)",
                       "is an ordinary table"),
    "list_partitioned": ("create table raw.orders (id int, note text, _interval_start timestamptz) "
                         "partition by list (_interval_start)", "not range-partitioned on '_interval_start'"),
    "other_key": ("create table raw.orders (id int, note text, created_at timestamptz, _interval_start timestamptz)"
                  " partition by range (created_at)", "not range-partitioned on '_interval_start'"),
    "naive_key": ("create table raw.orders (id int, note text, _interval_start timestamp) "
                  "partition by range (_interval_start)", "expected a timestamptz or date column"),
    "a_partition": ("create table raw.top (id int, note text, _interval_start timestamptz) "
                    "partition by range (_interval_start);"
                    "create table raw.orders partition of raw.top for values from ('2024-01-01') to ('2025-01-01')"
                    " partition by range (_interval_start)", "is itself a partition of raw.top"),
    "overlapping_partition": ("create table raw.orders (id int, note text, _interval_start timestamptz) "
                              "partition by range (_interval_start);"
                              "create table raw.orders_2024_01 partition of raw.orders "
                              "for values from ('2024-01-01 00:00+00') to ('2024-02-01 00:00+00')",
                              "overlaps the bounds"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_TARGETS))
def test_a_refused_target_is_never_altered_by_schema_drift(case, source_cluster, source_db, pg_cluster, pg_db,
                                                          source_conn_id, warehouse_conn_id):
    """Before: schema_drift add_columns added the source's new column to a target that the publish step then
    refused (or that PostgreSQL refused mid-way); now every check runs first and nothing is changed."""
    from airflow.providers.common.compat.sdk import AirflowException

    ddl, message = REFUSED_TARGETS[case]
    source_cluster.psql("create table orders (id int primary key, note text, extra text);"
                        "insert into orders values (1, 'a', 'x')", source_db)
    pg_cluster.psql("create schema raw;" + ddl, pg_db)
    catalog_sql = ("select c.relname::text, c.relkind::text, array(select attname::text from pg_attribute where "
                   "attrelid = c.oid and attnum > 0 and not attisdropped order by attnum)::text from pg_class c "
                   "join pg_namespace n on n.oid = c.relnamespace where n.nspname in ('raw', 'dataeng') order by 1")
    before = rows_of(pg_cluster, pg_db, catalog_sql)
    with pytest.raises(AirflowException, match=message) as raised:
        run_extract(D1 + timedelta(days=3), source_conn_id=source_conn_id, target_conn_id=warehouse_conn_id,
                    source_table="orders", target_table="raw.orders", mode="full_snapshot",
                    schema_drift="add_columns")
    assert isinstance(raised.value, AirflowFailException), "a refused layout is not fixed by a retry"
    assert "Nothing was changed" in str(raised.value)
    assert rows_of(pg_cluster, pg_db, catalog_sql) == before  # no column, index, staging table, ledger


# -- 14.7 (extract side): the __latest view is replaced under lock_timeout, with the swap's retries -------------
def test_latest_view_replacement_waits_at_most_lock_timeout_and_retries(source_cluster, source_db, pg_cluster,
                                                                        pg_db, source_conn_id, warehouse_conn_id):
    """Before: CREATE OR REPLACE VIEW waited without limit behind a long reader of ``__latest`` (and every reader
    queued behind it). Now each attempt waits lock_timeout, retries with backoff, and finally fails naming the
    holder; the view is replaced once the reader is gone."""
    import logging
    import threading

    from airflow.providers.common.compat.sdk import AirflowException

    source_cluster.psql("create table orders (id int primary key, updated_at timestamptz not null);"
                        "insert into orders values (1, '2024-01-01 10:00+00'), (2, '2024-01-02 10:00+00')", source_db)
    params = dict(source_conn_id=source_conn_id, target_conn_id=warehouse_conn_id, source_table="orders",
                  target_table="raw.orders", mode="incremental_timestamp", lag="0s", key_columns=["id"],
                  lock_timeout="0.3s", swap_attempts=2)
    run_extract(D1, **params)
    # a view written by an older version (no definition digest) is replaced by the next run
    pg_cluster.psql("comment on view raw.orders__latest is null", pg_db)
    reader = psycopg.connect(pg_cluster.dsn(pg_db))
    reader.execute("select count(*) from raw.orders__latest")  # a long BI query: holds ACCESS SHARE on the view
    outcome: dict = {}

    def second_run() -> None:
        try:
            outcome["xcom"] = run_extract(D1 + timedelta(days=1), **params)
        except BaseException as exc:  # asserted below
            outcome["error"] = exc

    worker = threading.Thread(target=second_run, daemon=True)
    worker.start()
    worker.join(30)
    hung = worker.is_alive()
    reader.rollback()
    worker.join(30)
    assert not hung, "the view replacement waited for the reader without lock_timeout"
    error = outcome.get("error")
    assert isinstance(error, AirflowException), outcome
    assert "view raw.orders__latest failed: could not get its locks within lock_timeout 0.3s in 2 attempts" in str(
        error) and f"pid {reader.info.backend_pid}" in str(error)
    # the partition itself was published before the view step (readers of raw.orders see it)
    assert rows_of(pg_cluster, pg_db, "select id from raw.orders order by id") == [(1,), (2,)]

    # a reader that finishes within the retries: the run logs the retry and succeeds
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    locks_log = logging.getLogger("airflow_provider_dataeng.publish.locks")
    locks_log.addHandler(handler)
    pg_cluster.psql("comment on view raw.orders__latest is null", pg_db)
    reader.execute("select count(*) from raw.orders__latest")
    releaser = threading.Timer(1.0, reader.rollback)
    releaser.start()
    try:  # a new interval (its swap does not conflict with the reader; the view does)
        run_extract(D1 + timedelta(days=2), **{**params, "swap_attempts": 6})
    finally:
        releaser.join()
        locks_log.removeHandler(handler)
        reader.close()
    assert any("DDL of view raw.orders__latest: lock not available" in r.getMessage() for r in records)
    assert rows_of(pg_cluster, pg_db, "select obj_description('raw.orders__latest'::regclass)")[0][0].startswith(
        "dataeng latest-row view of raw.orders")
    assert rows_of(pg_cluster, pg_db, "select id from raw.orders__latest order by id") == [(1,), (2,)]
