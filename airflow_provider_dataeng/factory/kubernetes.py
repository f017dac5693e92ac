"""``executor_config={"pod_override": V1Pod}`` for a task: container ``base``, limits == requests by default.

Parse-time cost, measured (``benchmarks/parse.py``):

* ``import kubernetes`` runs the package ``__init__`` files, which import every API class and ~700 models:
  ~0.35 s CPU per process, more than building 100 DAGs' worth of pods. We need five model classes. When
  the kubernetes package is not imported yet, :func:`_k8s` registers ``kubernetes``,
  ``kubernetes.client`` and ``kubernetes.client.models`` as *deferred* packages (found, not executed) and
  imports only the model modules it uses (~0.02 s). A deferred package runs its real ``__init__`` the first
  time anything asks it for a name it does not have yet (``kubernetes.config``,
  ``kubernetes.client.CoreV1Api``, ...), so other code (the pod serializer, the executor, a
  KubernetesPodOperator) sees the complete package; the classes are the same objects either way.
  ``[dataeng] eager_kubernetes_import = True`` (or ``DATAENG_EAGER_KUBERNETES_IMPORT=1``) turns this off.
* The model modules import ``kubernetes.client.configuration``, which imports ``urllib3`` (~0.02 s of regex
  compiling and SSL setup) only to call ``urllib3.util.make_headers`` for basic auth. While they are
  imported (and only when urllib3 is not imported yet), ``urllib3`` is a stand-in that imports the real
  package on its first attribute access; it is out of ``sys.modules`` again right after, so any other
  ``import urllib3`` gets the real package.
* Each model would copy a fresh client ``Configuration`` (~0.2 ms apiece, most of a 20-task DAG's build
  time); all the models we build share one, with client-side validation on.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from functools import cache
from typing import Any

from airflow_provider_dataeng import settings
from airflow_provider_dataeng.factory.resources import K8S_RESOURCE_NAMES, Resources

BASE_CONTAINER = "base"
_DEFERRED = ("kubernetes", "kubernetes.client", "kubernetes.client.models")
_MODELS = ("v1_pod", "v1_pod_spec", "v1_container", "v1_resource_requirements", "v1_toleration", "v1_object_meta")
_lock = threading.RLock()


def _defer_package(name: str) -> None:
    """Register package ``name`` without running its ``__init__``; run it on the first missing attribute."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(name)
    module = importlib.util.module_from_spec(spec)
    state = {"done": False, "running": False}

    locations = list(spec.submodule_search_locations)

    def is_submodule(attr: str) -> bool:
        return any(os.path.exists(os.path.join(d, attr + ".py")) or os.path.isdir(os.path.join(d, attr))
                   for d in locations)

    def complete(attr: str) -> Any:
        if is_submodule(attr):
            # `from package import submodule` probes the attribute first; let the import system load the
            # submodule (running __init__ here could re-enter a module that is still being imported).
            raise AttributeError(attr)
        with _lock:
            if state["running"]:  # asked while its own __init__ runs: behave like a partly imported module
                raise AttributeError(attr)
            if not state["done"]:
                state["running"] = True
                try:
                    module.__dict__.pop("__getattr__", None)
                    spec.loader.exec_module(module)  # type: ignore[union-attr]
                    state["done"] = True
                except BaseException:
                    module.__dict__["__getattr__"] = complete
                    raise
                finally:
                    state["running"] = False
        try:
            return module.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

    module.__dict__["__getattr__"] = complete
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


class _ImportOnUse(types.ModuleType):
    """Stands in for a module bound at import time but used later: the real module is imported on the
    first attribute access (and the stand-in is never left in ``sys.modules``)."""

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _import_models() -> types.SimpleNamespace:
    with _lock:
        lazy = not settings.get("eager_kubernetes_import")
        if "kubernetes" not in sys.modules and lazy:
            try:
                for name in _DEFERRED:
                    _defer_package(name)
            except ImportError:
                for name in _DEFERRED:
                    sys.modules.pop(name, None)
        stand_in = None
        if lazy and "urllib3" not in sys.modules and "kubernetes.client.configuration" not in sys.modules:
            stand_in = sys.modules["urllib3"] = _ImportOnUse("urllib3")
        try:
            models = {}
            for mod in _MODELS:
                module = importlib.import_module(f"kubernetes.client.models.{mod}")
                cls_name = "V1" + "".join(p.capitalize() for p in mod.split("_")[1:])
                models[cls_name] = getattr(module, cls_name)
        finally:
            if stand_in is not None and sys.modules.get("urllib3") is stand_in:
                del sys.modules["urllib3"]
        return types.SimpleNamespace(**models)


@cache
def _k8s() -> tuple[Any, Any]:
    """The kubernetes model classes we build, and the one ``Configuration`` they share."""
    models = _import_models()
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

