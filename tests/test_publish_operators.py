"""StagingSwapOperator, RollbackPublishOperator and DataQualityOperator in a real dag.test() run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_dataeng.connections import connect
from airflow_provider_dataeng.operators.publish import RollbackPublishOperator, StagingSwapOperator
from airflow_provider_dataeng.operators.quality import DataQualityOperator
from airflow_provider_dataeng.publish import PublishEngine, table_asset
from devstack.airflow_env import run_dag
from tests.fixtures.publish import ledger, one

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_operators_publish_check_and_roll_back_in_a_dag_run(warehouse_conn_id, db, pg_db):
    from airflow.providers.common.compat.sdk import DAG

    PublishEngine(connect(warehouse_conn_id)).publish_table(
        "mart.daily", select_sql="select 1 as id, 'old' as v")
    with DAG("publish_ops", schedule=timedelta(days=1), start_date=START, catchup=False,
             params={"n": 5}) as dag:
        swap = StagingSwapOperator(
            task_id="swap", conn_id=warehouse_conn_id, target_table="mart.daily",
            select_sql="select g as id, 'new' as v from generate_series(1, {{ params.n }}) g",
            checks=[{"check": "row_count", "min": "{{ params.n }}"}, {"check": "unique", "columns": ["id"]}],
        )
        events = StagingSwapOperator(
            task_id="events", conn_id=warehouse_conn_id, target_table="mart.events",
            partition_column="_interval_start", select_sql="select 1 as id, '{{ ds }}' as ds",
            partition_start="{{ logical_date }}", partition_end="{{ macros.ds_add(ds, 1) }}", analyze=True,
        )
        rollback = RollbackPublishOperator(task_id="rollback", conn_id=warehouse_conn_id, target_table="mart.daily")
        bad_quality = DataQualityOperator(task_id="bad_quality", conn_id=warehouse_conn_id, table="mart.daily",
                                          checks=[{"check": "row_count", "min": 100}])
        swap >> events >> rollback >> bad_quality

    states = run_dag(dag, logical_date=START)

    assert states == {"swap": "success", "events": "success", "rollback": "success", "bad_quality": "failed"}
    assert one(db, "select string_agg(v, ',') from mart.daily") == "old"  # rolled back
    assert one(db, "select count(*) from mart.daily__previous") == 5
    assert one(db, 'select ds from mart."events__p_20260101"') == "2026-01-01"
    # analyze=True: the partition went live with column statistics; the table swap (default) with none yet
    stats = "select count(*) from pg_stats where schemaname = 'mart' and tablename = %s"
    assert (one(db, stats, ["events__p_20260101"]), one(db, stats, ["daily__previous"])) == (3, 0)
    rows = ledger(db)
    assert [(r["task_id"], r["mode"], r["status"]) for r in rows[1:]] == [
        ("swap", "table_swap", "published"), ("events", "partition_swap", "published"),
        ("rollback", "rollback", "published")]
    assert rows[1]["pipeline"] == "publish_ops" and rows[1]["run_id"]
    assert rows[2]["partition_start"] == START and rows[2]["partition_end"] == START + timedelta(days=1)
    uri = swap.outlets[0].uri
    assert uri == f"postgres://{warehouse_conn_id}:5432/{pg_db}/mart/daily"  # the connection's database
    assert swap.outlets[0] == table_asset(warehouse_conn_id, "mart.daily")
    extras = {e.asset.uri: e.extra for e in asset_events()}
    partition = extras[events.outlets[0].uri]
    assert (partition["partition_start"], partition["partition_end"]) == (START.isoformat(),
                                                                          (START + timedelta(days=1)).isoformat())
    assert (partition["rows"], partition["ledger_id"], partition["run_id"]) == (1, rows[2]["id"], rows[2]["run_id"])


def test_operator_construction_validates_and_never_connects():
    op = StagingSwapOperator(task_id="t", conn_id="no_such_connection", target_table="raw.x", select_sql="select 1",
                             lock_timeout="500ms")
    assert op.lock_timeout == "500ms" and op.swap_attempts == 5  # the spec's default
    assert op.outlets == [table_asset("no_such_connection", "raw.x")]
    assert op.outlets[0].uri == op.outlets[0].name == "postgres://no_such_connection:5432/no_such_connection/raw/x"
    assert StagingSwapOperator(task_id="tt", conn_id="c", target_table="{{ params.t }}", select_sql="s").outlets == []
    assert set(StagingSwapOperator.template_fields) >= {"select_sql", "target_table", "checks"}
    with pytest.raises(ValueError, match="checks\\[0\\] \\(row_count\\): unknown key 'minimum'"):
        StagingSwapOperator(task_id="t2", conn_id="c", target_table="raw.x", select_sql="select 1",
                            checks=[{"check": "row_count", "minimum": 1}])
    with pytest.raises(ValueError, match="lock_timeout"):
        StagingSwapOperator(task_id="t3", conn_id="c", target_table="raw.x", select_sql="select 1", lock_timeout="2 sec")
    with pytest.raises(ValueError, match="exactly one of select_sql or loader"):
        StagingSwapOperator(task_id="t4", conn_id="c", target_table="raw.x")
    with pytest.raises(ValueError, match="drift"):
        DataQualityOperator(task_id="t5", conn_id="c", table="raw.x", checks=[{"check": "drift", "max_change_pct": 5}])
    assert RollbackPublishOperator(task_id="t6", conn_id="c", target_table="raw.x").outlets == [
        table_asset("c", "raw.x")]


def asset_events() -> list:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    with create_session() as session:
        return list(session.scalars(select(AssetEvent).options(joinedload(AssetEvent.asset))).unique())
