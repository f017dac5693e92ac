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
