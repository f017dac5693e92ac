"""The extract inside a real DAG run (dag.test()): data interval templating, partition, ledger, XCom."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from airflow.providers.common.compat.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_dataeng.operators.extract import IdempotentExtractOperator
from devstack.airflow_env import run_dag
from tests.fixtures.extract import partition_bounds, rows_of

ORDERS = """
create table orders (id int primary key, status text, updated_at timestamptz not null);
insert into orders values (1, 'placed', '2024-01-01 10:00+00'), (2, 'placed', '2024-01-02 10:00+00'),
  (3, 'shipped', '2024-01-02 23:00+00'), (4, 'placed', '2024-01-03 01:00+00');
"""


def test_extract_in_a_daily_dag_run(source_cluster, source_db, pg_cluster, pg_db, source_conn_id,
                                    warehouse_conn_id):
    source_cluster.psql(ORDERS, source_db)
    dag_id = f"extract_dag_{uuid.uuid4().hex[:8]}"
    with DAG(dag_id, schedule=CronDataIntervalTimetable("@daily", timezone="UTC"), start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
             catchup=False) as dag:
        IdempotentExtractOperator(
            task_id="extract_orders",
            source_conn_id=source_conn_id,
            target_conn_id=warehouse_conn_id,
            source_sql="select * from orders where updated_at >= '{{ data_interval_start }}'::timestamptz"
                       " and updated_at < '{{ data_interval_end }}'::timestamptz",
            target_table="raw.{{ dag.dag_id }}",
            checks=[{"check": "unique", "columns": ["id"]}],
        )
    # a manual run at 2024-01-03 covers the last complete day: [2024-01-02, 2024-01-03)
    states = run_dag(dag, logical_date=datetime(2024, 1, 3, tzinfo=timezone.utc))
    assert states == {"extract_orders": "success"}
    day = datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert rows_of(pg_cluster, pg_db, f'select id, _interval_start from raw."{dag_id}" order by id') == [
        (2, day), (3, day)]
    assert [b[0] for b in partition_bounds(pg_cluster, pg_db, "raw", dag_id)] == [f"{dag_id}__p_20240102"]
    ledger = rows_of(pg_cluster, pg_db, "select pipeline, task_id, run_id, mode, status, rows, partition_start,"
                     " partition_end from dataeng.load_ledger")
    assert len(ledger) == 1
    pipeline, task_id, run_id, mode, status, nrows, start, end = ledger[0]
    assert (pipeline, task_id, mode, status, nrows) == (dag_id, "extract_orders", "full_snapshot", "published", 2)
    assert run_id and (start, end) == (datetime(2024, 1, 2, tzinfo=timezone.utc), datetime(2024, 1, 3, tzinfo=timezone.utc))
