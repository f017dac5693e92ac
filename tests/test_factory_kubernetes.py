"""Task pods: pod_override rendered through cncf-kubernetes' PodGenerator; generate-dag-yaml on a factory DAG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes.client import models as k8s

from airflow_provider_dataeng.factory.compat import provider_cli_supported
from airflow_provider_dataeng.factory.kubernetes import pod_override
from airflow_provider_dataeng.factory.resources import Resources, parse_quantity
from tests.fixtures.factory_configs import EMPTY, dagbag, write_dags_folder

PIPELINE = f"""\
schedule: "@daily"
resources:
  cpu: 500m
  memory: 1Gi
  ephemeral_storage: 2Gi
  image: registry.example/dataeng:1.2
  service_account: dataeng-tasks
  node_selector: {{pool: etl}}
  tolerations: [{{key: dedicated, operator: Equal, value: etl, effect: NoSchedule}}]
tasks:
  small: {{operator: {EMPTY}, resources: {{cpu: 250m, memory: 256Mi}}}}
  burst:
    operator: {EMPTY}
    depends_on: small
    resources: {{memory: 1Gi, limits: {{memory: 2Gi}}, allow_burstable: true}}
"""

BASE_TEMPLATE = k8s.V1Pod(
    metadata=k8s.V1ObjectMeta(name="template", labels={"from": "template"}),
    spec=k8s.V1PodSpec(
        containers=[k8s.V1Container(
            name="base", image="apache/airflow:3.3.2", args=["placeholder"],
            resources=k8s.V1ResourceRequirements(requests={"cpu": "1", "memory": "4Gi"}),
            env=[k8s.V1EnvVar(name="AIRFLOW__CORE__EXECUTOR", value="LocalExecutor")],
        )],
        restart_policy="Never",
        service_account_name="default",
    ),
)


def _qos(pod: k8s.V1Pod) -> str:
    """The QoS class Kubernetes would assign (Guaranteed: every container's cpu+memory limits == requests)."""
    guaranteed = True
    for c in pod.spec.containers:
        req = (c.resources and c.resources.requests) or {}
        lim = (c.resources and c.resources.limits) or {}
        for key in ("cpu", "memory"):
            if key not in lim or parse_quantity(req.get(key, lim[key])) != parse_quantity(lim[key]):
                guaranteed = False
    return "Guaranteed" if guaranteed else "Burstable"


def _render(folder: Path, task_id: str) -> k8s.V1Pod:
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    task = dagbag(folder).dags["p"].get_task(task_id)
    override = PodGenerator.from_obj(task.executor_config)
    return PodGenerator.reconcile_pods(BASE_TEMPLATE, override)


def test_pod_override_renders_through_pod_generator(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {"p.yaml": PIPELINE})
    pod = _render(folder, "small")
    (base,) = pod.spec.containers
    assert base.name == "base"
    assert base.image == "registry.example/dataeng:1.2"  # override wins over the template
    assert base.args == ["placeholder"] and base.env[0].name == "AIRFLOW__CORE__EXECUTOR"  # template kept
    assert base.resources.requests == base.resources.limits == {
        "cpu": "250m", "memory": "256Mi", "ephemeral-storage": "2Gi"}
    assert _qos(pod) == "Guaranteed"
    assert pod.spec.service_account_name == "dataeng-tasks"
    assert pod.spec.node_selector == {"pool": "etl"}
    assert pod.spec.tolerations[0].to_dict()["effect"] == "NoSchedule"
    assert pod.metadata.labels == {"from": "template"}


def test_construct_pod_keeps_guaranteed_qos_and_opt_out_is_burstable(tmp_path: Path) -> None:
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    folder = write_dags_folder(tmp_path, {"p.yaml": PIPELINE})
    dag = dagbag(folder).dags["p"]
    pods = {}
    for task in dag.tasks:
        pods[task.task_id] = PodGenerator.construct_pod(
            dag_id="p", task_id=task.task_id, pod_id=f"p-{task.task_id}", try_number=1, kube_image="img:1",
            date=None, args=["airflow", "tasks", "run"], pod_override_object=PodGenerator.from_obj(task.executor_config),
            base_worker_pod=BASE_TEMPLATE, namespace="dataeng", scheduler_job_id="1",
        )
    assert _qos(pods["small"]) == "Guaranteed"
    burst = pods["burst"].spec.containers[0].resources
    assert burst.requests["memory"] == "1Gi" and burst.limits["memory"] == "2Gi"
    assert _qos(pods["burst"]) == "Burstable"
    assert pods["small"].metadata.namespace == "dataeng"


def test_pod_is_a_validated_kubernetes_model() -> None:
    pod = pod_override(Resources(cpu="1", memory="2Gi"))
    assert isinstance(pod, k8s.V1Pod)
    assert pod.to_dict()["spec"]["containers"][0]["resources"] == {
        "claims": None, "limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}
    try:
        k8s.V1Container(name=None, local_vars_configuration=pod.local_vars_configuration)
    except ValueError as exc:  # client-side validation is on for the models we build
        assert "name" in str(exc)
    else:
        raise AssertionError("V1Container without a name was accepted")


@pytest.mark.slow  # an `airflow` CLI process: ~10 s, more on a busy machine
@pytest.mark.skipif(not provider_cli_supported(), reason="provider CLI commands (airflow kubernetes) need Airflow 3.2+")
def test_airflow_kubernetes_generate_dag_yaml(tmp_path: Path, airflow_home: Path) -> None:
    folder = write_dags_folder(tmp_path / "dags", {"p.yaml": PIPELINE})
    out = tmp_path / "out"
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(folder), "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"}
    env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
    airflow = str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run(
        [airflow, "kubernetes", "generate-dag-yaml", "-l", "2026-01-02T00:00:00+00:00", "-o", str(out), "p"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted((out / "airflow_yaml_output").glob("*.yml"))
    assert [f.name.split("_2026")[0] for f in files] == ["p_burst", "p_small"]
    small = yaml.safe_load(next(f for f in files if f.name.startswith("p_small")).read_text())
    (base,) = small["spec"]["containers"]
    assert base["name"] == "base" and base["image"] == "registry.example/dataeng:1.2"
    assert base["resources"]["requests"] == base["resources"]["limits"] == {
        "cpu": "250m", "memory": "256Mi", "ephemeral-storage": "2Gi"}
    assert small["spec"]["serviceAccountName"] == "dataeng-tasks"
    assert small["metadata"]["labels"]["dag_id"] == "p"


LAZY_CHECK = """
import sys
import airflow  # noqa: F401
assert "kubernetes" not in sys.modules
from airflow_provider_dataeng.factory.kubernetes import pod_override
from airflow_provider_dataeng.factory.resources import Resources
pod = pod_override(Resources(cpu="1", memory="1Gi"))
assert "kubernetes.client.api" not in sys.modules  # the API classes were not imported for the pod
assert "urllib3" not in sys.modules  # nor urllib3 (kubernetes.client.configuration binds a stand-in) ...
from kubernetes.client.configuration import Configuration
auth = Configuration(username="u", password="p").get_basic_auth_token()  # ... which imports it when used
assert auth == "Basic dTpw" and "urllib3.util" in sys.modules
import urllib3
assert urllib3.PoolManager and urllib3.util.make_headers  # the real package for everyone else
# ... but the package completes itself for whoever needs more of it:
import kubernetes
from kubernetes import config, watch
from kubernetes.client import CoreV1Api, models as k8s
assert isinstance(pod, k8s.V1Pod) and kubernetes.client.V1Pod is type(pod)
assert callable(config.load_kube_config) and CoreV1Api.__name__ == "CoreV1Api" and watch.Watch
from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
from airflow.serialization.serialized_objects import BaseSerialization
back = BaseSerialization.deserialize(BaseSerialization.serialize({"pod_override": pod}))["pod_override"]
assert PodGenerator.serialize_pod(back)["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
print("ok")
"""


def test_deferred_kubernetes_import_completes_on_demand() -> None:
    """A fresh process: the factory builds pods without importing all of kubernetes; everything else works."""
    env = {k: v for k, v in os.environ.items() if k != "DATAENG_EAGER_KUBERNETES_IMPORT"}
    proc = subprocess.run([sys.executable, "-c", LAZY_CHECK], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "ok", proc.stderr[-3000:]
