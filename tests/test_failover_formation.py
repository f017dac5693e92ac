"""PgAutoFailoverHook, health classification, sensor/operator/trigger against a real pg_auto_failover formation.

One formation is shared by all failover test modules (devstack.formation.shared_formation); every
test that disturbs it leaves it stable (one primary, one secondary) again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest

from airflow_provider_dataeng.failover import FailoverHealthCheck, HealthCriteria
from airflow_provider_dataeng.failover.formation_health import check_formation_health
from airflow_provider_dataeng.hooks.pg_auto_failover import (
    FormationNotFoundError,
    MonitorUnreachableError,
    NodeState,
    PgAutoFailoverHook,
)
from airflow_provider_dataeng.triggers.failover_health import FailoverHealthTrigger
from devstack.airflow_env import register_connection, run_dag, unregister_connection
from devstack.formation import Formation, register_monitor_connection, shared_formation
from devstack.pg import free_port


@pytest.fixture(scope="module")
def formation() -> Formation:
    f = shared_formation()
    f.wait_until_stable(timeout=180)
    return f


@pytest.fixture
def monitor_conn_id(formation: Formation):
    conn_id = f"monitor_{uuid.uuid4().hex[:8]}"
    register_monitor_connection(conn_id, formation, application_name=conn_id)
    yield conn_id
    unregister_connection(conn_id)


@pytest.fixture
def hook(monitor_conn_id: str) -> PgAutoFailoverHook:
    return PgAutoFailoverHook(monitor_conn_id=monitor_conn_id)


def _criteria(**kw) -> HealthCriteria:
    return HealthCriteria(**kw)


def _once_listening(formation: Formation, application_names: set[str], action) -> threading.Thread:
    """Run ``action()`` as soon as a session named one of ``application_names`` LISTENs on the monitor (the
    sensor has deferred and its trigger waits), so that only a notification can wake the trigger in time.

    The thread's ``listening`` says whether it saw that session; without it the action runs at the deadline
    (the formation must be restored either way) and the test must fail, not wait on and pass."""
    import psycopg

    def run() -> None:
        deadline = time.monotonic() + 180
        try:
            while time.monotonic() < deadline:
                with psycopg.connect(formation.monitor_dsn) as conn:
                    listening = conn.execute(
                        "select count(*) from pg_stat_activity where application_name = any(%s) "
                        "and query ilike 'listen%%'", (sorted(application_names),),
                    ).fetchone()[0]
                if listening:
                    thread.listening = True
                    time.sleep(1.0)
                    return
                time.sleep(0.2)
        finally:
            action()

    thread = threading.Thread(target=run, daemon=True)
    thread.listening = False  # type: ignore[attr-defined]
    thread.start()
    return thread


def _trigger_session_names(monitor_conn_id: str, dag_id: str | None = None, task_id: str | None = None) -> set[str]:
    """The application_name a FailoverHealthTrigger's LISTEN session can have: ``<dag>/<task> (triggerer)``
    for a task's trigger, else what the provider's connect() gives this process (the running task, the
    connection's ``application_name`` extra, the provider's name)."""
    from airflow_provider_dataeng.connections import connect

    names = {connect(monitor_conn_id, role="monitor").application_name, monitor_conn_id}
    if dag_id and task_id:
        names |= {f"{dag_id}/{task_id} (triggerer)", f"{dag_id}/{task_id}"}
    return names


def _stable_again(formation: Formation) -> None:
    for node in formation.nodes:
        formation.start_node(node)
    formation.wait_until_stable(timeout=180)


# -- state reading -------------------------------------------------------------------------------------
def test_node_states_are_typed_and_match_the_formation(formation: Formation, hook: PgAutoFailoverHook) -> None:
    states = hook.get_node_states("default", 0)
    assert [s.name for s in states] == [n.name for n in formation.nodes]
    assert all(isinstance(s, NodeState) for s in states)
    by_name = {s.name: s for s in states}
    for node in formation.nodes:
        assert (by_name[node.name].host, by_name[node.name].port) == (node.host, node.port)
    primary_name = formation.primary().name
    assert sorted(s.reported_state for s in states) == ["primary", "secondary"]
    assert by_name[primary_name].reported_state == by_name[primary_name].goal_state == "primary"
    assert all(s.health == 1 and s.health_label == "good" and s.pg_running for s in states)
    # a 2-node formation replicates with a quorum of 1 (synchronous_standby_names = ANY 1 (...))
    assert by_name[primary_name].reported_rep_state == "quorum"
    assert all(isinstance(s.reported_lsn_bytes, int) and s.reported_lsn_bytes > 0 for s in states)
    assert all(s.report_age_s is not None and s.report_age_s < 15 for s in states)


def test_primary_uri_and_events(formation: Formation, hook: PgAutoFailoverHook) -> None:
    primary = hook.get_primary()
    assert primary is not None and primary.name == formation.primary().name
    assert hook.formation_uri() == formation.formation_uri
    assert "target_session_attrs=read-write" in hook.formation_uri()
    events = hook.last_events(count=50)
    assert 0 < len(events) <= 50
    assert [e.event_id for e in events] == sorted(e.event_id for e in events)  # oldest first
    assert any(e.reported_state == "primary" and e.node_name == primary.name for e in events)
    assert all(e.formation == "default" and e.description for e in events)


def test_unknown_formation_is_a_clear_error(hook: PgAutoFailoverHook) -> None:
    with pytest.raises(FormationNotFoundError, match="formation='nope'"):
        hook.get_node_states("nope", 0)


def test_monitor_unreachable_gives_a_clear_error() -> None:
    conn_id = f"dead_monitor_{uuid.uuid4().hex[:6]}"
    port = free_port()  # nothing listens there
    register_connection(conn_id, host="127.0.0.1", port=port, login="autoctl_node", password="s3cr3t-pw",
                        schema="pg_auto_failover", conn_type="pg_auto_failover", extra={"connect_deadline": 1})
    try:
        with pytest.raises(MonitorUnreachableError) as info:
            PgAutoFailoverHook(monitor_conn_id=conn_id).get_node_states()
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message and conn_id in message and "monitor" in message
        assert "s3cr3t-pw" not in message
        check = FailoverHealthCheck(criteria=HealthCriteria(), monitor_conn_id=conn_id)
        with pytest.raises(MonitorUnreachableError):
            check.evaluate()
    finally:
        unregister_connection(conn_id)


# -- classification of real states ----------------------------------------------------------------------
def test_stable_formation_is_healthy(formation: Formation, hook: PgAutoFailoverHook) -> None:
    verdict = check_formation_health(hook, _criteria())
    assert verdict.healthy, verdict.report()
    assert verdict.primary == formation.primary().name and verdict.secondaries == 1
    assert verdict.reasons == []
    table = verdict.table()
    for node in formation.nodes:
        assert node.name in table and str(node.port) in table
    assert check_formation_health(hook, _criteria(expected_sync_state="quorum")).healthy


def test_sync_state_and_secondary_count_are_enforced(hook: PgAutoFailoverHook) -> None:
    verdict = check_formation_health(hook, _criteria(expected_sync_state="sync"))
    assert not verdict.healthy
    assert any("'quorum'" in r and "'sync'" in r for r in verdict.reasons), verdict.reasons
    verdict = check_formation_health(hook, _criteria(min_secondaries=2))
    assert not verdict.healthy
    assert any("at least 2 required" in r for r in verdict.reasons), verdict.reasons


def test_stopped_secondary_puts_primary_in_wait_primary(formation: Formation, monitor_conn_id: str) -> None:
    """Real states: the secondary stops, the primary goes wait_primary; the sensor (deferred, woken by the
    monitor's NOTIFY on channel ``state``) succeeds once the secondary is back."""
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_dataeng.operators.failover_health import FailoverHealthOperator
    from airflow_provider_dataeng.sensors.failover_health import PostgresFailoverHealthSensor

    hook = PgAutoFailoverHook(monitor_conn_id=monitor_conn_id)
    primary = formation.primary()
    secondary = formation.secondaries()[0]
    try:
        formation.stop_node(secondary)
        formation.wait_for_state({primary.name: "wait_primary"}, timeout=120)

        verdict = check_formation_health(hook, _criteria())
        assert not verdict.healthy
        assert verdict.primary is None
        assert any("wait_primary" in r and "accept_wait_primary" in r for r in verdict.reasons), verdict.reasons
        assert any(secondary.name in r for r in verdict.reasons), verdict.reasons
        rows = {row.name: row for row in verdict.nodes}
        assert rows[primary.name].state == "wait_primary"
        assert rows[secondary.name].health == "bad"

        # Degraded mode accepted explicitly: a writable primary without secondaries is fine.
        degraded = check_formation_health(hook, _criteria(accept_wait_primary=True, min_secondaries=0))
        assert degraded.primary == primary.name
        assert not degraded.healthy  # the stopped secondary itself still has bad health
        assert all(secondary.name in r for r in degraded.reasons), degraded.reasons

        # The reporting operator reports (and does not fail) ...
        with DAG(f"failover_report_{uuid.uuid4().hex[:6]}", schedule=None,
                 start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
            report = FailoverHealthOperator(task_id="report", monitor_conn_id=monitor_conn_id)
            strict = FailoverHealthOperator(task_id="strict", monitor_conn_id=monitor_conn_id, fail_on_unhealthy=True)
            wait = PostgresFailoverHealthSensor(
                task_id="wait_healthy", monitor_conn_id=monitor_conn_id, deferrable=True,
                poke_interval=3600, timeout=300,  # only a NOTIFY can wake it in time
                trigger_rule="all_done",
            )
            [report, strict] >> wait
        restarter = _once_listening(formation, _trigger_session_names(monitor_conn_id, dag.dag_id, wait.task_id),
                                    lambda: formation.start_node(secondary))
        try:
            states = run_dag(dag)
        finally:
            restarter.join()
        assert restarter.listening, "the deferred sensor's trigger never LISTENed on the monitor"
        assert states == {"report": "success", "strict": "failed", "wait_healthy": "success"}, states
    finally:
        _stable_again(formation)
    assert check_formation_health(hook, _criteria()).healthy


def test_trigger_wakes_on_monitor_notifications(formation: Formation, monitor_conn_id: str) -> None:
    """The trigger LISTENs on the monitor's ``state`` channel: with a one-hour poll interval it still
    answers right after the formation recovers, and counts the notifications that woke it."""
    secondary = formation.secondaries()[0]
    primary = formation.primary()
    trigger = FailoverHealthTrigger(criteria=HealthCriteria().as_dict(), monitor_conn_id=monitor_conn_id,
                                    poll_interval=3600)
    assert FailoverHealthTrigger(**trigger.serialize()[1]).serialize() == trigger.serialize()

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    try:
        formation.enable_maintenance(secondary)  # the primary goes wait_primary
        formation.wait_for_state({primary.name: "wait_primary", secondary.name: "maintenance"}, timeout=120)
        waker = _once_listening(formation, _trigger_session_names(monitor_conn_id),
                                lambda: formation.disable_maintenance(secondary))
        payload = asyncio.run(asyncio.wait_for(first_event(), timeout=240))
        waker.join()
        assert waker.listening, "the trigger never LISTENed on the monitor"
    finally:
        with contextlib.suppress(Exception):
            formation.disable_maintenance(secondary)
        _stable_again(formation)
    assert payload["status"] == "healthy", payload
    assert payload["verdict"]["healthy"] and payload["verdict"]["secondaries"] == 1
    assert payload["notifications"] >= 1 and payload["checks"] >= 2


def test_switchover_moves_the_primary(formation: Formation, hook: PgAutoFailoverHook) -> None:
    before = formation.primary().name
    formation.perform_switchover()
    formation.wait_until_stable(timeout=120)
    after = hook.get_primary()
    assert after is not None and after.name != before
    verdict = check_formation_health(hook, _criteria())
    assert verdict.healthy and verdict.primary == after.name, verdict.report()
    recent = hook.last_events(count=30)
    assert any(e.node_name == before and e.reported_state == "secondary" for e in recent)
