"""The harness itself: clusters answer, databases are fresh, dag.test() runs and reports task states."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook
from devstack.airflow_env import run_dag


def test_fresh_database_is_empty(pg_cluster, pg_db):
    assert pg_cluster.psql("select count(*) from pg_tables where schemaname = 'public'", pg_db) == "0"
    assert pg_cluster.psql("show listen_addresses") == "127.0.0.1"


def test_dag_test_runs_tasks_against_registered_connection(warehouse_conn_id):
    from airflow.providers.common.compat.sdk import DAG, task

    with DAG("harness_smoke", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:

        @task
        def write() -> int:
            hook = FailoverPostgresHook(postgres_conn_id=warehouse_conn_id)
            hook.run("create table t(x int); insert into t values (1), (2)")
            return hook.get_first("select count(*) from t")[0]

        @task
        def fail() -> None:
            raise ValueError("boom")

        write() >> fail()

    states = run_dag(dag)
    assert states == {"write": "success", "fail": "failed"}
    assert FailoverPostgresHook(postgres_conn_id=warehouse_conn_id).get_first("select sum(x) from t")[0] == 3
