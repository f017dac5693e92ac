"""Issue 14 regressions on real PostgreSQL: late commits (item 2), incremental modes with a source
partition column (item 4)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

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
