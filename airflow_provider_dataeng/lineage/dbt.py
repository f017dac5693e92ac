"""The lineage of a dbt task from its manifest: per model, the model's relation is an output and its
parents (models, seeds, snapshots, sources) outside the task are inputs; dbt tests become data-quality
assertions on the relation they test; rows from run_results.json become ``outputStatistics``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from airflow_provider_dataeng.lineage import facets as f
from airflow_provider_dataeng.lineage.datasets import DatasetId, relation_dataset
from airflow_provider_dataeng.lineage.tasks import best_effort, operator_databases, schemas, task_result
from airflow_provider_dataeng.specs import build_spec

PASSED = frozenset({"pass", "success"})


class _TestMetadata(msgspec.Struct):
    name: str | None = None


class _TestNode(msgspec.Struct):
    resource_type: str = ""
    column_name: str | None = None
    test_metadata: _TestMetadata | None = None


class _Tests(msgspec.Struct):
    nodes: dict[str, _TestNode] = {}


def _tests_of(path: Path) -> dict[str, _TestNode]:
    """The test nodes' kind and column (what :mod:`airflow_provider_dataeng.dbt.manifest` leaves out)."""
    raw = msgspec.json.decode(path.read_bytes(), type=_Tests)
    return {uid: n for uid, n in raw.nodes.items() if n.resource_type == "test"}


@operator_databases
def dbt_lineage(operator: Any, task_instance: Any = None) -> Any:
    from airflow_provider_dataeng.dbt.manifest import RENDERED_TYPES, load_manifest
    from airflow_provider_dataeng.dbt.selection import select_nodes
    from airflow_provider_dataeng.dbt.spec import DbtSpec

    spec = build_spec(operator, DbtSpec)
    namespace = spec.asset_namespace or spec.conn_id
    result = task_result(task_instance) if task_instance is not None else None
    if task_instance is not None and not isinstance(result, dict):  # dbt failed: DbtOperator pushed its results
        result = best_effort("dbt results", lambda: task_instance.xcom_pull(
            task_ids=task_instance.task_id, key="dbt_results"), None)
    result = result if isinstance(result, dict) else {}
    path = _manifest_path(result, spec.manifest_path)
    if path is None:
        return f.operator_lineage()
    manifest = load_manifest(path)
    # Names come from the manifest the Assets were built from (``manifest_path``, at DAG parse time), so a
    # relation's dataset is its Asset even where the run's manifest names another database.
    named = best_effort("the build-time manifest", lambda: load_manifest(spec.manifest_path), manifest
                        ) if spec.manifest_path else manifest
    ran: dict[str, str] = {n["node"]: n["status"] for n in result.get("nodes") or [] if isinstance(n, dict)}
    rows = {n["node"]: n.get("rows") for n in result.get("nodes") or [] if isinstance(n, dict)}
    if ran:
        models = [u for u, s in ran.items() if u in manifest.nodes and manifest.nodes[u].resource_type in
                  RENDERED_TYPES and s in PASSED]
    else:
        models = sorted(select_nodes(manifest, spec.select, spec.exclude, spec.selector, RENDERED_TYPES))

    def dataset(uid: str) -> DatasetId | None:
        node = named.all_nodes.get(uid) or manifest.all_nodes.get(uid)
        if node is None or not node.relation_name:
            return None
        return best_effort(f"dataset of {uid}", lambda: relation_dataset(node.relation_name, namespace), None)

    outputs = {u: d for u in models if (d := dataset(u)) is not None}
    inputs: dict[str, DatasetId] = {}
    for uid in models:
        for parent in manifest.parents(uid):
            if parent not in outputs and parent not in inputs and (d := dataset(parent)) is not None:
                inputs[parent] = d
    if task_instance is None:
        return f.operator_lineage([f.input_dataset(d) for d in inputs.values()],
                                  [f.output_dataset(d) for d in outputs.values()])
    tests = {u: s for u, s in ran.items() if u in manifest.nodes and manifest.nodes[u].resource_type == "test"}
    assertions = best_effort("dbt test assertions", lambda: _assertions(manifest, path, tests), {})
    found = schemas(operator, spec.conn_id, [*inputs.values(), *outputs.values()])

    def facets(uid: str, d: DatasetId) -> dict[str, Any]:
        return {"schema": found.get(d.table), "dataQualityAssertions": assertions.get(uid)}

    return f.operator_lineage(
        [f.input_dataset(d, facets(u, d)) for u, d in inputs.items()],
        [f.output_dataset(d, facets(u, d), {"outputStatistics": f.output_statistics(rows[u]) if rows.get(u)
                                            is not None else None}) for u, d in outputs.items()])


def _manifest_path(result: Mapping[str, Any], manifest_path: str | None) -> Path | None:
    """The manifest the run wrote (``target_dir``), else the build-time one (``manifest_path``)."""
    candidates = [Path(result["target_dir"]) / "manifest.json"] if result.get("target_dir") else []
    candidates += [Path(manifest_path)] if manifest_path else []
    return next((p for p in candidates if p.is_file()), None)


def _assertions(manifest: Any, path: Path, tests: Mapping[str, str]) -> dict[str, Any]:
    """``{tested node: dataQualityAssertions facet}`` from the dbt tests that ran (status pass/fail)."""
    if not tests:
        return {}
    raw = _tests_of(path)
    by_node: dict[str, list[dict[str, Any]]] = {}
    for uid, status in tests.items():
        node = manifest.nodes[uid]
        meta = raw.get(uid)
        kind = (meta.test_metadata.name if meta and meta.test_metadata else None) or node.name
        result = {"check": node.name, "kind": kind, "passed": status in PASSED, "observed": status,
                  "column": meta.column_name if meta else None}
        for tested in _tested(node):
            by_node.setdefault(tested, []).append(result)
    return {uid: f.assertions_facet(results, None) for uid, results in by_node.items()}


def _tested(node: Any) -> Iterable[str]:
    return [node.attached_node] if node.attached_node else list(node.depends_on)
