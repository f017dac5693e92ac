"""Render a dbt selection as task descriptions from ``manifest.json`` (no dbt invocation at DAG parse time).

Rendering emits :class:`RenderedTask` descriptions (a task id, a :class:`~airflow_provider_dataeng.dbt.spec.DbtSpec`,
Asset outlets, upstream ids); the factory's builder maps them to operators
(:func:`airflow_provider_dataeng.factory.builder.build_rendered`). Granularities (``render=``):

- ``model``: one task per model / seed / snapshot running ``dbt build`` on that node *and its tests*
  (listed explicitly, ``--indirect-selection empty``), so a model's tests run right after it in the same
  task and a failing test fails the task, which blocks every downstream task. A test with several
  parents (e.g. ``relationships``) runs in the task of its last parent in dependency order, with edges
  from its other parents' tasks.
- ``group``: one task per group of nodes: ``group_by="folder"`` (directory under the model path),
  ``"tag"`` (a node's first tag; ``untagged`` otherwise) or ``"selector"`` (the manifest's YAML
  selectors, first match wins; ``other`` for the rest). Tests are assigned as in ``model`` mode.
- ``single``: one task running the whole selection (select/exclude/selector passed to dbt as given).

Dependencies come from the manifest's ``depends_on.nodes``; edges through unselected nodes are kept
(A -> [B not selected] -> C gives A -> C). Every model is an Airflow Asset built from its
``relation_name`` by the project's one table-identity function, identical in every mode: model tasks
emit their model's asset, group tasks their group's, the single task all of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from airflow_provider_dataeng.dbt.manifest import RENDERED_TYPES, Manifest, Node, load_manifest
from airflow_provider_dataeng.dbt.relations import relation_asset
from airflow_provider_dataeng.dbt.selection import Selector, closure, select_nodes
from airflow_provider_dataeng.dbt.spec import DbtRenderSpec, DbtSpec
from airflow_provider_dataeng.specs import TaskSpec

_TASK_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class RenderedTask:
    """One task to create: ``task_type`` names the operator family (``dbt``, ``freshness``), ``spec`` its
    parameters, ``outlets`` its Assets, ``upstream`` the ids (within the rendering) it runs after."""

    task_id: str
    task_type: str
    spec: TaskSpec
    outlets: tuple[Any, ...] = ()
    upstream: tuple[str, ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()  # operator kwargs outside the spec (a sensor's poke_interval...)

    def operator_kwargs(self) -> dict[str, Any]:
        """The spec's explicitly set fields (the operator fills in the rest from the same spec) and ``extra``."""
        return {**{name: getattr(self.spec, name) for name in self.spec.model_fields_set}, **dict(self.extra)}


@dataclass(frozen=True)
class Rendering:
    """The tasks of one dbt config task, in a TaskGroup named ``group_id`` (None: no group)."""

    group_id: str | None
    tasks: tuple[RenderedTask, ...]

    @property
    def entries(self) -> list[str]:
        """Ids of the tasks with no upstream inside the rendering."""
        return [t.task_id for t in self.tasks if not t.upstream]

    @property
    def exits(self) -> list[str]:
        """Ids of the tasks nothing inside the rendering runs after."""
        downstream_of = {u for t in self.tasks for u in t.upstream}
        return [t.task_id for t in self.tasks if t.task_id not in downstream_of]


def _task_id(text: str) -> str:
    return _TASK_ID_BAD.sub("__", text).strip("_") or "root"


def _group_key(node: Node, group_by: str, selector_members: list[tuple[str, set[str]]]) -> str:
    if group_by == "folder":
        parts = Path(node.path).parent.parts
        return "__".join(parts[1:]) if len(parts) > 1 else (parts[0] if parts else "root")
    if group_by == "tag":
        return node.tags[0] if node.tags else "untagged"
    for name, members in selector_members:
        if node.unique_id in members:
            return name
    return "other"


class _Plan:
    """Units (task keys) -> nodes, tests and upstream units, computed from the manifest only."""

    def __init__(self, manifest: Manifest, selected: set[str], unit_of: dict[str, str]) -> None:
        self.manifest = manifest
        self.unit_of = unit_of
        order = _topo_index(manifest)
        self.units: dict[str, list[str]] = {}
        for uid in sorted(selected, key=order.__getitem__):
            self.units.setdefault(unit_of[uid], []).append(uid)
        self.upstream: dict[str, set[str]] = {u: set() for u in self.units}
        for uid in selected:
            for anc in _nearest_selected_ancestors(manifest, uid, selected):
                if unit_of[anc] != unit_of[uid]:
                    self.upstream[unit_of[uid]].add(unit_of[anc])
        self.tests: dict[str, list[Node]] = {u: [] for u in self.units}
        for test in (n for n in manifest.nodes.values() if n.resource_type == "test"):
            parents = [p for p in test.depends_on if p in manifest.nodes and manifest.nodes[p].resource_type != "test"]
            if not parents or not all(p in selected for p in parents):
                continue  # dbt's "cautious" rule: only tests whose parents are all built here
            home = unit_of[_test_home(manifest, test, parents, order)]
            self.tests[home].append(test)
            for p in parents:
                if unit_of[p] != home:
                    self.upstream[home].add(unit_of[p])
        _check_acyclic(self.upstream)


