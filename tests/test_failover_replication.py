"""The no-monitor health path: plain streaming replication probed host by host (PgCluster + make_standby)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from airflow_provider_dataeng.failover import FailoverHealthCheck, HealthCriteria
from airflow_provider_dataeng.failover.replication_health import check_replication_health
from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook
from airflow_provider_dataeng.triggers.failover_health import FailoverHealthTrigger
from devstack.airflow_env import register_connection, run_dag, unregister_connection
from devstack.pg import PgCluster, free_port


@pytest.fixture(scope="module")
def replicated() -> Iterator[tuple[PgCluster, PgCluster]]:
    primary = PgCluster.create("repl-primary")
    standby = None
    try:
        standby = primary.make_standby("repl-standby")
        yield primary, standby
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()


@pytest.fixture
def cluster_conn_id(replicated: tuple[PgCluster, PgCluster]) -> Iterator[str]:
    primary, standby = replicated
    conn_id = f"repl_{uuid.uuid4().hex[:8]}"
    register_connection(
        conn_id, host=f"{standby.host}:{standby.port},{primary.host}:{primary.port}", schema="postgres",
        conn_type="dataeng_postgres", extra={"target_session_attrs": "read-write", "connect_timeout": 2},
    )
    yield conn_id
    unregister_connection(conn_id)


def _check(conn_id: str, **criteria) -> object:
    return check_replication_health(FailoverPostgresHook(postgres_conn_id=conn_id), HealthCriteria(**criteria))


def _wait_caught_up(primary: PgCluster, standby: PgCluster) -> None:
    lsn = primary.psql("select pg_current_wal_lsn()")
    for _ in range(200):
        if standby.psql(f"select pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t":
            return
        time.sleep(0.05)
    raise AssertionError("standby did not catch up")


def test_primary_plus_streaming_standby_is_healthy(replicated, cluster_conn_id: str) -> None:
    primary, standby = replicated
    _wait_caught_up(primary, standby)
    verdict = _check(cluster_conn_id)
    assert verdict.healthy, verdict.report()
    assert verdict.source == "replication"
    assert verdict.primary == f"{primary.host}:{primary.port}"  # found although listed second
    assert verdict.secondaries == 1
    rows = {row.name: row for row in verdict.nodes}
    assert rows[f"{standby.host}:{standby.port}"].state == "standby"
    assert rows[f"{primary.host}:{primary.port}"].sync_state == "async"
    assert _check(cluster_conn_id, expected_sync_state="async").healthy
    sync = _check(cluster_conn_id, expected_sync_state="sync")
    assert not sync.healthy and any("'sync'" in r for r in sync.reasons), sync.reasons
    assert not _check(cluster_conn_id, min_secondaries=2).healthy


def test_replay_lag_over_threshold_is_unhealthy(replicated, cluster_conn_id: str) -> None:
    primary, standby = replicated
    standby.psql("select pg_wal_replay_pause()")
    try:
        primary.psql("create table if not exists lagger as select g, repeat('x', 100) as pad from generate_series(1, 50000) g")
        primary.psql("insert into lagger select g, repeat('y', 100) from generate_series(1, 50000) g")
        verdict = _check(cluster_conn_id, max_lag_bytes=1024 * 1024)
        assert not verdict.healthy
        assert any("behind the primary" in r for r in verdict.reasons), verdict.reasons
        lagging = [row for row in verdict.nodes if row.state == "standby"][0]
        assert lagging.lag_bytes is not None and lagging.lag_bytes > 1024 * 1024
        assert _check(cluster_conn_id, max_lag_bytes=1024 * 1024 * 1024).healthy  # same lag, looser threshold
    finally:
        standby.psql("select pg_wal_replay_resume()")
        primary.psql("drop table if exists lagger")
    _wait_caught_up(primary, standby)
    assert _check(cluster_conn_id, max_lag_bytes=1024 * 1024).healthy


def test_stopped_standby_is_unreachable_and_unhealthy(replicated, cluster_conn_id: str) -> None:
    primary, standby = replicated
    standby.stop()
    try:
        verdict = _check(cluster_conn_id)
        assert not verdict.healthy
        assert any(f"{standby.port} is unreachable" in r for r in verdict.reasons), verdict.reasons
        assert any("streaming walsender" in r for r in verdict.reasons), verdict.reasons
        assert verdict.primary == f"{primary.host}:{primary.port}"
        assert _check(cluster_conn_id, min_secondaries=0).reasons == [
            r for r in verdict.reasons if "unreachable" in r
        ]
    finally:
        standby.start()
    for _ in range(100):
        if _check(cluster_conn_id).healthy:
            break
        time.sleep(0.1)
    assert _check(cluster_conn_id).healthy


def test_two_primaries_are_flagged(replicated, cluster_conn_id: str) -> None:
    primary, _ = replicated
    other = PgCluster.create("repl-other")
    try:
        conn_id = f"split_{uuid.uuid4().hex[:6]}"
        register_connection(conn_id, host=f"{primary.host}:{primary.port},{other.host}:{other.port}",
                            schema="postgres", conn_type="dataeng_postgres")
        verdict = _check(conn_id, min_secondaries=0)
        assert not verdict.healthy and verdict.primary is None
        assert any("2 hosts are primaries" in r for r in verdict.reasons), verdict.reasons
        unregister_connection(conn_id)
    finally:
        other.destroy()


def test_sensor_and_operator_without_monitor(replicated, cluster_conn_id: str) -> None:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_dataeng.operators.failover_health import FailoverHealthOperator
    from airflow_provider_dataeng.sensors.failover_health import PostgresFailoverHealthSensor

    primary, standby = replicated
    _wait_caught_up(primary, standby)
    dag_id = f"failover_direct_{uuid.uuid4().hex[:6]}"
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
        PostgresFailoverHealthSensor(task_id="wait", conn_id=cluster_conn_id, poke_interval=1, timeout=60)
        FailoverHealthOperator(task_id="strict_sync", conn_id=cluster_conn_id, expected_sync_state="sync",
                               fail_on_unhealthy=True)
    states = run_dag(dag)
    assert states == {"wait": "success", "strict_sync": "failed"}, states

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.key == "failover_health").all()
        values = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    assert values["wait"]["healthy"] is True and values["wait"]["source"] == "replication"
    assert values["strict_sync"]["healthy"] is False
    assert {n["state"] for n in values["strict_sync"]["nodes"]} == {"primary", "standby"}


def test_polling_trigger_without_monitor(replicated, cluster_conn_id: str) -> None:
    trigger = FailoverHealthTrigger(criteria=HealthCriteria().as_dict(), conn_id=cluster_conn_id, poll_interval=0.5)

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    payload = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    assert payload["status"] == "healthy" and payload["verdict"]["source"] == "replication"


def test_connection_level_probe_errors_do_not_raise(replicated) -> None:
    """An unreachable host is a row in the verdict, not an exception (the cluster may still be healthy)."""
    primary, _ = replicated
    conn_id = f"partial_{uuid.uuid4().hex[:6]}"
    register_connection(conn_id, host=f"{primary.host}:{primary.port},127.0.0.1:{free_port()}", schema="postgres",
                        conn_type="dataeng_postgres")
    try:
        verdict = FailoverHealthCheck(criteria=HealthCriteria(min_secondaries=0), conn_id=conn_id).evaluate()
    finally:
        unregister_connection(conn_id)
    assert not verdict.healthy
    assert [r for r in verdict.reasons if "unreachable" in r]
    assert verdict.primary == f"{primary.host}:{primary.port}"
