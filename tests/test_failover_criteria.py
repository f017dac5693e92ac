"""Failover health arguments: bad input fails at DAG parse time with a clear error; nothing connects there."""

from __future__ import annotations

import pytest

from airflow_provider_dataeng.failover import HealthCriteria, HealthVerdict, NodeRow
from airflow_provider_dataeng.operators.failover_health import FailoverHealthOperator
from airflow_provider_dataeng.sensors.failover_health import PostgresFailoverHealthSensor
from airflow_provider_dataeng.triggers.failover_health import FailoverHealthTrigger


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "monitor_conn_id"),
        ({"monitor_conn_id": "m", "conn_id": "c"}, "exactly one"),
        ({"monitor_conn_id": "m", "min_secondaries": -1}, "min_secondaries"),
        ({"monitor_conn_id": "m", "min_secondaries": "1"}, "min_secondaries"),
        ({"monitor_conn_id": "m", "max_lag_bytes": 1.5}, "max_lag_bytes"),
        ({"monitor_conn_id": "m", "expected_sync_state": "synchronous"}, "expected_sync_state"),
        ({"monitor_conn_id": "m", "group_id": -2}, "group_id"),
        ({"monitor_conn_id": "m", "formation": ""}, "formation"),
        ({"monitor_conn_id": "m", "accept_wait_primary": "yes"}, "accept_wait_primary"),
        ({"monitor_conn_id": ""}, "monitor_conn_id"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PostgresFailoverHealthSensor(task_id="s", **kwargs)
    with pytest.raises(ValueError, match=field):
        FailoverHealthOperator(task_id="o", **kwargs)


def test_operator_rejects_non_bool_fail_on_unhealthy() -> None:
    with pytest.raises(ValueError, match="fail_on_unhealthy"):
        FailoverHealthOperator(task_id="o", monitor_conn_id="m", fail_on_unhealthy="true")


def test_construction_does_not_connect() -> None:
    # Connection ids that do not exist: building the tasks must still work (parse time, no I/O).
    sensor = PostgresFailoverHealthSensor(task_id="s", monitor_conn_id="no_such_monitor", deferrable=True)
    op = FailoverHealthOperator(task_id="o", conn_id="no_such_cluster", expected_sync_state="quorum")
    assert sensor.health_check().source == "monitor" and op.health_check().source == "replication"
    assert set(PostgresFailoverHealthSensor.template_fields) == {"monitor_conn_id", "conn_id", "formation"}


def test_trigger_serializes_round_trip() -> None:
    trigger = FailoverHealthTrigger(
        criteria=HealthCriteria(formation="wh", group_id=1, min_secondaries=2, expected_sync_state="sync").as_dict(),
        monitor_conn_id="m", poll_interval=7,
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_dataeng.triggers.failover_health.FailoverHealthTrigger"
    again = FailoverHealthTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert again.check.criteria.min_secondaries == 2 and again.check.criteria.formation == "wh"


def test_verdict_xcom_round_trip_and_table() -> None:
    verdict = HealthVerdict(
        healthy=False, source="monitor", reasons=["node2 health is bad (monitor health checks)"],
        nodes=[NodeRow("node1", "10.0.0.1", 5432, "wait_primary", "wait_primary", "good", None, "async"),
               NodeRow("node2", "10.0.0.2", 5432, "secondary", "catchingup", "bad", 3 * 1024 * 1024, None,
                       "in transition secondary -> catchingup")],
        formation="default", group_id=0,
    )
    again = HealthVerdict.from_xcom(verdict.as_xcom())
    assert again == verdict
    lines = verdict.table().splitlines()
    assert lines[0].split(" | ")[0].strip() == "node" and "3.0 MiB" in lines[3] and "10.0.0.2:5432" in lines[3]
    assert "unhealthy" in verdict.summary() and "node2 health is bad" in verdict.summary()
