"""A dbt task's working copy: start from the build-time parse, notice a stale one, install packages.

Build time (``make manifest`` / CI, :mod:`~airflow_provider_dataeng.dbt.parse_project`) leaves in the
project's target dir ``manifest.json``, ``partial_parse.msgpack`` and ``dataeng_build_info.json`` (a
sha256 per project file and the parse-time profile). Each task try then gets its own ``target/`` seeded
with that ``partial_parse.msgpack``, so dbt skips the full parse; dbt still re-parses any file whose
checksum changed. :func:`stale_files` compares the project with the recorded checksums, so a project
changed without rebuilding the artifacts is logged (the DAG's shape comes from the old manifest) instead
of going unseen.

dbt discards a saved parse when the profile's connection info differs (``profile has changed``), and the
build-time profile is a placeholder (no database is contacted at build time). What a parse actually takes
from the profile is the target database and schema (relation names); when those agree, :func:`adopt_parse`
re-stamps the copied parse with the task's profile hash so dbt keeps it. The stamp is replaced only where
the recorded build-time hash is found, so a dbt that hashes differently simply parses in full.

``install_deps``: the project is copied into the try directory and ``dbt deps`` runs there (the shipped
project stays read-only; packages installed at build time are used otherwise).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_provider_dataeng.dbt.profile import DbtProfile

BUILD_INFO_FILE = "dataeng_build_info.json"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
DBT_DISTRIBUTIONS = ("dbt-core", "dbt-postgres", "dbt-adapters")
# Not project sources: build output, installed packages, logs, VCS and editor state.
_SKIP_DIRS = frozenset({"target", "logs", "dbt_packages", "dbt_modules", "__pycache__", "node_modules"})


def _project_files(project_dir: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(project_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def project_fingerprint(project_dir: str | os.PathLike[str]) -> dict[str, str]:
    """``{relative path: sha256}`` of the project's source files (what dbt parses)."""
    root = Path(project_dir)
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in _project_files(root)
    }


