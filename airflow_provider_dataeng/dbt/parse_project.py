"""Build-time ``dbt parse``: writes ``<project>/target/manifest.json`` for DAG rendering.

Run as ``python -m airflow_provider_dataeng.dbt.parse_project [project_dir] [--target-path DIR]``
(``make manifest`` and CI do). No database is contacted: the profile is a generated dummy whose fields
come from ``DATAENG_DBT_HOST/PORT/USER/DBNAME/SCHEMA`` (defaults: localhost, 5432, postgres,
``warehouse``, ``analytics``). The database and schema names end up in every model's relation_name,
hence in Asset URIs, so they should match production (database ``warehouse``, schema ``analytics``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from airflow_provider_dataeng.dbt.profile import PROFILE_NAME, TARGET_NAME, parse_time_profile
from airflow_provider_dataeng.dbt.runner import dbt_executable


def parse_project(project_dir: str | os.PathLike[str], target_path: str | os.PathLike[str] | None = None,
                  quiet: bool = False) -> Path:
    """Run ``dbt parse`` and return the path of the manifest.json it wrote."""
    project = Path(project_dir).resolve()
    if not (project / "dbt_project.yml").is_file():
        raise FileNotFoundError(f"project_dir={str(project)!r}: no dbt_project.yml there")
    target = Path(target_path).resolve() if target_path else project / "target"
    profiles = Path(tempfile.mkdtemp(prefix="dataeng-dbt-parse-"))
    try:
        (profiles / "profiles.yml").write_text(parse_time_profile().profiles_yml())
        cmd = [
            *dbt_executable(), "parse", "--project-dir", str(project), "--profiles-dir", str(profiles),
            "--profile", PROFILE_NAME, "--target", TARGET_NAME, "--target-path", str(target),
            "--log-path", str(target / "logs"), "--no-send-anonymous-usage-stats", "--no-version-check",
            "--no-use-colors", "--no-partial-parse",
        ]
        if quiet:
            cmd.append("--quiet")
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        proc = subprocess.run(cmd, env=env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"dbt parse of {project} failed (exit {proc.returncode})")
    finally:
        shutil.rmtree(profiles, ignore_errors=True)
    manifest = target / "manifest.json"
    if not manifest.is_file():
        raise RuntimeError(f"dbt parse of {project} wrote no {manifest}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project_dir", nargs="?", default="dbt_project")
    parser.add_argument("--target-path", default=None, help="where to write manifest.json (default <project>/target)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        manifest = parse_project(args.project_dir, args.target_path, quiet=args.quiet)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"manifest: {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
