"""The dashboard's failover panel (issue 17 item 2) against a real pg_auto_failover formation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from airflow_provider_dataeng.dashboard.service import formation as formation_panel
from airflow_provider_dataeng.dashboard.settings import load_settings
from devstack.airflow_env import unregister_connection
from devstack.formation import Formation, register_monitor_connection, shared_formation


@pytest.fixture(scope="module")
def formation() -> Formation:
    f = shared_formation()
    f.wait_until_stable(timeout=180)
    return f


@pytest.fixture
def monitor_conn_id(formation: Formation, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    conn_id = f"monitor_{uuid.uuid4().hex[:8]}"
    register_monitor_connection(conn_id, formation)
    monkeypatch.setenv("AIRFLOW__DATAENG__DASHBOARD_MONITOR_CONN_ID", conn_id)
    monkeypatch.setenv("AIRFLOW__DATAENG__DASHBOARD_FORMATION", formation.formation)
    yield conn_id
    unregister_connection(conn_id)


@pytest.mark.timeout(600)
def test_formation_panel_lists_the_monitors_nodes(formation: Formation, monitor_conn_id: str) -> None:
    panel = formation_panel(load_settings())
    assert panel["configured"] and "error" not in panel, panel
    states = {s["name"]: s for s in formation.states()}
    nodes = {n["name"]: n for n in panel["nodes"]}
    assert set(nodes) == set(states)
    for name, node in nodes.items():
        assert node["reported_state"] == states[name]["reported_state"]
        assert node["goal_state"] == states[name]["goal_state"]
        assert node["lag_bytes"] >= 0
    assert sorted(n["reported_state"] for n in nodes.values()) == ["primary", "secondary"]
    primary = next(n for n in nodes.values() if n["reported_state"] == "primary")
    assert primary["lag_bytes"] == 0 and primary["health"] == "good"


def test_formation_panel_without_monitor_and_with_an_unreachable_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__DATAENG__DASHBOARD_MONITOR_CONN_ID", raising=False)
    assert formation_panel(load_settings()) == {"configured": False}
    monkeypatch.setenv("AIRFLOW__DATAENG__DASHBOARD_MONITOR_CONN_ID", "no_such_monitor_conn")
    panel = formation_panel(load_settings())
    assert panel["configured"] and "no_such_monitor_conn" in panel["error"]
