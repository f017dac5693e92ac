"""Render a dbt selection as Airflow tasks from ``manifest.json`` (no dbt invocation at DAG parse time).

Granularities (``render=``):

- ``model``: one :class:`DbtOperator` per model / seed / snapshot running ``dbt build`` on that node
  *and its tests* (listed explicitly, ``--indirect-selection empty``), so a model's tests run right
  after it in the same task and a failing test fails the task, which blocks every downstream task.
  One task instead of a run + test pair halves the dbt start-ups (each parses the project). A test
  with several parents (e.g. ``relationships``) runs in the task of its last parent in dependency order,
  with edges from its other parents' tasks.
- ``group``: one task per group of nodes: ``group_by="folder"`` (directory under the model path),
  ``"tag"`` (a node's first tag; ``untagged`` otherwise) or ``"selector"`` (the manifest's YAML
  selectors, first match wins; ``other`` for the rest). Tests are assigned as in ``model`` mode.
- ``single``: one task running the whole selection (select/exclude/selector passed to dbt as given).

Dependencies come from the manifest's ``depends_on.nodes``; edges through unselected nodes are kept
(A -> [B not selected] -> C gives A -> C). Every model is an Airflow Asset whose URI comes from its
``relation_name`` (:func:`relation_asset_uri`: ``postgres://<conn_id>/<database>/<schema>/<table>``,
the project's convention for warehouse tables), identical in every mode: model tasks emit their model's
asset, group tasks their group's, the single task all of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The postgres provider's asset-URI normalizer, imported with this module rather than on the first Asset.
import airflow.providers.postgres.assets.postgres  # noqa: F401
from airflow.providers.common.compat.sdk import Asset, BaseOperator, TaskGroup

from airflow_provider_dataeng.dbt.manifest import RENDERED_TYPES, Manifest, Node, load_manifest
from airflow_provider_dataeng.dbt.selection import Selector, select_nodes
from airflow_provider_dataeng.operators.dbt import DbtOperator
from airflow_provider_dataeng.publish.assets import table_asset, table_asset_uri
from airflow_provider_dataeng.publish.table_ref import TableRef

RENDER_MODES = ("model", "group", "single")
GROUP_BY = ("folder", "tag", "selector")
_RELATION = re.compile(r'^(?:"((?:[^"]|"")*)"|([^."]+))\.(?:"((?:[^"]|"")*)"|([^."]+))\.(?:"((?:[^"]|"")*)"|([^."]+))$')
_TASK_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def parse_relation_name(relation_name: str) -> tuple[str, str, str]:
    """``"db"."schema"."table"`` (quoted or not) -> ``(db, schema, table)``."""
    m = _RELATION.match(relation_name.strip())
    if not m:
        raise ValueError(f"relation_name {relation_name!r}: expected database.schema.table")
    g = m.groups()
    parts = [(g[i] if g[i] is not None else g[i + 1]) for i in (0, 2, 4)]
    return tuple(p.replace('""', '"') for p in parts)  # type: ignore[return-value]


def relation_asset_uri(relation_name: str, namespace: str) -> str:
    """``postgres://<namespace>/<database>/<schema>/<table>`` for a dbt relation ``"db"."schema"."table"``.

    The project-wide convention (:func:`airflow_provider_dataeng.publish.assets.table_asset_uri`, also used
    by the extracts' outlets): ``namespace`` is the warehouse's Airflow connection id, a logical host name
    (the real hosts are not known at DAG parse time, and a failover moves them anyway).
    """
    database, schema, table = parse_relation_name(relation_name)
    return table_asset_uri(namespace, TableRef(schema, table), database=database)


def relation_asset(relation_name: str, namespace: str) -> Asset:
    """The Airflow Asset of a dbt relation, named ``<namespace>.<schema>.<table>`` (see :func:`relation_asset_uri`)."""
    database, schema, table = parse_relation_name(relation_name)
    return table_asset(namespace, TableRef(schema, table), database=database)


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
    if any(attached in _closure_up(manifest, p) for p in others):
        return latest
    return attached


def _closure_up(manifest: Manifest, uid: str) -> set[str]:
    seen: set[str] = set()
    stack = list(manifest.parents(uid))
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(manifest.parents(p))
    return seen


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


def render_dbt(
    task_id: str,
    *,
    project_dir: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    conn_id: str,
    render: str = "model",
    select: list[str] | str | None = None,
    exclude: list[str] | str | None = None,
    group_by: str = "folder",
    operator_kwargs: dict[str, Any] | None = None,
    selector: str | None = None,
) -> tuple[list[BaseOperator], list[BaseOperator]]:
    """Create dbt tasks in the current DAG; returns ``(entry tasks, exit tasks)``.

    Model and group modes put their tasks in a TaskGroup named ``task_id``. ``operator_kwargs`` go to
    every :class:`DbtOperator` (e.g. ``threads``, ``target_schema``, ``vars``, ``retries``), except
    ``asset_namespace``: the host part of the model Asset URIs (default ``conn_id``).
    """
    if render not in RENDER_MODES:
        raise ValueError(f"render={render!r}: expected one of {', '.join(RENDER_MODES)}")
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by={group_by!r}: expected one of {', '.join(GROUP_BY)}")
    kwargs = dict(operator_kwargs or {})
    for reserved in ("task_id", "conn_id", "project_dir", "select", "exclude", "outlets"):
        if reserved in kwargs:
            raise ValueError(f"operator_kwargs[{reserved!r}]: set by render_dbt, remove it from operator_kwargs")
    command = kwargs.pop("command", "build")
    if render != "single" and command not in ("build", "run"):
        raise ValueError(f"operator_kwargs['command']={command!r}: render={render!r} supports build or run")
    if render != "single":
        kwargs.pop("selector", None)
    manifest = load_manifest(manifest_path)
    selected = select_nodes(manifest, select, exclude, selector, RENDERED_TYPES)
    if not selected:
        raise ValueError(
            f"dbt task {task_id!r}: select={select!r} exclude={exclude!r} selector={selector!r} matches no model, "
            f"seed or snapshot in {manifest_path}"
        )
    namespace = kwargs.pop("asset_namespace", None) or conn_id

    def assets(uids: Iterable[str]) -> list[Asset]:
        return [
            relation_asset(manifest.nodes[u].relation_name, namespace)  # type: ignore[arg-type]
            for u in uids if manifest.nodes[u].relation_name
        ]

    common = {"conn_id": conn_id, "project_dir": str(project_dir), "manifest_path": str(manifest_path), **kwargs}
    if render == "single":
        op = DbtOperator(
            task_id=task_id, command=command, select=select, exclude=exclude,
            selector=selector or kwargs.pop("selector", None), outlets=assets(sorted(selected)),
            **{k: v for k, v in common.items() if k != "selector"},
        )
        return [op], [op]

    if render == "model":
        unit_of = {uid: _task_id(manifest.nodes[uid].name) for uid in selected}
        if len(set(unit_of.values())) != len(unit_of):
            unit_of = {uid: _task_id(".".join(manifest.nodes[uid].fqn)) for uid in selected}
    else:
        members: list[tuple[str, set[str]]] = []
        if group_by == "selector":
            sel = Selector(manifest)
            members = [(name, sel.yaml_selector(name)) for name in manifest.selectors]
        unit_of = {uid: _task_id(_group_key(manifest.nodes[uid], group_by, members)) for uid in selected}
    plan = _Plan(manifest, selected, unit_of)
    with_tests = command == "build"
    tasks: dict[str, BaseOperator] = {}
    with TaskGroup(group_id=task_id):
        for unit, uids in plan.units.items():
            node_selects = [manifest.nodes[u].selector for u in uids]
            test_selects = [t.selector for t in plan.tests[unit]] if with_tests else []
            tasks[unit] = DbtOperator(
                task_id=unit, command=command, select=node_selects + test_selects,
                indirect_selection="empty", outlets=assets(uids), **common,
            )
    for unit, ups in plan.upstream.items():
        if ups:
            tasks[unit].set_upstream([tasks[u] for u in sorted(ups)])
    entries = [tasks[u] for u in plan.units if not plan.upstream[u]]
    downstream_of = {u for ups in plan.upstream.values() for u in ups}
    exits = [tasks[u] for u in plan.units if u not in downstream_of]
    return entries, exits
