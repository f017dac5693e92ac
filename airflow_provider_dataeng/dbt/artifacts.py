"""Where a dbt task's artifacts live: one directory per (dag, task, run), one ``try-<n>`` per attempt.

State root: ``$DATAENG_DBT_STATE_DIR`` or ``<tempdir>/dataeng-dbt``. An Airflow retry finds the previous
try's ``run_results.json`` there and runs ``dbt retry`` on it (only failed and skipped nodes).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

STATE_DIR_ENV = "DATAENG_DBT_STATE_DIR"
KEEP_RUN_DIRS_DAYS = 7
_SAFE_PATH = re.compile(r"[^A-Za-z0-9._=-]+")


def sanitize_path_part(text: str) -> str:
    """A file-name-safe form of a dag id, task id or run id."""
    return _SAFE_PATH.sub("_", text).strip("._") or "_"


def state_root() -> Path:
    """Root of per-run dbt artifacts: ``$DATAENG_DBT_STATE_DIR`` or ``<tempdir>/dataeng-dbt``."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path(tempfile.gettempdir()) / "dataeng-dbt")


def run_state_dir(dag_id: str, task_id: str, run_id: str, map_index: int = -1, root: Path | None = None) -> Path:
    """Stable per-(dag, task, run) directory that holds one ``try-<n>`` directory per attempt."""
    task = sanitize_path_part(task_id) + (f".{map_index}" if map_index is not None and map_index >= 0 else "")
    return (root or state_root()) / sanitize_path_part(dag_id) / task / sanitize_path_part(run_id)


def previous_try_dir(run_dir: Path, try_number: int) -> Path | None:
    """The newest earlier ``try-<n>`` (n < try_number) that left a run_results.json, if any."""
    best: tuple[int, Path] | None = None
    if not run_dir.is_dir():
        return None
    for child in run_dir.iterdir():
        m = re.fullmatch(r"try-(\d+)", child.name)
        if not m or int(m.group(1)) >= try_number:
            continue
        if (child / "target" / "run_results.json").is_file() and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), child)
    return best[1] if best else None


def seed_partial_parse(previous_target: Path, target: Path) -> bool:
    """Copy a previous parse (``partial_parse.msgpack``) into ``target``; dbt re-parses what changed."""
    source = previous_target / "partial_parse.msgpack"
    if not source.is_file():
        return False
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target / "partial_parse.msgpack")
    return True


def prune_old_runs(task_dir: Path, keep: Path, max_age_days: float = KEEP_RUN_DIRS_DAYS) -> None:
    """Delete this task's run directories older than ``max_age_days`` (never ``keep``)."""
    if not task_dir.is_dir():
        return
    cutoff = time.time() - max_age_days * 86400
    for child in task_dir.iterdir():
        try:
            if child != keep and child.is_dir() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            continue
