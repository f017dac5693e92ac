"""Fast, read-only view of a dbt ``manifest.json``: only the keys DAG rendering needs.

Decoding goes through ``msgspec`` (a dependency of Airflow itself) into typed structs that skip every
key not declared here (raw/compiled code, columns, docs, macros...), which is several times faster
than ``json.load`` of the whole document. Parsed manifests are cached per (path, mtime, size), so a DAG
processor re-parsing the same DAG file reuses it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

RENDERED_TYPES = ("model", "seed", "snapshot")


class _DependsOn(msgspec.Struct):
    nodes: list[str] = []


class _Config(msgspec.Struct):
    materialized: str | None = None
    enabled: bool = True


class _Node(msgspec.Struct):
    unique_id: str
    name: str
    resource_type: str
    package_name: str = ""
    original_file_path: str = ""
    fqn: list[str] = []
    tags: list[str] = []
    relation_name: str | None = None
    depends_on: _DependsOn = msgspec.field(default_factory=_DependsOn)
    attached_node: str | None = None
    config: _Config = msgspec.field(default_factory=_Config)
    database: str | None = None
    schema: str | None = None
    alias: str | None = None


class _Period(msgspec.Struct):
    count: int | None = None
    period: str | None = None


class _Freshness(msgspec.Struct):
    warn_after: _Period | None = None
    error_after: _Period | None = None
    filter: str | None = None


class _Source(msgspec.Struct):
    unique_id: str
    name: str
    loaded_at_field: str | None = None
    loaded_at_query: str | None = None
    freshness: _Freshness | None = None
    source_name: str = ""
    package_name: str = ""
    original_file_path: str = ""
    fqn: list[str] = []
    tags: list[str] = []
    relation_name: str | None = None


class _Selector(msgspec.Struct):
    name: str
    definition: Any = None


class _Metadata(msgspec.Struct):
    project_name: str | None = None
    dbt_version: str | None = None
    adapter_type: str | None = None


class _Manifest(msgspec.Struct):
    metadata: _Metadata = msgspec.field(default_factory=_Metadata)
    nodes: dict[str, _Node] = {}
    sources: dict[str, _Source] = {}
    selectors: dict[str, _Selector] = {}


_DECODER = msgspec.json.Decoder(_Manifest)


@dataclass(frozen=True)
class SourceFreshness:
    """A source's dbt freshness: how its load time is read and its thresholds as ``{count, period}``."""

    loaded_at_field: str | None
    loaded_at_query: str | None
    warn_after: dict[str, Any] | None
    error_after: dict[str, Any] | None
    filter: str | None


@dataclass(frozen=True)
class Node:
    """A model, seed, snapshot, test or source as far as rendering is concerned."""

    unique_id: str
    name: str
    resource_type: str
    package_name: str
    path: str  # original_file_path, relative to the project root
    fqn: tuple[str, ...]
    tags: tuple[str, ...]
    relation_name: str | None
    depends_on: tuple[str, ...]
    materialized: str | None = None
    attached_node: str | None = None
    freshness: SourceFreshness | None = None  # sources with a load time and at least one threshold
    database: str | None = None
    schema: str | None = None

    @property
    def selector(self) -> str:
        """A dbt selector that matches exactly this node (its fully qualified name)."""
        return ".".join(self.fqn) if self.fqn else self.name


@dataclass
class Manifest:
    """Nodes (incl. tests), sources, named selectors and the parent/child graph of one manifest."""

    project_name: str | None
    nodes: dict[str, Node]
    sources: dict[str, Node]
    selectors: dict[str, Any]
    path: Path | None = None
    _children: dict[str, list[str]] | None = field(default=None, repr=False)

    @property
    def all_nodes(self) -> dict[str, Node]:
        return {**self.sources, **self.nodes}

    def parents(self, uid: str) -> tuple[str, ...]:
        node = self.nodes.get(uid)
        return node.depends_on if node else ()

    @property
    def children(self) -> dict[str, list[str]]:
        if self._children is None:
            children: dict[str, list[str]] = {}
            for uid, node in self.nodes.items():
                for parent in node.depends_on:
                    children.setdefault(parent, []).append(uid)
            self._children = children
        return self._children


def _period(p: _Period | None) -> dict[str, Any] | None:
    return {"count": p.count, "period": p.period} if p is not None and p.count and p.period else None


def _source_freshness(s: _Source) -> SourceFreshness | None:
    f = s.freshness
    warn, error = (_period(f.warn_after), _period(f.error_after)) if f is not None else (None, None)
    if not (s.loaded_at_field or s.loaded_at_query) or not (warn or error):
        return None
    return SourceFreshness(s.loaded_at_field, s.loaded_at_query, warn, error, f.filter if f else None)


def _convert(raw: _Manifest, path: Path | None) -> Manifest:
    nodes: dict[str, Node] = {}
    for uid, n in raw.nodes.items():
        if not n.config.enabled:
            continue
        nodes[uid] = Node(
            unique_id=uid, name=n.name, resource_type=n.resource_type, package_name=n.package_name,
            path=n.original_file_path, fqn=tuple(n.fqn), tags=tuple(n.tags), relation_name=n.relation_name,
            depends_on=tuple(n.depends_on.nodes), materialized=n.config.materialized,
            attached_node=n.attached_node, database=n.database, schema=n.schema,
        )
    sources = {
        uid: Node(
            unique_id=uid, name=s.name, resource_type="source", package_name=s.package_name,
            path=s.original_file_path, fqn=tuple(s.fqn), tags=tuple(s.tags), relation_name=s.relation_name,
            depends_on=(), freshness=_source_freshness(s),
        )
        for uid, s in raw.sources.items()
    }
    selectors = {name: sel.definition for name, sel in raw.selectors.items()}
    return Manifest(raw.metadata.project_name, nodes, sources, selectors, path)


def parse_manifest(data: bytes | str) -> Manifest:
    """Decode manifest.json text."""
    try:
        return _convert(_DECODER.decode(data), None)
    except msgspec.ValidationError as exc:
        raise ValueError(f"manifest.json does not look like a dbt manifest: {exc}") from exc


_CACHE: dict[str, tuple[tuple[int, int], Manifest]] = {}
_LOCK = threading.Lock()


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Load (or reuse) the manifest at ``path``; a clear error when it is missing."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"manifest_path={str(p)!r}: no such file; produce it at build time with "
            "`python -m airflow_provider_dataeng.dbt.parse_project <project_dir>` (make manifest)"
        ) from None
    key = (st.st_mtime_ns, st.st_size)
    with _LOCK:
        cached = _CACHE.get(str(p))
        if cached and cached[0] == key:
            return cached[1]
    try:
        manifest = _convert(_DECODER.decode(p.read_bytes()), p)
    except msgspec.ValidationError as exc:
        raise ValueError(f"manifest_path={str(p)!r}: not a dbt manifest ({exc})") from exc
    except msgspec.DecodeError as exc:
        raise ValueError(f"manifest_path={str(p)!r}: not valid JSON ({exc})") from exc
    with _LOCK:
        _CACHE[str(p)] = (key, manifest)
    return manifest
