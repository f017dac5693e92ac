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
from airflow_provider_dataeng.factory.errors import ConfigError, ConfigIssue, did_you_mean
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
from airflow_provider_dataeng.factory.schedule import ScheduleOn

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


def _load_into(loaded: dict[Path, LoadedPipeline], errors: dict[Path, ConfigError], f: Path,
               defaults: SourceFile | None, limits: Limits, vanished: list[Path] | None) -> None:
    try:
        loaded[f] = _load_one(f, defaults, limits)
    except ConfigError as exc:
        errors[f] = exc
    except FileVanished:
        log.warning("Config %s disappeared while the folder was read; skipped", f)
        if vanished is not None:
            vanished.append(f)


def _after_names(pipelines: Any) -> set[str]:
    return {name for lp in pipelines if isinstance(lp.pipeline.schedule, ScheduleOn)
            for name in lp.pipeline.schedule.after or []}


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
        _load_into(loaded, errors, f, defaults, limits, vanished)
    if only_dag_id:  # schedule: {after: [...]} needs the pipelines it names (and theirs)
        pending = _after_names(loaded.values())
        seen: set[str] = set()
        while pending - seen:
            name = sorted(pending - seen)[0]
            seen.add(name)
            for f in files_for_dag(directory, name)[0]:
                if f not in loaded and f not in errors and defaults_error is None:
                    _load_into(loaded, errors, f, defaults, limits, vanished)
            pending |= _after_names(loaded.values())
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


def outlets(dag: Any) -> list[Any]:
    """The Assets the tasks of ``dag`` update."""
    return [a for t in dag.tasks for a in (t.outlets or []) if hasattr(a, "uri")]


def build_loaded(loaded: dict[Path, LoadedPipeline], limits: Limits, broken: dict[Path, ConfigError]) -> tuple[
        dict[Path, Any], dict[Path, ConfigError]]:
    """Build every loaded pipeline; a pipeline scheduled ``after`` others is built after them (and fails
    with a clear error when one is unknown, broken or in a cycle)."""
    by_id = {lp.dag_id: path for path, lp in loaded.items()}
    broken_ids = {prescan_dag_id(p) for p in broken}
    dags: dict[Path, Any] = {}
    errors: dict[Path, ConfigError] = {}
    building: list[str] = []

    def outlets_of(name: str) -> list[Any]:
        path = by_id.get(name)
        if path is not None and path in dags:
            return outlets(dags[path])
        if path is not None and path in errors or name in broken_ids:
            raise LookupError(f"pipeline '{name}' is broken (its placeholder DAG shows why), so the tables it "
                              "updates are unknown")
        if name in building:
            raise LookupError("schedule.after cycle: " + " -> ".join(building[building.index(name):] + [name]))
        suggestion = did_you_mean(name, by_id)
        raise LookupError(f"unknown pipeline '{name}'" + (f"; did you mean '{suggestion}'?" if suggestion else ""))

    def build(path: Path) -> None:
        if path in dags or path in errors:
            return
        lp = loaded[path]
        building.append(lp.dag_id)
        try:
            for name in sorted(_after_names([lp])):
                if name in by_id and name not in building:
                    build(by_id[name])
            dags[path] = _build_one(lp, limits, outlets_of)
        except ConfigError as exc:
            errors[path] = exc
        finally:
            building.pop()

    for path in loaded:
        build(path)
    return dags, errors


def _build_one(lp: LoadedPipeline, limits: Limits, outlets_of: Any = None) -> Any:
    budget = Budget(lp.file, limits.budget_s)
    try:
        dag = build_dag(lp, outlets_of)
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
    built, build_errors = build_loaded(loaded, limits, errors)
    errors.update(build_errors)
    for dag in built.values():
        if not only_dag_id or dag.dag_id == only_dag_id:  # a task pod: not the pipelines it is scheduled after
            result.dags[dag.dag_id] = dag
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
