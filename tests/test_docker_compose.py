"""Structural checks of docker-compose.yaml and the Dockerfile (no Docker engine runs here).

What a user relies on: every service can be built or pulled, reports health, starts only after what it
needs is healthy (or, for one-shot jobs, finished), and Airflow gets the connections the example configs
use, pointing at the right services.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yaml"
CONFIGS = REPO / "dags" / "configs"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
ONE_SHOT = ("airflow-init", "shop-seed")
DATABASES = ("airflow-db", "source-db", "pgaf-monitor", "pgaf-node1", "pgaf-node2")
VALID_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def interpolate(text: str) -> str:
    """Resolve compose's ``${VAR:-default}`` / ``${VAR}`` the way an empty environment would."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def config_conn_ids() -> set[str]:
    """Every ``*conn_id`` value in the example configs (templated values excluded)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.endswith("conn_id") and isinstance(value, str) \
                        and "{{" not in value:
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted(CONFIGS.glob("*.y*ml")):
        walk(yaml.safe_load(path.read_text()))
    return found


def connections(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{conn_id: parsed JSON}`` from the service's ``AIRFLOW_CONN_*`` variables."""
    out = {}
    for key, value in env_of(service).items():
        if key.startswith("AIRFLOW_CONN_"):
            out[key.removeprefix("AIRFLOW_CONN_").lower()] = json.loads(value)
    return out


def test_every_service_has_an_image_or_build_and_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    expected = {*AIRFLOW_SERVICES, *ONE_SHOT, *DATABASES}
    assert expected <= set(services), f"missing services: {expected - set(services)}"
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), f"{name}: neither image nor build"
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {check['test']!r}"


def test_depends_on_targets_exist_and_graph_is_acyclic(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dep, condition in depends_on(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert condition in VALID_CONDITIONS, f"{name} -> {dep}: condition {condition!r}"
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy: no healthcheck"
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        assert state.get(node) != 1, f"depends_on cycle: {' -> '.join([*path, node])}"
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in depends_on(services[node]):
            visit(dep, [*path, node])
        state[node] = 2

    for name in services:
        visit(name, [])


def test_airflow_starts_after_databases_formation_and_init(services: dict[str, dict[str, Any]]) -> None:
    for name in AIRFLOW_SERVICES:
        deps = depends_on(services[name])
        for db in DATABASES:
            assert deps.get(db) == "service_healthy", f"{name} must wait for {db} to be healthy"
        assert deps.get("airflow-init") == "service_completed_successfully", name
    for name in ("airflow-scheduler", "airflow-triggerer"):  # tasks talk to the execution API
        assert depends_on(services[name]).get("airflow-apiserver") == "service_healthy", name
    assert depends_on(services["airflow-init"]) == {"airflow-db": "service_healthy"}
    assert depends_on(services["shop-seed"]) == {"source-db": "service_healthy"}
    assert depends_on(services["pgaf-node1"]).get("pgaf-monitor") == "service_healthy"
    node2 = depends_on(services["pgaf-node2"])
    assert node2.get("pgaf-monitor") == "service_healthy"
    assert node2.get("pgaf-node1") == "service_healthy", "node2 joins after node1 so node1 is the first primary"


def test_airflow_services_share_image_commands_and_mounts(services: dict[str, dict[str, Any]]) -> None:
    commands = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
    for name, command in commands.items():
        svc = services[name]
        assert svc["build"]["dockerfile"] == "Dockerfile" and svc["image"] == services["airflow-init"]["image"]
        assert svc["command"] == command
        env = env_of(svc)
        dags_folder = env["AIRFLOW__CORE__DAGS_FOLDER"]
        mounts = {m.split(":")[0]: m.split(":")[1] for m in svc["volumes"]}
        assert mounts.get("./dags") == dags_folder, f"{name}: dags/ (with configs) not mounted at {dags_folder}"
        assert mounts.get("./dbt_project") == str(Path(dags_folder).parent / "dbt_project"), (
            f"{name}: dbt_project/ must sit where the configs' relative project_dir points"
        )
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
        assert "airflow-db" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    init = " ".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init and "parse_project" in init


def test_connections_match_the_configs_and_point_at_the_right_services(
    services: dict[str, dict[str, Any]],
) -> None:
    used = config_conn_ids()
    assert used, f"no *conn_id values found in {CONFIGS}"
    for name in AIRFLOW_SERVICES:
        conns = connections(services[name])
        assert used <= set(conns), f"{name}: configs use {sorted(used - set(conns))} but compose does not define them"
    conns = connections(services["airflow-scheduler"])

    source = conns["shop_source"]
    source_env = env_of(services["source-db"])
    assert (source["host"], source["schema"], source["login"], source["password"]) == (
        "source-db", source_env["POSTGRES_DB"], source_env["POSTGRES_USER"], source_env["POSTGRES_PASSWORD"])

    warehouse = conns["warehouse"]
    node_hosts = [services[n]["hostname"] for n in ("pgaf-node1", "pgaf-node2")]
    assert warehouse["host"].split(",") == [f"{h}:5432" for h in node_hosts]
    assert warehouse["extra"]["target_session_attrs"] == "read-write"
    for node in ("pgaf-node1", "pgaf-node2"):
        cmd = services[node]["command"]
        assert f"--dbname={warehouse['schema']}" in cmd, f"{node} must serve database {warehouse['schema']}"
        assert f"--hostname={services[node]['hostname']}" in cmd
        assert any(a.startswith("--monitor=postgres://autoctl_node@pgaf-monitor:5432/pg_auto_failover")
                   for a in cmd)

    monitor = conns["warehouse_monitor"]
    assert monitor["conn_type"] == "pg_auto_failover"
    assert (monitor["host"], monitor["schema"], monitor["login"]) == (
        services["pgaf-monitor"]["hostname"], "pg_auto_failover", "autoctl_node")
    assert services["pgaf-monitor"]["command"][:3] == ["pg_autoctl", "create", "monitor"]


def test_dockerfile_builds_from_airflow_3_with_constraints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    image = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)", dockerfile, re.M).group(1)
    pinned = re.search(r"^apache-airflow==(\S+)", (REPO / "constraints.txt").read_text(), re.M).group(1)
    assert image == f"apache/airflow:{pinned}-python3.11", "the image's Airflow must match constraints.txt"
    assert re.search(r"pip install .*-c constraints\.txt", dockerfile)
    pgaf = (REPO / "docker" / "pg_auto_failover" / "Dockerfile").read_text()
    assert "postgresql-15-auto-failover" in pgaf and "pg-auto-failover-cli" in pgaf
