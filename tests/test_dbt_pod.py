"""The KubernetesPodOperator path for a separate dbt image, checked on the rendered pod spec (no cluster)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from airflow_provider_dataeng.operators.dbt_pod import POD_SCRIPT, PROFILES_ENV, DbtKubernetesPodOperator
from devstack.airflow_env import register_connection, unregister_connection

SECRET = "k8s-Pw-0ff-the-spec"


@pytest.fixture
def conn_id():
    register_connection("dbt_k8s_wh", host="pg-node-1:5432,pg-node-2:5432", login="etl", password=SECRET,
                        schema="warehouse", extra={"target_session_attrs": "read-write"})
    yield "dbt_k8s_wh"
    unregister_connection("dbt_k8s_wh")


def _pod(**kw):
    from kubernetes.client import ApiClient

    op = DbtKubernetesPodOperator(task_id="dbt_pod", namespace="data", image="registry/dbt-shop:1.0", **kw)
    pod = op.build_pod_request_obj(dry_run=True)
    return op, pod, ApiClient().sanitize_for_serialization(pod)


def test_pod_spec_carries_the_profile_as_env_and_the_password_as_a_secret_ref(conn_id: str, tmp_path) -> None:
    op, pod, spec = _pod(conn_id=conn_id, command="build", select=["tag:marts"], exclude="dim_products",
                         vars={"incremental_lookback_days": 5}, target_schema="analytics", threads=4,
                         password_secret="warehouse-dbt", password_secret_key="pw")
    assert SECRET not in json.dumps(spec)  # nowhere in the pod spec
    container = spec["spec"]["containers"][0]
    assert container["image"] == "registry/dbt-shop:1.0" and spec["metadata"]["namespace"] == "data"
    assert container["command"] == ["/bin/sh", "-c", POD_SCRIPT, "dbt"]
    args = container["args"]
    assert args[0] == "build"
    assert args[args.index("--select") + 1] == "tag:marts" and args[args.index("--exclude") + 1] == "dim_products"
    assert json.loads(args[args.index("--vars") + 1]) == {"incremental_lookback_days": 5}
    assert args[args.index("--threads") + 1] == "4" and args[args.index("--target-path") + 1] == "/tmp/dbt-target"
    env = {e["name"]: e for e in container["env"]}
    assert env["DBT_ENV_SECRET_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "warehouse-dbt", "key": "pw"}
    assert "value" not in env["DBT_ENV_SECRET_PASSWORD"]
    assert env["PGTARGETSESSIONATTRS"]["value"] == "read-write"
    profile = yaml.safe_load(env[PROFILES_ENV]["value"])["dataeng"]["outputs"]["airflow"]
    assert profile["host"] == "pg-node-1,pg-node-2" and profile["port"] == 5432
    assert profile["user"] == "etl" and profile["dbname"] == "warehouse" and profile["threads"] == 4
    assert profile["password"] == "{{ env_var('DBT_ENV_SECRET_PASSWORD', '') }}"
    # the container command writes that profile and hands every arg to dbt (a stand-in dbt here)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "dbt").write_text('#!/bin/sh\necho "ARGS $*"; d="$(echo "$*" | sed "s/.*--profiles-dir //")"; '
                                  'cat "$d/profiles.yml"\n')
    (fake_bin / "dbt").chmod(0o755)
    out = subprocess.run(
        [*container["command"], *args],
        env={"PATH": f"{fake_bin}:/usr/bin:/bin", "TMPDIR": str(tmp_path), PROFILES_ENV: env[PROFILES_ENV]["value"]},
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.startswith("ARGS build --project-dir /dbt") and f"--profiles-dir {tmp_path}/dbt-profile" in out
    assert yaml.safe_load(out.split("\n", 1)[1]) == yaml.safe_load(env[PROFILES_ENV]["value"])
    # building twice does not duplicate env vars
    again = op.build_pod_request_obj(dry_run=True)
    assert len(again.spec.containers[0].env) == len(pod.spec.containers[0].env)


def test_a_password_without_a_secret_is_refused_not_copied(conn_id: str) -> None:
    with pytest.raises(ValueError, match="password_secret"):
        _pod(conn_id=conn_id)


def test_bad_parameters_name_the_field() -> None:
    with pytest.raises(ValueError, match="command='deploy'"):
        DbtKubernetesPodOperator(task_id="t", conn_id="c", image="i", command="deploy")
    with pytest.raises(ValueError, match="image"):
        DbtKubernetesPodOperator(task_id="t", conn_id="c", image="")
    # building the operator (DAG parse time) does not read the connection
    DbtKubernetesPodOperator(task_id="t", conn_id="missing_conn", image="i")
