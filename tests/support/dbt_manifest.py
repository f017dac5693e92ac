"""The example project's manifest.json for rendering tests: the build-time one when it is current,
else one produced by ``dbt parse`` into a temp dir (once per test session)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.support.dbt_shop import PROJECT_DIR

_CACHED: Path | None = None


def _newest_source_mtime(project: Path) -> float:
    newest = 0.0
    for path in project.rglob("*"):
        if path.is_file() and "target" not in path.relative_to(project).parts and "logs" not in path.parts:
            newest = max(newest, path.stat().st_mtime)
    return newest


def example_manifest() -> Path:
    """Path of a manifest.json that matches the current dbt_project/ sources."""
    global _CACHED
    if _CACHED is not None:
        return _CACHED
    built = PROJECT_DIR / "target" / "manifest.json"
    if built.is_file() and built.stat().st_mtime >= _newest_source_mtime(PROJECT_DIR):
        _CACHED = built
        return built
    from airflow_provider_dataeng.dbt.parse_project import parse_project

    _CACHED = parse_project(PROJECT_DIR, Path(tempfile.mkdtemp(prefix="dataeng-dbt-manifest-")) / "target", quiet=True)
    return _CACHED
