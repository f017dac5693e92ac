"""Helpers for the DAG factory tests: config directories with the loader, DagBag over them."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LOADER = REPO_ROOT / "dags" / "dataeng_dags.py"
EXAMPLE_CONFIGS = REPO_ROOT / "dags" / "configs"
EMPTY = "airflow.providers.standard.operators.empty.EmptyOperator"

DEFAULTS = """\
owner: tests
start_date: 2026-01-01
retries: 2
retry_delay: 1m
resources: {cpu: 250m, memory: 256Mi}
"""


def empty_pipeline(*task_names: str, chain: bool = True, extra: str = "") -> str:
    """A pipeline of EmptyOperator tasks (chained in order when ``chain``)."""
    lines = ['schedule: "@daily"']
    if extra:
        lines.append(textwrap.dedent(extra).strip())
    lines.append("tasks:")
    for i, name in enumerate(task_names):
        lines.append(f"  {name}:")
        lines.append(f"    operator: {EMPTY}")
        if chain and i:
            lines.append(f"    depends_on: [{task_names[i - 1]}]")
    return "\n".join(lines) + "\n"


def write_dags_folder(root: Path, configs: dict[str, str], defaults: str | None = DEFAULTS) -> Path:
    """``root/dataeng_dags.py`` (the real loader) + ``root/configs/<name>`` files; returns ``root``."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    shutil.copy(LOADER, root / "dataeng_dags.py")
    if defaults is not None:
        (root / "configs" / "defaults.yaml").write_text(defaults)
    for name, text in configs.items():
        (root / "configs" / name).write_text(textwrap.dedent(text))
    return root


def dagbag(folder: Path) -> Any:
    """A DagBag over ``folder`` (what the DAG processor does)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))
