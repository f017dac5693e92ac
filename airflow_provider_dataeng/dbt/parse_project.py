"""Build-time dbt artifacts: ``dbt deps`` + ``dbt parse`` -> ``<project>/target/manifest.json``,
``partial_parse.msgpack`` (tasks start from it instead of parsing) and ``dataeng_build_info.json``.

Run as ``python -m airflow_provider_dataeng.dbt.parse_project [project_dir] [--target-path DIR] [--docs]``
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
from airflow_provider_dataeng.dbt.workspace import declares_packages, write_build_info


def parse_project(project_dir: str | os.PathLike[str], target_path: str | os.PathLike[str] | None = None,
                  quiet: bool = False, deps: bool | None = None, docs: bool = False) -> Path:
    """Build the artifacts tasks start from and return the path of manifest.json.

    ``dbt deps`` first when the project declares packages (``deps=None``) or when asked (installed into
    the project's ``dbt_packages``, shipped beside the manifest), then ``dbt parse`` (manifest.json,
    partial_parse.msgpack), then the build info (file checksums, parse-time profile); ``docs``: also ``dbt docs generate
    --empty-catalog`` (the documentation site without querying a database).
    """
    project = Path(project_dir).resolve()
    if not (project / "dbt_project.yml").is_file():
        raise FileNotFoundError(f"project_dir={str(project)!r}: no dbt_project.yml there")
    target = Path(target_path).resolve() if target_path else project / "target"
    profiles = Path(tempfile.mkdtemp(prefix="dataeng-dbt-parse-"))
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    common = ["--project-dir", str(project), "--profiles-dir", str(profiles), "--profile", PROFILE_NAME,
              "--target", TARGET_NAME, "--log-path", str(target / "logs"), "--no-send-anonymous-usage-stats",
              "--no-version-check", "--no-use-colors", *(["--quiet"] if quiet else [])]

    def dbt(*args: str) -> None:
        proc = subprocess.run([*dbt_executable(), *args, *common], env=env, check=False, cwd=str(project))
        if proc.returncode != 0:
            raise RuntimeError(f"dbt {args[0]} of {project} failed (exit {proc.returncode})")

    profile = parse_time_profile()
    try:
        (profiles / "profiles.yml").write_text(profile.profiles_yml())
        if deps or (deps is None and declares_packages(project)):
            dbt("deps")
        dbt("parse", "--target-path", str(target), "--no-partial-parse")
        if docs:
            dbt("docs", "generate", "--empty-catalog", "--no-compile", "--target-path", str(target))
    finally:
        shutil.rmtree(profiles, ignore_errors=True)
    manifest = target / "manifest.json"
    if not manifest.is_file():
        raise RuntimeError(f"dbt parse of {project} wrote no {manifest}")
    write_build_info(project, target, profile)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project_dir", nargs="?", default="dbt_project")
    parser.add_argument("--target-path", default=None, help="where to write manifest.json (default <project>/target)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--deps", action=argparse.BooleanOptionalAction, default=None,
                        help="run dbt deps first (default: when the project declares packages)")
    parser.add_argument("--docs", action="store_true", help="also build the docs site (dbt docs generate)")
    args = parser.parse_args(argv)
    try:
        manifest = parse_project(args.project_dir, args.target_path, quiet=args.quiet, deps=args.deps,
                                 docs=args.docs)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"manifest: {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
