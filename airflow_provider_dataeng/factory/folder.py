"""Build every DAG of a config directory, one file at a time: a broken file becomes its placeholder DAG.

Whatever goes wrong with one file (unreadable, undecodable, hostile YAML, invalid, slow, a bug of ours),
the other pipelines still load. Only a file that vanished mid-scan is skipped (it is gone).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_dataeng.factory.builder import build_dag
from airflow_provider_dataeng.factory.errors import ConfigError, ConfigIssue
from airflow_provider_dataeng.factory.loader import (
    CONFIG_SUFFIXES,
    IssueCollector,
    LoadedPipeline,
    SourceFile,
    config_files,
    deep_merge,
    load_defaults,
    load_pipeline,
    prescan_dag_id,
)
from airflow_provider_dataeng.factory.reading import Budget, FileVanished, Limits

log = logging.getLogger(__name__)


class ConfigWarning(UserWarning):
    """Emitted once per broken config while the DAG file is imported (Airflow's DagBag records it)."""


@dataclass
class BuildResult:
    """DAGs by id (placeholders for broken files included), the errors by config file, vanished files."""

    dags: dict[str, Any] = field(default_factory=dict)
    errors: dict[Path, ConfigError] = field(default_factory=dict)
    vanished: list[Path] = field(default_factory=list)


def _reraise_if_timeout(exc: BaseException) -> None:
    """Airflow's ``dagbag_import_timeout`` raises inside whatever runs: never swallow it."""
    if type(exc).__name__ == "AirflowTaskTimeout":
        raise exc


def unexpected(path: Path, stage: str, exc: BaseException) -> ConfigError:
    """A ConfigError for an exception no check anticipated (logged with its traceback)."""
    _reraise_if_timeout(exc)
    log.error("%s %s failed unexpectedly", stage, path, exc_info=exc)
    return ConfigError([ConfigIssue(file=str(path), path=(), line=1,
                                    message=f"{stage} failed: {type(exc).__name__}: {exc}"[:2000])])


def winners(ids: dict[Path, str]) -> dict[Path, Path]:
    """For files sharing a dag id: loser -> winner (the file named after the id, else the first by name)."""
    by_id: dict[str, list[Path]] = {}
    for path, dag_id in ids.items():
        by_id.setdefault(dag_id, []).append(path)
    out: dict[Path, Path] = {}
    for dag_id, paths in by_id.items():
        if len(paths) > 1:
            paths = sorted(paths, key=lambda f: (f.stem != dag_id, str(f)))
            for loser in paths[1:]:
                out[loser] = paths[0]
    return out


def narrow_files(files: list[Path], dag_id: str) -> list[Path]:
    """The config files that can define ``dag_id`` (cheap pre-scan of ``dag_id:`` lines; no YAML parsing)."""
    from airflow_provider_dataeng.factory.placeholder import placeholder_dag_id

    return [f for f in files if dag_id in (prescan_dag_id(f), placeholder_dag_id(f))]


def files_for_dag(directory: Path, dag_id: str) -> tuple[list[Path], bool]:
    """``(files, sole)``: the config files that can define ``dag_id`` ([] if none); ``sole`` when it is the
    file named after the id, which keeps the id whatever other files say (no need to scan them)."""
    for suffix in CONFIG_SUFFIXES:
        named = directory / f"{dag_id}{suffix}"
        if named.is_file() and prescan_dag_id(named) == dag_id:
            return [named], True
    return narrow_files(config_files(directory), dag_id), False


def _load_one(path: Path, defaults: SourceFile | None, limits: Limits) -> LoadedPipeline:
    try:
        return load_pipeline(path, defaults, limits)
    except (ConfigError, FileVanished):
        raise
    except Exception as exc:  # RecursionError, MemoryError, a bug of ours: this file only
        error = unexpected(path, "loading the config", exc)
        error.salvage = defaults.data if defaults is not None else None
        raise error from None


def load_directory(directory: Path, only_dag_id: str | None = None, limits: Limits | None = None,
                   vanished: list[Path] | None = None) -> tuple[dict[Path, LoadedPipeline], dict[Path, ConfigError]]:
    """Validate the pipelines of a directory (all, or those that can define ``only_dag_id``)."""
    limits = limits or Limits.from_settings()
    files, sole = files_for_dag(directory, only_dag_id) if only_dag_id else ([], False)
    if not files:
        files, sole = config_files(directory), False
    loaded: dict[Path, LoadedPipeline] = {}
    errors: dict[Path, ConfigError] = {}
    defaults = None
    defaults_error: ConfigError | None = None
    try:
        defaults = load_defaults(directory, limits)
    except ConfigError as exc:
        defaults_error = exc
    except Exception as exc:
        defaults_error = unexpected(directory / "defaults.yaml", "loading the defaults", exc)
    for f in files:
        if defaults_error is not None:
            errors[f] = ConfigError([ConfigIssue(
                file=str(f), path=(), line=1, message="inherits an invalid defaults.yaml (errors below)")]
                + defaults_error.issues)
            continue
        try:
            loaded[f] = _load_one(f, defaults, limits)
        except ConfigError as exc:
            errors[f] = exc
        except FileVanished:
            log.warning("Config %s disappeared while the folder was read; skipped", f)
            if vanished is not None:
                vanished.append(f)
    if sole:
        return loaded, errors
    # Duplicate dag ids: among everything in the directory (prescan for files not loaded here).
    ids = {f: (loaded[f].dag_id if f in loaded else prescan_dag_id(f)) for f in config_files(directory)}
    for loser, winner in winners(ids).items():
        if loser in loaded:
            lp = loaded.pop(loser)
            collector = IssueCollector(lp.source)
            collector.add(("dag_id",), f"dag_id '{ids[loser]}' is already defined by {winner.name}; dag ids "
                          "must be unique across config files", found=repr(ids[loser]))
            errors[loser] = ConfigError(collector.issues, salvage=_merged(lp))
    return loaded, errors


def _merged(lp: LoadedPipeline) -> Any:
    return deep_merge(lp.defaults_source.data, lp.source.data) if lp.defaults_source else lp.source.data


def _build_one(lp: LoadedPipeline, limits: Limits) -> Any:
    budget = Budget(lp.file, limits.budget_s)
    try:
        dag = build_dag(lp)
        budget.check("building the DAG")
        return dag
    except ConfigError as exc:
        exc.salvage = _merged(lp)
        raise
    except Exception as exc:  # a bug must not take the other pipelines down
        error = unexpected(lp.file, "building the DAG", exc)
        error.salvage = _merged(lp)
        raise error from None


def build_dags(directory: str | Path, only_dag_id: str | None = None) -> BuildResult:
    """Build every pipeline of ``directory``; a broken file becomes a placeholder DAG, an ERROR log and a
    :class:`ConfigWarning`.

    With ``only_dag_id`` (Airflow's parsing context in a task pod) only the file(s) that can define that
    DAG are read and built; when no file can, everything is built.
    """
    from airflow_provider_dataeng.factory.placeholder import build_placeholder, placeholder_dag_id

    directory = Path(directory)
    result = BuildResult()
    try:
        limits = Limits.from_settings()
    except ValueError as exc:  # a malformed [dataeng] option: say so, use the defaults
        log.error("%s; using the default limits", exc)
        limits = Limits()
    try:
        if only_dag_id and not files_for_dag(directory, only_dag_id)[0]:
            only_dag_id = None  # no file defines it: build everything (the DAG processor's view)
        loaded, errors = load_directory(directory, only_dag_id, limits, result.vanished)
    except OSError as exc:  # the folder itself is missing or unreadable: nothing to build, say why
        log.error("Cannot read the pipeline config folder %s: %s", directory, exc)
        return result
    for path, lp in loaded.items():
        try:
            result.dags[lp.dag_id] = _build_one(lp, limits)
        except ConfigError as exc:
            errors[path] = exc
    dup_losers = winners({f: prescan_dag_id(f) for f in errors})
    for path, exc in sorted(errors.items()):
        result.errors[path] = exc
        log.error("Invalid pipeline config %s (placeholder DAG shows it in the UI):\n%s", path, exc.format())
        warnings.warn(f"invalid pipeline config {path}: {exc.format()[:1000]}", ConfigWarning, stacklevel=2)
        dag_id = prescan_dag_id(path)
        if dag_id in result.dags or path in dup_losers or any(
                i.path == ("dag_id",) and "already defined" in i.message for i in exc.issues):
            dag_id = placeholder_dag_id(path)
        if only_dag_id and dag_id != only_dag_id:
            continue
        result.dags.update(build_placeholder(dag_id, path, exc))
    return result
