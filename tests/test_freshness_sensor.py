"""FreshnessSensor in real Airflow runs (``dag.test()``) against real PostgreSQL.

One DAG run covers the poke-mode outcomes (fresh, warn, error at timeout, empty, missing column); another
defers to the FreshnessTrigger (run in-process by Airflow 3.3's ``dag.test``) and resumes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest

from devstack.airflow_env import register_cluster_connection, run_dag, unregister_connection
from devstack.webhook_receiver import webhook_receiver

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def xcoms(dag_id: str) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.key == "return_value")
        return {row.task_id: row.value for row in rows}


def durations(dag_id: str) -> dict[str, float]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: ti.duration or 0.0 for ti in session.query(TaskInstance).filter_by(dag_id=dag_id)}


@pytest.fixture(scope="module")
def sync_run(pg_cluster) -> Iterator[dict[str, Any]]:
    """Run one DAG with a poke-mode sensor per outcome; yield states, XComs, durations and webhook payloads."""
    from airflow.sdk import DAG

    from airflow_provider_dataeng.notifications import SlaWebhookNotifier
    from airflow_provider_dataeng.sensors.freshness import FreshnessSensor

    db = f"fresh_{uuid.uuid4().hex[:8]}"
    conn_id = f"wh_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(db)
    register_cluster_connection(conn_id, pg_cluster, db)
    with psycopg.connect(pg_cluster.dsn(db), autocommit=True) as conn:
        conn.execute("create schema raw")
        for name, age in (("fresh", "5 minutes"), ("lagging", "2 hours"), ("stale", "8 hours"), ("empty", None)):
            conn.execute(f"create table raw.{name} (id bigserial, loaded_at timestamptz)")
            conn.execute(f"create index on raw.{name} (loaded_at)")
            if age:
                conn.execute(f"insert into raw.{name} (loaded_at) values (now() - interval '{age}')")
    dag_id = f"freshness_sync_{uuid.uuid4().hex[:6]}"
    try:
        with webhook_receiver() as hook_rx:
            common = dict(
                conn_id=conn_id, timestamp_column="loaded_at", warn_after="1h", error_after="6h", poke_interval=0.5,
                timeout=2, mode="poke", deferrable=False,
                notifier=SlaWebhookNotifier(webhook_url=hook_rx.url + "/hooks/sla"),
            )
            with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
                FreshnessSensor(task_id="fresh", table="raw.fresh", **common)
                FreshnessSensor(task_id="lagging", table="raw.lagging", **common)
                FreshnessSensor(task_id="stale", table="raw.stale", **common)
                FreshnessSensor(task_id="empty", table="raw.empty", **common)
                FreshnessSensor(task_id="no_column", table="raw.fresh", **{**common, "timestamp_column": "synced_at",
                                                                          "timeout": 60})
            states = run_dag(dag)
            yield {
                "states": states, "xcoms": xcoms(dag_id), "durations": durations(dag_id),
                "payloads": hook_rx.payloads(), "dag_id": dag_id,
            }
    finally:
        unregister_connection(conn_id)
        pg_cluster.drop_database(db)


def payload_for(run: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [p for p in run["payloads"] if p["table"] == table]


def test_fresh_table_succeeds_and_pushes_xcom(sync_run):
    assert sync_run["states"]["fresh"] == "success"
    x = sync_run["xcoms"]["fresh"]
    assert x["status"] == "fresh" and 290 <= x["lag_seconds"] <= 400
    assert datetime.fromisoformat(x["max_loaded_at"]).tzinfo is not None
    assert payload_for(sync_run, "raw.fresh") == []  # no notification when fresh


def test_past_warn_succeeds_with_a_warning_notification(sync_run):
    assert sync_run["states"]["lagging"] == "success"
    assert sync_run["xcoms"]["lagging"]["status"] == "warn"
    (payload,) = payload_for(sync_run, "raw.lagging")
    assert payload["status"] == "warn" and payload["threshold"] == "1h"
    assert payload["sla"] == "warn after 1h, error after 6h"
    assert payload["dag_id"] == sync_run["dag_id"] and payload["run_id"] and payload["task_id"] == "lagging"
    assert "raw.lagging" in payload["text"] and "lag 2h" in payload["text"]


def test_past_error_waits_until_timeout_then_fails_with_a_breach_notification(sync_run):
    assert sync_run["states"]["stale"] == "failed"
    assert sync_run["durations"]["stale"] >= 2.0  # kept poking until the sensor timeout
    assert sync_run["xcoms"]["stale"]["status"] == "error"
    assert 8 * 3600 - 60 <= sync_run["xcoms"]["stale"]["lag_seconds"] <= 8 * 3600 + 120
    (payload,) = payload_for(sync_run, "raw.stale")
    assert payload["status"] == "error" and payload["threshold"] == "6h"
    assert payload["max_loaded_at"] == sync_run["xcoms"]["stale"]["max_loaded_at"]
    assert "lag 8h" in payload["text"] and "SLA: warn after 1h, error after 6h" in payload["text"]


def test_empty_table_waits_then_fails_saying_it_is_empty(sync_run):
    assert sync_run["states"]["empty"] == "failed"
    assert sync_run["durations"]["empty"] >= 2.0
    assert sync_run["xcoms"]["empty"] == {"max_loaded_at": None, "lag_seconds": None, "status": "error"}
    (payload,) = payload_for(sync_run, "raw.empty")
    assert payload["status"] == "error" and "table is empty" in payload["text"]


def test_missing_column_fails_immediately(sync_run):
    assert sync_run["states"]["no_column"] == "failed"
    assert sync_run["durations"]["no_column"] < 30  # timeout was 60s: it did not wait
    assert "no_column" not in sync_run["xcoms"]


# -- deferrable ------------------------------------------------------------------------------------
@pytest.fixture
def events_table(pg_cluster, pg_db) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        conn.execute("create schema raw")
        conn.execute("create table raw.events (id bigserial, loaded_at timestamptz)")
        conn.execute("create index on raw.events (loaded_at)")
        conn.execute("insert into raw.events (loaded_at) values (now() - interval '9 hours')")
        yield conn


def test_deferrable_sensor_defers_and_resumes_when_data_arrives(events_table, warehouse_conn_id, pg_cluster, pg_db,
                                                              capfd, caplog):
    from airflow.sdk import DAG

    from airflow_provider_dataeng.sensors.freshness import FreshnessSensor

    dag_id = f"freshness_defer_{uuid.uuid4().hex[:6]}"
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        FreshnessSensor(
            task_id="wait_fresh", conn_id=warehouse_conn_id, table="raw.events", timestamp_column="loaded_at",
            warn_after="30m", error_after="6h", poke_interval=0.5, timeout=60, deferrable=True,
        )

    def load_later() -> None:  # the "pipeline" lands fresh data while the sensor is deferred
        time.sleep(3)
        with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
            conn.execute("insert into raw.events (loaded_at) values (now())")

    loader = threading.Thread(target=load_later)
    loader.start()
    try:
        states = run_dag(dag)
    finally:
        loader.join()
    out = capfd.readouterr()
    text = out.out + out.err + caplog.text
    assert states == {"wait_fresh": "success"}
    assert "deferring: the triggerer polls every 500ms" in text
    assert "[DAG TEST] running trigger in line" in text  # Airflow ran our trigger, then resumed the task
    x = xcoms(dag_id)["wait_fresh"]
    assert x["status"] == "fresh" and x["lag_seconds"] < 60


def test_deferrable_sensor_fails_with_the_breach_at_timeout(events_table, warehouse_conn_id, capfd, caplog):
    from airflow.sdk import DAG

    from airflow_provider_dataeng.sensors.freshness import FreshnessSensor

    dag_id = f"freshness_defer_fail_{uuid.uuid4().hex[:6]}"
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        FreshnessSensor(
            task_id="wait_fresh", conn_id=warehouse_conn_id, table="raw.events", timestamp_column="loaded_at",
            error_after="6h", poke_interval=0.5, timeout=2, deferrable=True,
        )
    states = run_dag(dag)
    out = capfd.readouterr()
    text = out.out + out.err + caplog.text
    assert states == {"wait_fresh": "failed"}
    assert "[DAG TEST] running trigger in line" in text
    assert "Freshness SLA breached" in text and "exceeds error_after 6h" in text
    assert xcoms(dag_id)["wait_fresh"]["status"] == "error"


def test_deferrable_defaults_to_airflow_config():
    from airflow.providers.common.compat.sdk import conf

    from airflow_provider_dataeng.sensors.freshness import FreshnessSensor

    default = FreshnessSensor(task_id="t", conn_id="c", table="raw.t", timestamp_column="ts", error_after="1h")
    assert default.deferrable is conf.getboolean("operators", "default_deferrable", fallback=False)
    explicit = FreshnessSensor(task_id="u", conn_id="c", table="raw.t", timestamp_column="ts", error_after="1h",
                               deferrable=not default.deferrable)
    assert explicit.deferrable is not default.deferrable


def test_bad_config_fails_at_parse_time_naming_the_field():
    from airflow_provider_dataeng.sensors.freshness import FreshnessSensor

    with pytest.raises(ValueError, match="warn_after"):
        FreshnessSensor(task_id="t", conn_id="c", table="raw.t", timestamp_column="ts", warn_after="soon")
    with pytest.raises(ValueError, match="exactly one of timestamp_column or loaded_at_query"):
        FreshnessSensor(task_id="t", conn_id="c", table="raw.t", error_after="1h")
    with pytest.raises(ValueError, match="warn_after and/or error_after"):
        FreshnessSensor(task_id="t", conn_id="c", table="raw.t", timestamp_column="ts")
    with pytest.raises(ValueError, match="table"):
        FreshnessSensor(task_id="t", conn_id="c", table="a.b.c", timestamp_column="ts", error_after="1h")
