"""Fault injection: the source or the warehouse backend is terminated mid-COPY; a retry is exact and the
published partition is never partial."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest

from tests.fixtures.extract import BackendKiller, fingerprint, rows_of, run_extract

D1 = datetime(2024, 1, 1, tzinfo=timezone.utc)
ROWS = 150_000
COLS = "id, customer_id, amount, note"


@pytest.fixture
def big_source(source_cluster, source_db):
    source_cluster.psql(
        f"""create table orders (id bigint primary key, customer_id int, amount numeric(12,2), note text);
            insert into orders select g, g % 1000, (g % 10000) / 100.0, md5(g::text) || E'\\t\\\\' || g
            from generate_series(1, {ROWS}) g""",
        source_db,
    )
    return source_cluster, source_db


@pytest.mark.parametrize("side", ["source", "warehouse"])
def test_backend_killed_mid_copy_then_retry_is_exact(side, big_source, pg_cluster, pg_db, source_conn_id,
                                                      warehouse_conn_id):
    src_cluster, src_db = big_source
    params = {"source_conn_id": source_conn_id, "target_conn_id": warehouse_conn_id, "source_table": "orders",
              "target_table": "raw.orders"}
    part = f"select {COLS} from raw.orders where _interval_start = '{D1.isoformat()}'"
    run_extract(D1, **params)
    v1 = fingerprint(src_cluster, src_db, f"select {COLS} from orders")
    assert fingerprint(pg_cluster, pg_db, part) == v1

    src_cluster.psql("update orders set note = note || ' v2' where id % 7 = 0; delete from orders where id % 11 = 0",
                     src_db)
    v2 = fingerprint(src_cluster, src_db, f"select {COLS} from orders")
    if side == "source":
        killer = BackendKiller(src_cluster, src_db, command="COPY TO", min_tuples=10_000)
    else:
        killer = BackendKiller(pg_cluster, pg_db, command="COPY FROM", min_tuples=10_000)
    killer.start()
    with pytest.raises((psycopg.Error, Exception)) as info:
        run_extract(D1, **params)
    killer.join(timeout=30)
    assert killer.killed_pid is not None and killer.tuples_at_kill >= 10_000, "the COPY was not interrupted"
    assert "terminat" in str(info.value).lower() or isinstance(info.value, psycopg.OperationalError), info.value
    # the published partition is exactly the previous load, never a partial one
    assert fingerprint(pg_cluster, pg_db, part) == v1
    # retry: exact new result, no leftovers
    out = run_extract(D1, **params)
    assert out["status"] == "published" and out["rows"] == v2[0]
    assert fingerprint(pg_cluster, pg_db, part) == v2
    assert rows_of(pg_cluster, pg_db, "select count(*) from pg_class where relname like '%staging%'") == [(0,)]
    statuses = [r[0] for r in rows_of(pg_cluster, pg_db, "select status from dataeng.load_ledger order by id")]
    assert statuses[0] == "published" and statuses[-1] == "published"
