"""IdempotentExtractOperator end to end on two real clusters: each mode, reruns, types, drift, ledger."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dataeng.extract.job import RowCountMismatch
from airflow_provider_dataeng.extract.schema_drift import SchemaDriftError
from airflow_provider_dataeng.operators.extract import IdempotentExtractOperator
from tests.fixtures.extract import (
    ALL_TYPES_DDL,
    ALL_TYPES_ENUM,
    ALL_TYPES_ROWS,
    fingerprint,
    partition_bounds,
    rows_of,
    run_extract,
)

D1 = datetime(2024, 1, 1, tzinfo=timezone.utc)
D2 = D1 + timedelta(days=1)
D3 = D2 + timedelta(days=1)

ORDERS = """
create table orders (id int primary key, status text, amount numeric(12,2), updated_at timestamptz not null);
insert into orders values
  (1, 'placed', 10.00, '2024-01-01 08:00+00'), (2, 'placed', 20.50, '2024-01-01 23:59:59.999999+00'),
  (3, 'shipped', 5.25, '2024-01-02 00:00+00'), (4, 'placed', 1.00, '2024-01-02 12:00+00');
"""


@pytest.fixture
def env(source_cluster, source_db, pg_cluster, pg_db, source_conn_id, warehouse_conn_id):
    source_cluster.psql(ORDERS, source_db)

    class Env:
        src, src_db, wh, wh_db = source_cluster, source_db, pg_cluster, pg_db
        params = {"source_conn_id": source_conn_id, "target_conn_id": warehouse_conn_id}

        def extract(self, lower, **kw):
            return run_extract(lower, **self.params, **kw)

        def partition(self, table, lower, cols="id, status, amount, updated_at"):
            upper = lower + timedelta(days=1)
            return rows_of(pg_cluster, pg_db, f"select {cols} from {table} where _interval_start >= '{lower.isoformat()}'"
                           f" and _interval_start < '{upper.isoformat()}' order by id")

        def ledger(self):
            return rows_of(pg_cluster, pg_db, "select mode, status, rows, bytes, details, partition_start, partition_end"
                           " from dataeng.load_ledger order by id")

    return Env()


def test_full_snapshot_rerun_replaces_exactly_the_partition(env):
    out = env.extract(D1, source_table="orders", target_table="raw.orders")
    assert out["status"] == "published" and out["rows"] == 4
    env.src.psql("delete from orders where id = 4; update orders set status = 'shipped' where id = 1", env.src_db)
    env.extract(D2, source_table="orders", target_table="raw.orders")
    assert [r[0] for r in env.partition("raw.orders", D1)] == [1, 2, 3, 4]
    assert [(r[0], r[1]) for r in env.partition("raw.orders", D2)] == [(1, "shipped"), (2, "placed"), (3, "shipped")]
    # rerun D1: replaced by today's source, D2 untouched
    env.extract(D1, source_table="orders", target_table="raw.orders")
    assert env.partition("raw.orders", D1) == env.partition("raw.orders", D2)
    assert rows_of(env.wh, env.wh_db, "select count(*) from raw.orders")[0][0] == 6
    # the source is now empty: the rerun leaves an empty partition, not the old rows
    env.src.psql("delete from orders", env.src_db)
    assert env.extract(D1, source_table="orders", target_table="raw.orders")["rows"] == 0
    assert env.partition("raw.orders", D1) == [] and len(env.partition("raw.orders", D2)) == 3
    bounds = partition_bounds(env.wh, env.wh_db, "raw", "orders")
    assert [b[0] for b in bounds] == ["orders__p_20240101", "orders__p_20240102"]
    assert "2024-01-01 00:00:00+00" in bounds[0][1] and "2024-01-02 00:00:00+00" in bounds[0][1]
    ledger = env.ledger()
    assert [(m, s, r) for m, s, r, *_ in ledger] == [
        ("full_snapshot", "published", 4), ("full_snapshot", "published", 3), ("full_snapshot", "published", 3),
        ("full_snapshot", "published", 0),
    ]
    details = ledger[0][4]
    assert details["mode"] == "full_snapshot" and details["rows"] == 4 and details["bytes"] > 0
    assert details["duration_s"] >= 0 and details["copy_format"] == "binary" and details["source_count"] == 4
    assert ledger[0][3] > 0 and (ledger[0][5], ledger[0][6]) == (D1, D2)


def test_incremental_timestamp_with_lag_and_latest_view(env):
    params = dict(source_table="orders", target_table="raw.orders_inc", mode="incremental_timestamp",
                  timestamp_column="updated_at", lag="1h", key_columns=["id"])
    assert env.extract(D1, **params)["rows"] == 2
    assert env.extract(D2, **params)["rows"] == 3  # 3, 4 and (lag: 23:59:59 is within 1h of D2) 2
    assert [r[0] for r in env.partition("raw.orders_inc", D1)] == [1, 2]
    # a late update lands in D2's window
    env.src.psql("update orders set status = 'cancelled', updated_at = '2024-01-02 18:00+00' where id = 1", env.src_db)
    env.extract(D2, **params)
    assert [(r[0], r[1]) for r in env.partition("raw.orders_inc", D2)] == [
        (1, "cancelled"), (2, "placed"), (3, "shipped"), (4, "placed")]
    # partition D1 still has the old version of 1; the latest view returns one row per id, the newest
    latest = rows_of(env.wh, env.wh_db, "select id, status, _interval_start from raw.orders_inc__latest order by id")
    assert [(i, s) for i, s, _ in latest] == [(1, "cancelled"), (2, "placed"), (3, "shipped"), (4, "placed")]
    assert latest[1][2] == D2  # row 2 is in both partitions (lag): the later partition wins the tie
    with pytest.raises(ValueError, match="lag\n.*expected a duration"):
        IdempotentExtractOperator(task_id="x", lag="soon", **env.params, **{k: v for k, v in params.items() if k != "lag"})


def test_incremental_id_set_difference(env):
    params = dict(source_table="orders", target_table="raw.orders_ids", mode="incremental_id", id_column="id")
    assert env.extract(D1, **params)["rows"] == 4
    assert env.extract(D2, **params)["rows"] == 0  # nothing new
    env.src.psql("insert into orders values (10, 'placed', 1, now()), (7, 'placed', 2, now())", env.src_db)
    assert env.extract(D3, **params)["rows"] == 2
    assert [r[0] for r in env.partition("raw.orders_ids", D3)] == [7, 10]
    # rerun of D1 reloads its own ids (and sees the deletion of id 3); never the ids of other partitions
    env.src.psql("delete from orders where id = 3", env.src_db)
    assert env.extract(D1, **params)["rows"] == 3
    ids = [r[0] for r in rows_of(env.wh, env.wh_db, "select id from raw.orders_ids order by id")]
    assert ids == [1, 2, 4, 7, 10]
    assert env.ledger()[-1][4]["known_ids"] == 2


def test_every_type_through_the_operator_and_enum_created(source_cluster, source_db, pg_cluster, pg_db,
                                                          source_conn_id, warehouse_conn_id):
    source_cluster.psql(ALL_TYPES_ENUM + ";" + ALL_TYPES_DDL + ";" + ALL_TYPES_ROWS, source_db)
    source_cluster.psql("create view all_types_text as select *, array[e, 'ok']::mood[] as moods from all_types",
                        source_db)
    params = {"source_conn_id": source_conn_id, "target_conn_id": warehouse_conn_id}
    run_extract(D1, source_table="all_types", target_table="raw.all_types", **params)
    run_extract(D1, source_table="all_types_text", target_table="raw.all_types_text", **params)
    cols = "id, n, money_amount, f8, ts, d, t, b, j, jb, arr, tarr, u, e, updated_at"
    want = fingerprint(source_cluster, source_db, f"select {cols} from all_types")
    assert fingerprint(pg_cluster, pg_db, f"select {cols} from raw.all_types") == want
    assert fingerprint(pg_cluster, pg_db, f"select {cols} from raw.all_types_text") == want
    assert fingerprint(pg_cluster, pg_db, "select moods from raw.all_types_text") == fingerprint(
        source_cluster, source_db, "select moods from all_types_text")
    formats = [r[0] for r in rows_of(pg_cluster, pg_db, "select details->>'copy_format' from dataeng.load_ledger order by id")]
    assert formats == ["binary", "text"]  # an enum array forces text (binary arrays embed type oids)
    assert rows_of(pg_cluster, pg_db, "select format_type(atttypid, atttypmod) from pg_attribute"
                   " where attrelid = 'raw.all_types'::regclass and attname = 'e'")[0][0] == "raw.mood"


def test_schema_drift_policies_end_to_end(env):
    env.extract(D1, source_table="orders", target_table="raw.orders")
    env.src.psql("alter table orders add column channel text default 'web'", env.src_db)
    with pytest.raises(SchemaDriftError, match=r"new +\| channel \| text"):
        env.extract(D2, source_table="orders", target_table="raw.orders")
    assert env.partition("raw.orders", D2) == []  # nothing loaded
    env.extract(D2, source_table="orders", target_table="raw.orders", schema_drift="ignore_extra")
    assert len(env.partition("raw.orders", D2)) == 4
    env.extract(D3, source_table="orders", target_table="raw.orders", schema_drift="add_columns")
    assert {r[0] for r in env.partition("raw.orders", D3, cols="channel")} == {"web"}
    assert {r[0] for r in env.partition("raw.orders", D1, cols="channel")} == {None}
    env.src.psql("alter table orders alter column amount type numeric(14,4)", env.src_db)
    with pytest.raises(SchemaDriftError, match="retyped"):
        env.extract(D3, source_table="orders", target_table="raw.orders", schema_drift="add_columns")


def test_count_mismatch_in_snapshot_publishes_nothing(env):
    env.extract(D1, source_table="orders", target_table="raw.orders")
    env.src.psql("insert into orders select g, 'placed', 1, now() from generate_series(100, 2000) g", env.src_db)
    # a volatile query returns different rows to the count and to the COPY: the load must be refused
    with pytest.raises(RowCountMismatch, match="nothing was published"):
        env.extract(D1, source_sql="select * from orders where random() < 0.5", target_table="raw.orders")
    assert [r[0] for r in env.partition("raw.orders", D1)] == [1, 2, 3, 4]
    assert env.ledger()[-1][1] == "failed"


def test_source_sql_templated_and_checks_reject(env):
    sql_text = "select * from orders where updated_at < '{{ data_interval_end }}'::timestamptz"
    op = IdempotentExtractOperator(task_id="t", source_sql=sql_text, target_table="raw.orders_q", **env.params)
    assert set(op.template_fields) == {"source_sql", "source_table", "target_table"}
    assert op.outlets and "raw/orders_q" in op.outlets[0].uri
    assert IdempotentExtractOperator(task_id="t2", source_sql=sql_text, target_table="raw.{{ ds_nodash }}",
                                     **env.params).outlets == []
    # SQL with % signs is passed through untouched (no parameter interpolation)
    out = env.extract(D1, source_sql="select * from orders where status like 'pl%'", target_table="raw.orders_q")
    assert out["rows"] == 3 and out["target"] == "raw.orders_q"
    with pytest.raises(AirflowException, match="row_count"):
        env.extract(D1, source_sql="select * from orders", target_table="raw.orders_q",
                    checks=[{"check": "row_count", "min": 10}])
    assert env.ledger()[-1][1] == "rejected"
    with pytest.raises(ValueError, match="mode\n.*'full_snapshot', 'incremental_timestamp' or 'incremental_id'"):
        IdempotentExtractOperator(task_id="x", mode="incremental", source_table="t", target_table="t", **env.params)
    with pytest.raises(AirflowException, match="is empty.*data intervals"):
        run_extract(D1, D1, source_table="orders", target_table="raw.orders_q", **env.params)
    with pytest.raises(ValueError, match="source_table / source_sql"):
        IdempotentExtractOperator(task_id="x", target_table="t", **env.params)


def test_identifiers_with_quotes_spaces_and_semicolons(env):
    env.src.psql('create table "Order Items; --" ("we""ird; drop table orders; --" int primary key, "Note" text);'
                 ' insert into "Order Items; --" values (1, \'a\'), (2, null)', env.src_db)
    out = env.extract(D1, source_table='public."Order Items; --"', target_table='raw."Tgt ""x"""',
                      mode="incremental_id", id_column='we"ird; drop table orders; --')
    assert out["rows"] == 2 and out["target"] == 'raw.Tgt "x"'
    got = rows_of(env.wh, env.wh_db, 'select "we""ird; drop table orders; --", "Note" from raw."Tgt ""x""" order by 1')
    assert got == [(1, "a"), (2, None)]
    assert rows_of(env.src, env.src_db, "select count(*) from orders")[0][0] == 4
