"""The dbt documentation site (``dbt docs generate``) in a stable place, with a link per model.

A ``docs generate`` task (or the build step ``parse_project --docs``, which needs no database) writes
``index.html``, ``manifest.json`` and ``catalog.json``; :func:`publish_docs` copies them into the docs
directory (``docs_dir``, default ``<state root>/docs``), replacing the previous site atomically, so a web
server (e.g. the ingestion dashboard's plugin) can serve it. :func:`model_doc_path` is the link of one node
inside the site.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from airflow_provider_dataeng.dbt.artifacts import state_root

SITE_FILES = ("index.html", "manifest.json", "catalog.json")


def docs_root(docs_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where docs sites are published: ``docs_dir`` or ``<state root>/docs``."""
    return Path(docs_dir) if docs_dir else state_root() / "docs"


def publish_docs(target_dir: Path, dest: Path) -> Path:
    """Copy the site from a run's target dir to ``dest`` (swapped in whole: readers never see half a site)."""
    missing = [name for name in SITE_FILES if not (target_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"dbt docs generate left no {', '.join(missing)} in {target_dir}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(dest.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in SITE_FILES:
        shutil.copy2(target_dir / name, staging / name)
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def model_doc_path(unique_id: str) -> str:
    """The page of one node in the site, relative to its directory (``index.html#!/model/<unique id>``)."""
    kind = unique_id.split(".", 1)[0]
    return f"index.html#!/{kind}/{unique_id}"
