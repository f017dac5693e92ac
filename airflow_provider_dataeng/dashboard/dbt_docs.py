"""dbt documentation sites (``dbt docs generate`` output) that the dashboard serves, and their models.

Sites are found in the directories of ``[dataeng] dbt_docs_dirs`` (default: where ``docs generate`` tasks
publish, :func:`airflow_provider_dataeng.dbt.docs.docs_root`):

* ``<dir>/<dag_id>.<task_id>/index.html``: published by a ``docs generate`` task of DAG ``dag_id``; only
  users who may read that DAG see and open it;
* ``<dir>/index.html``: a site built without a DAG (the build step ``parse_project --docs`` writes one into
  the project's ``target/``); every signed-in user sees it.

A site's models (and seeds, snapshots, sources) come from its ``manifest.json``, read again only when the
file changes. A node's page is ``<site url>#!/<kind>/<unique id>`` (:func:`~airflow_provider_dataeng.dbt.docs.model_doc_path`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_dataeng.dbt.docs import SITE_FILES, model_doc_path

NODE_KINDS = ("model", "seed", "snapshot")
_SITE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")


@dataclass(frozen=True)
class DocsSite:
    id: str  # the URL segment: dbt-docs/<id>/
    path: Path
    dag_id: str | None
    task_id: str | None


@dataclass(frozen=True)
class DocsNode:
    unique_id: str
    name: str
    kind: str  # model, seed, snapshot, source
    schema: str
    identifier: str


def find_sites(dirs: Iterable[str | Path], dag_ids: Iterable[str]) -> dict[str, DocsSite]:
    """The sites under ``dirs`` that a user who may read ``dag_ids`` may see, by id."""
    readable = sorted(set(dag_ids), key=len, reverse=True)  # longest first: "a.b" before "a"
    out: dict[str, DocsSite] = {}
    for raw in dirs:
        root = Path(raw)
        if (root / "index.html").is_file():
            name = root.parent.name if root.name == "target" else root.name
            site_id = f"build.{name}" if _SITE_ID.match(f"build.{name}") else "build"
            out.setdefault(site_id, DocsSite(site_id, root, None, None))
        try:
            children = sorted(p for p in root.iterdir() if p.is_dir() and (p / "index.html").is_file())
        except OSError:
            continue
        for child in children:
            if not _SITE_ID.match(child.name) or child.name.endswith((".new", ".old")):
                continue
            dag_id = next((d for d in readable if child.name.startswith(d + ".")), None)
            if dag_id is None:
                continue  # a DAG the user may not read (or one that is gone)
            out.setdefault(child.name, DocsSite(child.name, child, dag_id, child.name[len(dag_id) + 1:]))
    return out


_nodes: dict[Path, tuple[tuple[int, int], list[DocsNode]]] = {}
_nodes_lock = threading.Lock()


def site_nodes(site: DocsSite) -> list[DocsNode]:
    """Models, seeds, snapshots and sources of a site's manifest.json (cached until the file changes)."""
    manifest = site.path / "manifest.json"
    try:
        st = manifest.stat()
    except OSError:
        return []
    stamp = (st.st_mtime_ns, st.st_size)
    with _nodes_lock:
        cached = _nodes.get(manifest)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        data = json.loads(manifest.read_bytes())
    except (OSError, ValueError):
        return []
    nodes = []
    for uid, node in (data.get("nodes") or {}).items():
        if node.get("resource_type") in NODE_KINDS:
            nodes.append(DocsNode(uid, str(node.get("name")), node["resource_type"], str(node.get("schema") or ""),
                                  str(node.get("alias") or node.get("name"))))
    for uid, node in (data.get("sources") or {}).items():
        nodes.append(DocsNode(uid, f"{node.get('source_name')}.{node.get('name')}", "source",
                              str(node.get("schema") or ""), str(node.get("identifier") or node.get("name"))))
    nodes.sort(key=lambda n: (n.kind != "model", n.kind, n.name))
    with _nodes_lock:
        if len(_nodes) > 256:
            _nodes.clear()
        _nodes[manifest] = (stamp, nodes)
    return nodes


def sites_json(sites: dict[str, DocsSite]) -> list[dict[str, Any]]:
    """What the page needs: per site its URL (relative to the page) and a link per node."""
    out = []
    for site in sites.values():
        url = f"../dbt-docs/{site.id}/"
        out.append({
            "id": site.id, "dag_id": site.dag_id, "task_id": site.task_id, "url": url,
            "nodes": [
                {"unique_id": n.unique_id, "name": n.name, "kind": n.kind, "relation": f"{n.schema}.{n.identifier}",
                 "url": url + model_doc_path(n.unique_id).removeprefix("index.html")}
                for n in site_nodes(site)
            ],
        })
    return out


def site_file(site: DocsSite, name: str) -> Path | None:
    """One of the site's files (index.html, manifest.json, catalog.json); nothing else is served."""
    if name not in SITE_FILES:
        return None
    path = site.path / name
    return path if path.is_file() else None