def _test_home(manifest: Manifest, test: Node, parents: list[str], order: dict[str, int]) -> str:
    """The node whose task runs ``test``: the node it is defined on (e.g. the model of a relationships
    column), unless another parent builds after it; then the last parent in dependency order."""
    latest = max(parents, key=order.__getitem__)
    attached = test.attached_node
    if attached is None or attached not in parents or attached == latest:
        return latest
    others = [p for p in parents if p != attached]
    if any(attached in closure(manifest, [p], up=True) for p in others):
        return latest
    return attached


def _topo_index(manifest: Manifest) -> dict[str, int]:
    """Position of every node in a topological order of the whole manifest graph (parents first)."""
    order: dict[str, int] = {}
    state: dict[str, int] = {}
    for root in manifest.nodes:
        if root in order:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            uid, i = stack.pop()
            parents = manifest.parents(uid)
            if i == 0:
                if state.get(uid) == 2:
                    continue
                state[uid] = 1
            if i < len(parents):
                stack.append((uid, i + 1))
                p = parents[i]
                if p in manifest.nodes and state.get(p) is None:
                    stack.append((p, 0))
                continue
            state[uid] = 2
            order[uid] = len(order)
    return order


def _nearest_selected_ancestors(manifest: Manifest, uid: str, selected: set[str]) -> set[str]:
    found: set[str] = set()
    seen: set[str] = set()
    stack = list(manifest.parents(uid))
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        if p in selected:
            found.add(p)
        elif p in manifest.nodes:
            stack.extend(manifest.parents(p))
    return found


def _check_acyclic(upstream: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}

    def visit(u: str, path: list[str]) -> None:
        state[u] = 1
        for p in sorted(upstream[u]):
            if state.get(p) == 1:
                cycle = path[path.index(p):] + [u, p] if p in path else [p, u, p]
                raise ValueError(
                    "group_by produces a cycle between groups " + " -> ".join(cycle)
                    + ": choose another group_by or render='model'"
                )
            if state.get(p) is None:
                visit(p, path + [u])
        state[u] = 2

    for unit in upstream:
        if state.get(unit) is None:
            visit(unit, [])


def render_dbt(task_id: str, spec: DbtRenderSpec) -> Rendering:
    """The tasks of the dbt config task ``task_id``: reads ``spec.manifest_path`` (default
    ``<project_dir>/target/manifest.json``); every rendered :class:`DbtSpec` carries the fields set on
    ``spec`` plus its own selection. Model and group modes put their tasks in a group named ``task_id``.
    """
    manifest_path = spec.manifest_path or str(Path(spec.project_dir) / "target" / "manifest.json")
    manifest = load_manifest(manifest_path)
    selected = select_nodes(manifest, spec.select, spec.exclude, spec.selector, RENDERED_TYPES)
    if not selected:
        raise ValueError(
            f"dbt task {task_id!r}: select={spec.select!r} exclude={spec.exclude!r} selector={spec.selector!r} "
            f"matches no model, seed or snapshot in {manifest_path}"
        )
    namespace = spec.asset_namespace or spec.conn_id
    base = DbtSpec.model_validate({**spec.operator_fields(), "manifest_path": manifest_path})

    def assets(uids: Iterable[str]) -> tuple[Any, ...]:
        return tuple(
            relation_asset(manifest.nodes[u].relation_name, namespace)  # type: ignore[arg-type]
            for u in uids if manifest.nodes[u].relation_name
        )

    if spec.render == "single":
        if spec.test_behavior == "none" and spec.command in ("build", "test"):
            base = base.model_copy(update={"exclude": [*(base.exclude or []), "resource_type:test"]})
        task = RenderedTask(task_id, "dbt", base, assets(sorted(selected)))
        return Rendering(None, _with_source_sensors(_in_pods([task], spec), {task_id: selected}, manifest, spec))

    if spec.render == "model":
        unit_of = {uid: _task_id(manifest.nodes[uid].name) for uid in selected}
        if len(set(unit_of.values())) != len(unit_of):
            unit_of = {uid: _task_id(".".join(manifest.nodes[uid].fqn)) for uid in selected}
    else:
        members: list[tuple[str, set[str]]] = []
        if spec.group_by == "selector":
            sel = Selector(manifest)
            members = [(name, sel.yaml_selector(name)) for name in manifest.selectors]
        unit_of = {uid: _task_id(_group_key(manifest.nodes[uid], spec.group_by, members)) for uid in selected}
    plan = _Plan(manifest, selected, unit_of)
    tasks = _in_pods(_unit_tasks(plan, base, spec, assets), spec)
    return Rendering(task_id, _with_source_sensors(tasks, {u: set(uids) for u, uids in plan.units.items()},
                                                   manifest, spec))


