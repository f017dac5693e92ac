"""dbt node selection (``--select`` / ``--exclude`` / ``--selector``) evaluated over a manifest.

Supports what DAG rendering needs, with dbt's semantics: space = union, comma = intersection;
graph operators ``+x``, ``x+``, ``2+x``, ``x+3``, ``@x``; methods ``fqn`` (the default: a node name,
a dotted fqn prefix such as ``staging`` or ``my_project.marts``), ``tag:``, ``path:`` (a file or a
folder, also the default for values containing ``/``), ``file:``, ``resource_type:``, ``package:``,
``source:`` (``source:raw`` or ``source:raw.orders``), ``config.materialized:``; shell wildcards in
values; YAML selectors from the manifest (``method/value``, ``union``, ``intersection``, ``exclude``,
``parents``, ``children``, depths). Stateful methods (``state:``, ``result:``) need dbt itself: a clear
error says so.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_provider_dataeng.dbt.manifest import Manifest, Node

_ATOM = re.compile(r"^(?P<at>@)?(?:(?P<up>\d*)\+)?(?P<body>.+?)(?:\+(?P<down>\d*))?$")
SUPPORTED_METHODS = ("fqn", "tag", "path", "file", "resource_type", "package", "source", "config.materialized")


class SelectionError(ValueError):
    """A select/exclude/selector expression that cannot be evaluated."""


def _match(pattern: str, value: str) -> bool:
    return value == pattern or (any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(value, pattern))


def _method_matches(node: Node, method: str, value: str, project_name: str | None) -> bool:
    if method == "fqn":
        if _match(value, node.name):
            return True
        parts = value.split(".")
        fqn = list(node.fqn)
        for candidate in (fqn, fqn[1:]):  # with or without the package name
            if len(parts) <= len(candidate) and all(_match(p, c) for p, c in zip(parts, candidate, strict=False)):
                return True
        return False
    if method == "tag":
        return any(_match(value, t) for t in node.tags)
    if method == "path":
        path = node.path
        value = value.rstrip("/")
        return _match(value, path) or path.startswith(value + "/") or fnmatch.fnmatchcase(path, value + "/*")
    if method == "file":
        base = node.path.rsplit("/", 1)[-1]
        return _match(value, base) or _match(value, base.rsplit(".", 1)[0])
    if method == "resource_type":
        return node.resource_type == value
    if method == "package":
        return _match(value, node.package_name)
    if method == "source":
        if node.resource_type != "source":
            return False
        # fqn of a source: [package, ...path parts, source_name, table]
        src, _, table = value.partition(".")
        source_name = node.fqn[-2] if len(node.fqn) >= 2 else ""
        return _match(src, source_name) and (not table or _match(table, node.name))
    if method == "config.materialized":
        return node.materialized is not None and _match(value, node.materialized)
    raise SelectionError(
        f"selector method {method!r} is not supported when rendering from a manifest "
        f"(supported: {', '.join(SUPPORTED_METHODS)}); use render='single' to let dbt evaluate it"
    )


def closure(manifest: Manifest, start: Iterable[str], *, up: bool, depth: int | None = None) -> set[str]:
    """Ancestors (``up``) or descendants of ``start`` within ``depth`` steps (None: all), excluding ``start``
    unless reached through a cycle."""
    graph_next = (lambda u: manifest.parents(u)) if up else (lambda u: manifest.children.get(u, ()))
    seen: set[str] = set()
    frontier = list(start)
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        nxt: list[str] = []
        for uid in frontier:
            for other in graph_next(uid):
                if other not in seen:
                    seen.add(other)
                    nxt.append(other)
        frontier = nxt
    return seen


class Selector:
    """Evaluates selection expressions over one manifest."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.universe = manifest.all_nodes

    def atom(self, text: str) -> set[str]:
        m = _ATOM.match(text.strip())
        if not m:
            raise SelectionError(f"select {text!r}: cannot parse this selector")
        body = m.group("body")
        if ":" in body:
            method, value = body.split(":", 1)
        else:
            method, value = ("path" if "/" in body or body.endswith((".sql", ".py", ".csv")) else "fqn"), body
        if not value:
            raise SelectionError(f"select {text!r}: empty value after {method!r}")
        base = {uid for uid, n in self.universe.items() if _method_matches(n, method, value, self.manifest.project_name)}
        return self._graph(base, at=bool(m.group("at")), up=m.group("up"), down=m.group("down"))

    def _graph(self, base: set[str], *, at: bool, up: str | None, down: str | None) -> set[str]:
        result = set(base)
        if at:
            kids = closure(self.manifest, base, up=False, depth=None)
            result |= kids | closure(self.manifest, base | kids, up=True, depth=None)
            return result
        if up is not None:
            result |= closure(self.manifest, base, up=True, depth=int(up) if up else None)
        if down is not None:
            result |= closure(self.manifest, base, up=False, depth=int(down) if down else None)
        return result

    def expression(self, terms: Sequence[str] | str | None) -> set[str] | None:
        """Union of space-separated terms, each an intersection of comma-separated atoms; None = all."""
        if terms is None:
            return None
        words = terms.split() if isinstance(terms, str) else [w for t in terms for w in str(t).split()]
        if not words:
            return None
        out: set[str] = set()
        for word in words:
            parts = [self.atom(a) for a in word.split(",") if a]
            if parts:
                out |= set.intersection(*parts)
        return out

    def yaml_selector(self, name: str) -> set[str]:
        if name not in self.manifest.selectors:
            known = ", ".join(sorted(self.manifest.selectors)) or "none defined"
            raise SelectionError(f"selector={name!r}: no such selector in the manifest (known: {known})")
        return self.definition(self.manifest.selectors[name], name)

    def definition(self, spec: Any, where: str) -> set[str]:
        """Evaluate a YAML selector definition (as stored in the manifest)."""
        if isinstance(spec, str):
            return self.expression(spec) or set(self.universe)
        if not isinstance(spec, dict):
            raise SelectionError(f"selector {where!r}: unsupported definition {spec!r}")
        if "union" in spec or "intersection" in spec:
            key = "union" if "union" in spec else "intersection"
            includes: list[set[str]] = []
            excludes: set[str] = set()
            for item in spec[key]:
                if isinstance(item, dict) and set(item) == {"exclude"}:
                    for ex in item["exclude"]:
                        excludes |= self.definition(ex, where)
                else:
                    includes.append(self.definition(item, where))
            combined = set().union(*includes) if key == "union" else set.intersection(*includes) if includes else set()
            return combined - excludes
        if "method" in spec:
            method, value = spec["method"], str(spec.get("value", ""))
            if method == "selector":
                return self.yaml_selector(value)
            atom = f"{method}:{value}" if method != "fqn" else value
            base = self.atom(atom)
            up = spec.get("parents_depth") if spec.get("parents") else None
            down = spec.get("children_depth") if spec.get("children") else None
            result = self._graph(
                base, at=bool(spec.get("childrens_parents")),
                up=None if not spec.get("parents") else ("" if up is None else str(up)),
                down=None if not spec.get("children") else ("" if down is None else str(down)),
            )
            if spec.get("exclude"):
                for ex in spec["exclude"]:
                    result -= self.definition(ex, where)
            return result
        raise SelectionError(f"selector {where!r}: expected method/value, union or intersection in {spec!r}")


def select_nodes(
    manifest: Manifest,
    select: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    selector: str | None = None,
    resource_types: Iterable[str] | None = ("model", "seed", "snapshot"),
) -> set[str]:
    """Unique ids selected like ``dbt ls --select ... --exclude ... --selector ...``, filtered by type."""
    sel = Selector(manifest)
    if selector:
        chosen = sel.yaml_selector(selector)
        if select:
            chosen &= sel.expression(select) or set()
    else:
        chosen = sel.expression(select)
        if chosen is None:
            chosen = set(sel.universe)
    excluded = sel.expression(exclude) or set()
    chosen -= excluded
    types = set(resource_types) if resource_types is not None else None
    return {uid for uid in chosen if uid in sel.universe and (types is None or sel.universe[uid].resource_type in types)}
