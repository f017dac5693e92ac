"""``executor_config={"pod_override": V1Pod}`` for a task: container ``base``, limits == requests by default.

The kubernetes client models validate what they are given (required fields, enums). Each model would copy
a fresh ``Configuration`` (~0.2 ms apiece, most of a 20-task DAG's build time), so all models share one.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from airflow_provider_dataeng.factory.resources import K8S_RESOURCE_NAMES, Resources

BASE_CONTAINER = "base"


@cache
def _k8s() -> tuple[Any, Any]:
    from kubernetes.client import models
    from kubernetes.client.configuration import Configuration

    config = Configuration()
    config.client_side_validation = True
    return models, config


def pod_override(resources: Resources, labels: dict[str, str] | None = None) -> Any:
    """A ``V1Pod`` overriding the executor's pod template for one task."""
    k8s, cfg = _k8s()
    requests = {K8S_RESOURCE_NAMES[k]: v for k, v in resources.requests().items()}
    limits = {K8S_RESOURCE_NAMES[k]: v for k, v in resources.effective_limits().items()}
    container = k8s.V1Container(
        name=BASE_CONTAINER,
        image=resources.image,
        resources=k8s.V1ResourceRequirements(requests=requests, limits=limits, local_vars_configuration=cfg),
        local_vars_configuration=cfg,
    )
    tolerations = None
    if resources.tolerations:
        tolerations = [
            k8s.V1Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect,
                             toleration_seconds=t.toleration_seconds, local_vars_configuration=cfg)
            for t in resources.tolerations
        ]
    spec = k8s.V1PodSpec(
        containers=[container],
        node_selector=dict(resources.node_selector) if resources.node_selector else None,
        tolerations=tolerations,
        service_account_name=resources.service_account,
        local_vars_configuration=cfg,
    )
    metadata = k8s.V1ObjectMeta(labels=labels, local_vars_configuration=cfg) if labels else None
    return k8s.V1Pod(spec=spec, metadata=metadata, local_vars_configuration=cfg)


def executor_config(resources: Resources, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``executor_config`` of a task."""
    return {"pod_override": pod_override(resources, labels)}


def describe_resources(resources: Resources) -> str:
    """One line for ``dataeng render``: requests/limits, image, placement."""
    req, lim = resources.requests(), resources.effective_limits()
    parts = []
    for key in ("cpu", "memory", "ephemeral_storage"):
        if key in req:
            same = lim.get(key) == req[key]
            parts.append(f"{key}={req[key]}" + ("" if same else f"(limit {lim.get(key)})"))
    qos = "Guaranteed" if not resources.qos_problems() else "Burstable"
    text = " ".join(parts) + f" qos={qos}"
    if resources.image:
        text += f" image={resources.image}"
    if resources.service_account:
        text += f" sa={resources.service_account}"
    if resources.node_selector:
        text += " nodes=" + ",".join(f"{k}={v}" for k, v in resources.node_selector.items())
    if resources.tolerations:
        text += f" tolerations={len(resources.tolerations)}"
    return text
