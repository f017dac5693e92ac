"""Issue 16 item 3: a pipeline config chooses how its dbt runs, and each way is built from the config and run
(or, for the pod, checked with the kubernetes client's own models: no API server here).

- in-process (default): DbtOperator runs dbt's ``dbtRunner`` in the Airflow task;
- ``dbt_executable_path``: DbtOperator runs that dbt executable (a dbt installed in another virtualenv);
- ``pod:``: every rendered task is a DbtKubernetesPodOperator running dbt in its own pod of ``pod.image``.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from airflow_provider_dataeng.factory.folder import build_dags
from airflow_provider_dataeng.operators.dbt import DbtOperator
from airflow_provider_dataeng.operators.dbt_pod import PROFILES_ENV, DbtKubernetesPodOperator
from devstack.airflow_env import (
    register_cluster_connection,
    register_connection,
    run_dag,
    unregister_connection,
)
from tests.fixtures import dbt_shop
from tests.fixtures.dbt_manifest import example_manifest

SECRET = "pod-Pw-not-in-the-spec"


def _config(dag_id: str, conn_id: str, **dbt: object) -> str:
    return yaml.safe_dump({
        "dag_id": dag_id, "schedule": None, "start_date": "2024-01-01", "retries": 0,
        "resources": {"cpu": "750m", "memory": "768Mi"},
        "tasks": {"dbt": {"type": "dbt", "conn_id": conn_id, "project_dir": str(dbt_shop.PROJECT_DIR),
                          "manifest_path": str(example_manifest()), "select": ["stg_products", "dim_products"],
                          **dbt}},
    }, sort_keys=False)


@pytest.fixture
def configs(tmp_path: Path, pg_cluster, pg_db):
    dbt_shop.create_raw_tables(pg_cluster, pg_db)
    local_conn, pod_conn = f"dbt_modes_{uuid.uuid4().hex[:8]}", f"dbt_modes_pod_{uuid.uuid4().hex[:8]}"
    register_cluster_connection(local_conn, pg_cluster, pg_db)
    register_connection(pod_conn, host="pg-node-1:5432,pg-node-2:5432", login="etl", password=SECRET,
                        schema="warehouse", extra={"target_session_attrs": "read-write"})
    # "another virtualenv": a dbt executable that records each call, then runs the real dbt CLI
    wrapper = tmp_path / "venv" / "bin" / "dbt"
    wrapper.parent.mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {calls}\nexec {Path(sys.executable).with_name("dbt")} "$@"\n')
    wrapper.chmod(0o755)
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "in_process.yaml").write_text(_config("dbt_in_process", local_conn, state_dir=str(tmp_path / "s1")))
    (folder / "venv.yaml").write_text(_config("dbt_venv", local_conn, dbt_executable_path=str(wrapper),
                                              state_dir=str(tmp_path / "s2")))
    (folder / "pod.yaml").write_text(_config("dbt_pod", pod_conn, pod={
        "image": "registry.example/dbt-shop:1.4", "namespace": "data", "project_dir": "/opt/dbt/shop",
        "key_ref": {"name": "warehouse-dbt", "key": "pw"}, "labels": {"team": "data"}}))
    try:
        yield folder, calls
    finally:
        unregister_connection(local_conn)
        unregister_connection(pod_conn)


def _tasks(dag) -> dict[str, object]:
    return {t.task_id.split(".", 1)[-1]: t for t in dag.tasks}


def test_in_process_and_another_virtualenv_run_from_the_config(configs, pg_cluster, pg_db) -> None:
    folder, calls = configs
    result = build_dags(folder)
    assert not result.errors, {str(p): e.format() for p, e in result.errors.items()}

    in_process = _tasks(result.dags["dbt_in_process"])
    assert set(in_process) == {"stg_products", "dim_products"}
    assert all(type(t) is DbtOperator and not t.use_subprocess and t.dbt_executable_path is None
               for t in in_process.values())
    assert run_dag(result.dags["dbt_in_process"]) == {"dbt.stg_products": "success", "dbt.dim_products": "success"}
    assert dbt_shop.query(pg_cluster, pg_db, "select count(*) from analytics.dim_products") == [(2,)]
    assert not calls.exists()  # in-process: the executable was never run

    venv = _tasks(result.dags["dbt_venv"])
    assert all(type(t) is DbtOperator and t.dbt_executable_path for t in venv.values())
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        conn.execute("drop schema analytics cascade")  # the second way builds it again
    assert run_dag(result.dags["dbt_venv"]) == {"dbt.stg_products": "success", "dbt.dim_products": "success"}
    assert calls.read_text().split() == ["build", "build"]  # one dbt build per model task, by that executable
    assert dbt_shop.query(pg_cluster, pg_db, "select count(*) from analytics.dim_products") == [(2,)]


def test_a_pod_config_builds_pods_the_kubernetes_models_accept(configs) -> None:
    from kubernetes.client import ApiClient, Configuration, V1Pod

    folder, _ = configs
    result = build_dags(folder)
    assert not result.errors, {str(p): e.format() for p, e in result.errors.items()}
    tasks = _tasks(result.dags["dbt_pod"])
    assert set(tasks) == {"stg_products", "dim_products"}
    assert tasks["stg_products"].task_id in tasks["dim_products"].upstream_task_ids  # the manifest's edge
    for name, op in tasks.items():
        assert type(op) is DbtKubernetesPodOperator
        schema = "analytics_staging" if name.startswith("stg") else "analytics"
        assert [a.uri.rsplit("/", 3)[1:] for a in op.outlets] == [["warehouse", schema, name]]  # same Assets
        pod = op.build_pod_request_obj(dry_run=True)
        client = ApiClient()
        data = client.sanitize_for_serialization(pod)
        assert SECRET not in json.dumps(data)
        # the kubernetes client's own models validate it (required fields, types), as the API server would
        strict = Configuration()
        strict.client_side_validation = True
        client.configuration = strict
        checked = client._ApiClient__deserialize(data, "V1Pod")
        assert isinstance(checked, V1Pod) and client.sanitize_for_serialization(checked) == data
        assert data["metadata"]["namespace"] == "data" and data["metadata"]["labels"]["team"] == "data"
        (container,) = data["spec"]["containers"]
        assert container["image"] == "registry.example/dbt-shop:1.4"
        assert container["resources"] == {"requests": {"cpu": "750m", "memory": "768Mi"},
                                          "limits": {"cpu": "750m", "memory": "768Mi"}}
        args = container["args"]
        assert args[:3] == ["build", "--project-dir", "/opt/dbt/shop"]
        selected = args[args.index("--select") + 1: args.index("--indirect-selection")]
        assert selected[0] == f"dataeng_shop.{'staging' if name.startswith('stg') else 'marts'}.{name}"
        assert args[args.index("--indirect-selection") + 1] == "empty"  # the model and its own tests
        env = {e["name"]: e for e in container["env"]}
        assert env["DBT_ENV_SECRET_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "warehouse-dbt", "key": "pw"}
        profile = yaml.safe_load(env[PROFILES_ENV]["value"])["dataeng"]["outputs"]["airflow"]
        assert profile["host"] == "pg-node-1,pg-node-2" and profile["dbname"] == "warehouse"


@pytest.mark.parametrize(("extra", "message"), [
    ({"dbt_executable_path": "/opt/dbt/bin/dbt"}, "dbt_executable_path describe"),
    ({"use_subprocess": True}, "use_subprocess describe"),
    ({"pod": {"namespace": "data"}}, "tasks.dbt.pod.image"),
    ({"pod": {"image": "i", "imagePullPolicy": "Always"}}, "imagePullPolicy"),
])
def test_a_bad_pod_config_names_the_field(tmp_path: Path, extra: dict, message: str) -> None:
    extra = {"pod": {"image": "i"}, **extra} if "pod" not in extra else extra
    (tmp_path / "bad.yaml").write_text(_config("dbt_bad_pod", "warehouse", **extra))
    result = build_dags(tmp_path)
    (error,) = result.errors.values()
    assert message in error.format(), error.format()
