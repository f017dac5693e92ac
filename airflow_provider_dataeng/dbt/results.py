"""What a dbt invocation reports: ``run_results.json`` (or ``sources.json``) read into small summaries."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# dbt commands whose failed/skipped nodes `dbt retry` can re-run.
RETRYABLE_COMMANDS = ("build", "run", "test", "seed", "snapshot", "compile")
RETRYABLE_STATUSES = frozenset({"error", "fail", "skipped", "runtime error", "partial success"})
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})


class DbtRunError(RuntimeError):
    """dbt finished with failures; ``result`` holds the summary."""

    def __init__(self, message: str, result: DbtRunResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class DbtNodeResult:
    """One row of run_results.json, trimmed to what the log and XCom need."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    execution_time: float
    rows: int | None = None
    message: str | None = None
    failures: int | None = None
    compiled_path: str | None = None


@dataclass
class DbtRunResult:
    """Summary of one dbt invocation."""

    command: str
    success: bool
    elapsed: float
    run_dir: str
    target_dir: str
    log_path: str
    retried_from: str | None = None
    nodes: list[DbtNodeResult] = field(default_factory=list)
    error: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes:
            out[node.status] = out.get(node.status, 0) + 1
        return out

    @property
    def failed(self) -> list[DbtNodeResult]:
        return [n for n in self.nodes if n.status in FAILED_STATUSES]

    def as_xcom(self, max_nodes: int = 1000) -> dict[str, Any]:
        """A small JSON-able dict: counts, failures and per-node status/time/rows."""
        return {
            "command": self.command,
            "success": self.success,
            "elapsed_s": round(self.elapsed, 3),
            "retried_from": self.retried_from,
            "target_dir": self.target_dir,
            "counts": self.counts,
            "failed": [asdict(n) for n in self.failed],
            "nodes": [
                {"node": n.unique_id, "status": n.status, "time_s": round(n.execution_time, 3), "rows": n.rows}
                for n in self.nodes[:max_nodes]
            ],
            "error": self.error,
        }

    def table(self) -> str:
        """A fixed-width table for the task log: node, status, time, rows."""
        width = max([len(n.unique_id) for n in self.nodes] + [4])
        lines = [f"{'node':<{width}}  {'status':<13} {'time_s':>8} {'rows':>10}"]
        for n in self.nodes:
            rows = "" if n.rows is None else str(n.rows)
            lines.append(f"{n.unique_id:<{width}}  {n.status:<13} {n.execution_time:>8.2f} {rows:>10}")
        lines.append(", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "no nodes ran")
        return "\n".join(lines)

    def failure_message(self) -> str:
        """Names each failed node, its error and the compiled SQL path."""
        if not self.failed:
            return f"dbt {self.command} failed: {self.error or 'see the dbt log at ' + self.log_path}"
        parts = [f"dbt {self.command}: {len(self.failed)} node(s) failed"]
        for n in self.failed:
            msg = (n.message or "").strip().replace("\n", " ")
            parts.append(f"- {n.unique_id} [{n.status}]: {msg[:500]} (compiled SQL: {n.compiled_path or 'n/a'})")
        return "\n".join(parts)


def needs_retry(previous_target: Path) -> bool:
    """True when the previous run_results.json has failed or skipped nodes (what ``dbt retry`` re-runs)."""
    try:
        data = json.loads((previous_target / "run_results.json").read_text())
    except (OSError, ValueError):
        return False
    which = (data.get("args") or {}).get("which")
    if which not in (*RETRYABLE_COMMANDS, "retry"):
        return False
    return any(r.get("status") in RETRYABLE_STATUSES for r in data.get("results", []))


def summarize_results(target_dir: Path) -> list[DbtNodeResult]:
    """Read run_results.json (or sources.json for freshness) from ``target_dir``."""
    path = target_dir / "run_results.json"
    freshness = target_dir / "sources.json"
    if not path.is_file() and freshness.is_file():
        path = freshness
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    nodes: list[DbtNodeResult] = []
    for r in data.get("results", []):
        uid = r.get("unique_id", "")
        adapter = r.get("adapter_response") or {}
        rows = adapter.get("rows_affected")
        nodes.append(
            DbtNodeResult(
                unique_id=uid,
                name=uid.split(".")[2] if uid.count(".") >= 2 else uid,
                resource_type=uid.split(".", 1)[0],
                status=str(r.get("status")),
                execution_time=float(r.get("execution_time") or 0.0),
                rows=int(rows) if isinstance(rows, int) and rows >= 0 else None,
                message=r.get("message") or r.get("error"),
                failures=r.get("failures"),
            )
        )
    if any(n.status in FAILED_STATUSES for n in nodes):
        _attach_compiled_paths(target_dir, nodes)
    return nodes


def _attach_compiled_paths(target_dir: Path, nodes: list[DbtNodeResult]) -> None:
    """Fill ``compiled_path`` for failed nodes from this run's manifest.json (absolute paths)."""
    try:
        manifest = json.loads((target_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return
    all_nodes = manifest.get("nodes", {})
    for n in nodes:
        if n.status not in FAILED_STATUSES:
            continue
        node = all_nodes.get(n.unique_id) or {}
        compiled = node.get("compiled_path")
        if compiled:
            path = Path(compiled)
            n.compiled_path = str(path if path.is_absolute() else target_dir.parent / path)
        elif node.get("package_name") and node.get("original_file_path"):
            # dbt's own layout (get_target_write_path): one node per file, or <file>/<node path> (e.g. tests in YAML)
            original, own = node["original_file_path"], node.get("path") or ""
            rel = original if not own or Path(own).name == Path(original).name else str(Path(original) / own)
            n.compiled_path = str(target_dir / "compiled" / node["package_name"] / rel)