def _in_pods(tasks: list[RenderedTask], spec: DbtRenderSpec) -> list[RenderedTask]:
    """With ``spec.pod``: each dbt task runs in its own pod (DbtKubernetesPodOperator), same selection."""
    if spec.pod is None:
        return tasks
    extra = tuple(spec.pod.operator_kwargs().items())
    return [replace(t, task_type="dbt_pod", spec=spec.pod_spec(t.spec), extra=(*t.extra, *extra))  # type: ignore[arg-type]
            if t.task_type == "dbt" else t for t in tasks]


def _sources_read(manifest: Manifest, uids: set[str], selected: set[str]) -> set[str]:
    """Sources that ``uids`` read directly or through models that are not selected."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = [p for u in uids for p in manifest.parents(u)]
    while stack:
        uid = stack.pop()
        if uid in seen:
            continue
        seen.add(uid)
        if uid in manifest.sources:
            found.add(uid)
        elif uid in manifest.nodes and uid not in selected:
            stack.extend(manifest.parents(uid))
    return found


def _with_source_sensors(tasks: list[RenderedTask], units: dict[str, set[str]], manifest: Manifest,
                         spec: DbtRenderSpec) -> tuple[RenderedTask, ...]:
    """Add a freshness sensor per dbt source with a freshness block upstream of the tasks reading it."""
    settings = spec.freshness_sensors()
    if settings is None:
        return tuple(tasks)
    from airflow_provider_dataeng.dbt.relations import parse_relation_name
    from airflow_provider_dataeng.freshness.spec import FreshnessSpec

    selected = set().union(*units.values()) if units else set()
    taken = {t.task_id for t in tasks}
    sensor_of: dict[str, str] = {}
    sensors: list[RenderedTask] = []
    reads = {unit: _sources_read(manifest, uids, selected) for unit, uids in units.items()}
    for source_id in sorted(set().union(*reads.values()) if reads else set()):
        source = manifest.sources[source_id]
        fresh = source.freshness
        if fresh is None or not source.relation_name:
            continue
        _, schema, table = parse_relation_name(source.relation_name)
        name = _task_id(f"freshness__{source.fqn[-2] if len(source.fqn) >= 2 else schema}__{source.name}")
        while name in taken:
            name += "_"
        taken.add(name)
        sensor_spec = FreshnessSpec.model_validate({
            "conn_id": spec.conn_id, "table": f"{schema}.{table}", "deferrable": settings.deferrable,
            **({"loaded_at_query": fresh.loaded_at_query} if fresh.loaded_at_query
               else {"timestamp_column": fresh.loaded_at_field}),
            **({"filter": fresh.filter} if fresh.filter and not fresh.loaded_at_query else {}),
            **{k: v for k, v in (("warn_after", fresh.warn_after), ("error_after", fresh.error_after)) if v},
        })
        extra = tuple((k, v.total_seconds()) for k, v in (("poke_interval", settings.poke_interval),
                                                          ("timeout", settings.timeout)) if v is not None)
        extra += (("mode", settings.mode),) if settings.mode else ()
        sensors.append(RenderedTask(name, "freshness", sensor_spec, (), (), extra))
        sensor_of[source_id] = name
    wired = [
        replace(t, upstream=tuple(sorted({*t.upstream, *(sensor_of[s] for s in reads.get(t.task_id, ()) if s in sensor_of)})))
        for t in tasks
    ]
    return (*sensors, *wired)


def _unit_tasks(plan: _Plan, base: DbtSpec, spec: DbtRenderSpec, assets: Any) -> list[RenderedTask]:
    """One task per unit, plus test tasks as ``spec.test_behavior`` asks."""
    manifest = plan.manifest
    behavior = spec.test_behavior
    inline = behavior == "build" and spec.command == "build"
    taken = set(plan.units)

    def fresh(name: str) -> str:
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    def dbt(command: str, selects: list[str]) -> DbtSpec:
        return base.model_copy(update={"command": command, "select": selects, "exclude": None, "selector": None,
                                       "indirect_selection": "empty"})

    tests = {unit: [t.selector for t in plan.tests[unit]] for unit in plan.units}
    waits_on = {u: fresh(f"{u}__test") if behavior == "after_each" and tests[u] else u for u in plan.units}
    tasks: list[RenderedTask] = []
    for unit, uids in plan.units.items():
        selects = [manifest.nodes[u].selector for u in uids] + (tests[unit] if inline else [])
        upstream = tuple(sorted(waits_on[u] for u in plan.upstream[unit]))
        tasks.append(RenderedTask(unit, "dbt", dbt(spec.command, selects), assets(uids), upstream))
        if waits_on[unit] != unit:
            tasks.append(RenderedTask(waits_on[unit], "dbt", dbt("test", tests[unit]), (), (unit,)))
    all_tests = [t for unit in plan.units for t in tests[unit]]
    if behavior == "after_all" and all_tests:
        last = Rendering(None, tuple(tasks)).exits
        tasks.append(RenderedTask(fresh("tests"), "dbt", dbt("test", all_tests), (), tuple(last)))
    return tasks
