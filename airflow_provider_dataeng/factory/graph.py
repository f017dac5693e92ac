"""Task graph checks: task groups, ``depends_on`` targets, cycles; Airflow task ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_dataeng.factory.errors import PathT, did_you_mean

if TYPE_CHECKING:
    from airflow_provider_dataeng.factory.loader import IssueCollector
    from airflow_provider_dataeng.factory.pipeline import Pipeline


def group_chain(pipeline: Pipeline, group: str | None) -> list[str]:
    """Enclosing groups of ``group``, outermost first (assumes parents were checked)."""
    chain: list[str] = []
    while group is not None and group not in chain:
        chain.insert(0, group)
        spec = pipeline.task_groups.get(group)
        group = spec.parent if spec else None
    return chain


def airflow_task_id(pipeline: Pipeline, name: str, group: str | None) -> str:
    """The Airflow task id of a config task: prefixed by its groups (``extract.orders``)."""
    parts = [g for g in group_chain(pipeline, group) if pipeline.task_groups[g].prefix_group_id]
    return ".".join(parts + [name])


@dataclass(frozen=True)
class Node:
    """What the graph checks need of a task (taken from the raw config, so invalid tasks count too)."""

    depends_on: tuple[str, ...]
    group: str | None
    xcom: tuple[tuple[PathT, str], ...] = ()  # tasks whose result it maps over (upstream too)

    @classmethod
    def of(cls, raw: Any) -> Node:
        from airflow_provider_dataeng.factory.mapping import xcom_sources

        deps = raw.get("depends_on") if isinstance(raw, dict) else None
        deps = [deps] if isinstance(deps, str) else deps if isinstance(deps, list) else []
        group = raw.get("group") if isinstance(raw, dict) else None
        return cls(tuple(d for d in deps if isinstance(d, str)), group if isinstance(group, str) else None,
                   tuple(xcom_sources(raw)))


def tasks_in_group(pipeline: Pipeline, tasks: dict[str, Node], group: str) -> list[str]:
    """Names of the tasks in ``group`` or any of its subgroups."""
    return [n for n, t in tasks.items() if group in group_chain(pipeline, t.group)]


def check_graph(collector: IssueCollector, pipeline: Pipeline, raw_tasks: dict[str, Any]) -> list[str]:
    """Report graph problems; return the task names in a topological order ([] when there are problems)."""
    tasks = {name: Node.of(raw) for name, raw in raw_tasks.items()}
    before = len(collector.issues)
    groups = pipeline.task_groups
    for gname, spec in groups.items():
        if spec.parent is not None and spec.parent not in groups:
            collector.add(("task_groups", gname, "parent"), "unknown task group", found=repr(spec.parent),
                          expected="one of " + ", ".join(sorted(groups)), suggestion=did_you_mean(spec.parent, groups))
        seen = [gname]
        parent = spec.parent
        while parent is not None and parent in groups:
            if parent in seen:
                collector.add(("task_groups", gname, "parent"),
                              "task groups nest in a cycle: " + " -> ".join(seen + [parent]))
                break
            seen.append(parent)
            parent = groups[parent].parent
    for name, task in tasks.items():
        if task.group is not None and task.group not in groups:
            collector.add(("tasks", name, "group"), "unknown task group (declare it under task_groups)",
                          found=repr(task.group), expected="one of " + (", ".join(sorted(groups)) or "(none declared)"),
                          suggestion=did_you_mean(task.group, groups))
    for gname in groups:
        if gname in tasks:
            collector.add(("task_groups", gname), f"'{gname}' is both a task group and a task name; rename one")
    if len(collector.issues) > before:
        return []

    ids: dict[str, str] = {}
    for name, task in tasks.items():
        tid = airflow_task_id(pipeline, name, task.group)
        if tid in ids:
            collector.add(("tasks", name), f"task id '{tid}' is also the id of task '{ids[tid]}'")
        ids[tid] = name

    edges: dict[str, set[str]] = {n: set() for n in tasks}  # upstream -> downstreams
    targets = sorted(set(tasks) | set(groups))
    for name, task in tasks.items():
        for i, dep in enumerate(task.depends_on):
            path = ("tasks", name, "depends_on", i)
            if dep == name:
                collector.add(path, "a task cannot depend on itself", found=repr(dep))
            elif dep in tasks:
                edges[dep].add(name)
            elif dep in groups:
                members = tasks_in_group(pipeline, tasks, dep)
                if name in members:
                    collector.add(path, f"task '{name}' cannot depend on its own group '{dep}'")
                for m in members:
                    edges[m].add(name)
            else:
                collector.add(path, "unknown depends_on target", found=repr(dep),
                              expected="a task or task group of this pipeline", suggestion=did_you_mean(dep, targets))
        for sub_path, source in task.xcom:
            if source == name:
                collector.add(("tasks", name, *sub_path), "a task cannot map over its own result")
            elif source in tasks:
                edges[source].add(name)
            else:
                collector.add(("tasks", name, *sub_path), "unknown task", found=repr(source),
                              expected="a task of this pipeline", suggestion=did_you_mean(source, tasks))
    if len(collector.issues) > before:
        return []
    cycle = _find_cycle(edges)
    if cycle:
        collector.add(("tasks", cycle[0], "depends_on"), "dependency cycle: " + " -> ".join(cycle))
        return []
    return topological(edges)


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(edges, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for nxt in sorted(edges[node]):
            if color[nxt] == grey:
                return stack[stack.index(nxt):] + [nxt]
            if color[nxt] == white and (found := visit(nxt)):
                return found
        stack.pop()
        color[node] = black
        return None

    for node in sorted(edges):
        if color[node] == white and (found := visit(node)):
            return found
    return None


def topological(edges: dict[str, set[str]]) -> list[str]:
    """Node names in a topological order (Kahn), given ``upstream -> downstreams`` edges of a DAG."""
    indegree = dict.fromkeys(edges, 0)
    for downs in edges.values():
        for d in downs:
            indegree[d] += 1
    ready = [n for n in edges if indegree[n] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for d in sorted(edges[node]):
            indegree[d] -= 1
            if indegree[d] == 0:
                ready.append(d)
    return order