def _value_hash(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def parsed_env_vars(target_dir: str | os.PathLike[str]) -> dict[str, str | None] | None:
    """``{name: sha256 of value}`` of the environment variables the parse in ``target_dir`` read (dbt keeps
    their values in ``partial_parse.msgpack``; only hashes are recorded). None: unknown."""
    try:
        import msgpack  # dbt-core's dependency; absent when dbt lives in another virtualenv

        data = msgpack.unpackb((Path(target_dir) / PARTIAL_PARSE_FILE).read_bytes(), raw=False,
                               strict_map_key=False)
    except Exception:  # no msgpack, no parse file, another format: unknown
        return None
    env_vars = data.get("env_vars") if isinstance(data, dict) else None
    if not isinstance(env_vars, dict):
        return None
    return {str(k): _value_hash(v if isinstance(v, str) else None) for k, v in env_vars.items()}


def changed_env_vars(info: dict[str, Any], env: dict[str, str]) -> list[str] | None:
    """Environment variables read by the project whose value differs from the build's (None: unknown)."""
    recorded = info.get("env_vars")
    if not isinstance(recorded, dict):
        return None
    return sorted(k for k, h in recorded.items() if _value_hash(env.get(k)) != h)


def write_build_info(project_dir: str | os.PathLike[str], target_dir: str | os.PathLike[str],
                     profile: DbtProfile) -> Path:
    """Record the project's file checksums, the environment variables its parse read (hashed), the dbt
    versions and the parse-time profile beside the build-time manifest."""
    path = Path(target_dir) / BUILD_INFO_FILE
    info = {"profile_hash": profile.parse_hash(), "database": profile.dbname, "schema": profile.schema,
            "dbt_versions": dbt_versions(), "env_vars": parsed_env_vars(target_dir),
            "files": project_fingerprint(project_dir)}
    path.write_text(json.dumps(info, indent=0, sort_keys=True))
    return path


def read_build_info(artifacts_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The build info written with the artifacts (None: none there, e.g. artifacts made by plain dbt)."""
    try:
        info = json.loads((Path(artifacts_dir) / BUILD_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("files"), dict) else None


def dbt_versions() -> dict[str, str | None]:
    """Installed versions of the distributions whose code shapes a parse (read without importing dbt)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in DBT_DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def reuse_problem(project_dir: str | os.PathLike[str], info: dict[str, Any], vars: dict[str, Any] | None) -> str | None:
    """Why dbt should not be handed the build-time Manifest as is, nor skip its file diff (None: it may).

    Called only for a try that starts from the build-time parse of a project unchanged since, file by file
    (:func:`stale_files`) and in the environment variables it reads (:func:`changed_env_vars`), for the same
    database and schema (:func:`adopt_parse`). What else would make dbt drop the saved parse is checked
    here: the dbt versions, ``--vars`` (none may be passed), installed packages (none may be declared:
    their files are not in the build info), environment variables read by ``dbt_project.yml``.
    """
    built = info.get("dbt_versions")
    if not isinstance(built, dict):
        return "the build info records no dbt versions (artifacts built by an older parse_project)"
    now = dbt_versions()
    if built != now:
        return f"the artifacts were built with {built}, this worker has {now}"
    if vars:
        return "the task passes --vars (dbt compares them with the parse's)"
    if declares_packages(project_dir):
        return "the project declares packages (dbt checks the installed ones)"
    try:
        reads_env = "env_var" in (Path(project_dir) / "dbt_project.yml").read_text()
    except OSError:
        reads_env = True
    if reads_env:
        return "dbt_project.yml reads environment variables (dbt compares them with the parse's)"
    return None


def stale_files(project_dir: str | os.PathLike[str], info: dict[str, Any]) -> list[str]:
    """Project files added, removed or changed since the artifacts were built."""
    built = info["files"]
    now = project_fingerprint(project_dir)
    return sorted(p for p in set(built) | set(now) if built.get(p) != now.get(p))


def adopt_parse(target_dir: Path, info: dict[str, Any], profile: DbtProfile) -> str | None:
    """Let dbt keep the copied build-time parse under the task's profile; None on success, else why not."""
    if (info.get("database"), info.get("schema")) != (profile.dbname, profile.schema):
        return (f"it was made for {info.get('database')}.{info.get('schema')} and this task targets "
                f"{profile.dbname}.{profile.schema} (set DATAENG_DBT_DBNAME/DATAENG_DBT_SCHEMA at build time)")
    path = target_dir / PARTIAL_PARSE_FILE
    data = path.read_bytes()
    old, new = str(info.get("profile_hash", "")).encode(), profile.parse_hash().encode()
    if old == new:
        return None
    if len(old) != len(new) or data.count(old) != 1:
        return "its profile stamp is not the one recorded at build time (another dbt version?)"
    path.write_bytes(data.replace(old, new))
    return None


def seed_target(artifacts_dir: str | os.PathLike[str], target_dir: Path) -> bool:
    """Copy the build-time ``partial_parse.msgpack`` into this try's target dir (False: none shipped)."""
    source = Path(artifacts_dir) / PARTIAL_PARSE_FILE
    if not source.is_file():
        return False
    target_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target_dir / PARTIAL_PARSE_FILE)
    return True


def copy_project(project_dir: str | os.PathLike[str], dest: Path) -> Path:
    """A writable copy of the project's sources (no target/, logs/ or installed packages) at ``dest``."""
    root = Path(project_dir)
    if dest.exists():
        shutil.rmtree(dest)
    for path in _project_files(root):
        out = dest / path.relative_to(root)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
    return dest


PACKAGE_FILES = ("packages.yml", "dependencies.yml")


def anchor_local_packages(copy_dir: Path, original_dir: str | os.PathLike[str]) -> None:
    """In a project copy, make ``local:`` package paths absolute (they are relative to the original)."""
    import yaml

    for name in PACKAGE_FILES:
        path = copy_dir / name
        if not path.is_file():
            continue
        doc = yaml.safe_load(path.read_text()) or {}
        changed = False
        for entry in doc.get("packages") or []:
            local = entry.get("local") if isinstance(entry, dict) else None
            if isinstance(local, str) and not os.path.isabs(local):
                entry["local"] = str((Path(original_dir) / local).resolve())
                changed = True
        if changed:
            path.write_text(yaml.safe_dump(doc, sort_keys=False))


def declares_packages(project_dir: str | os.PathLike[str]) -> bool:
    """Whether the project lists packages (``packages.yml`` or ``dependencies.yml`` with ``packages:``)."""
    import yaml

    for name in PACKAGE_FILES:
        path = Path(project_dir) / name
        if path.is_file() and (yaml.safe_load(path.read_text()) or {}).get("packages"):
            return True
    return False
