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
    PRESCAN_BYTES,
    DefaultsChain,
    IssueCollector,
    LoadedPipeline,
    SourceFile,
    deep_merge,
    load_defaults_file,
    load_pipeline,
    prescan_dag_id,
    read_yaml,
)
from airflow_provider_dataeng.factory.reading import Budget, FileVanished, Limits, read_bytes_prefix
from airflow_provider_dataeng.factory.schedule import ScheduleOn
from airflow_provider_dataeng.factory.tree import ConfigTree, scan

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


def winners(ids: dict[Path, str], root: Path | None = None) -> dict[Path, Path]:
    """For files sharing a dag id: loser -> winner (the file named after the id, else the first by path)."""
    by_id: dict[str, list[Path]] = {}
    for path, dag_id in ids.items():
        by_id.setdefault(dag_id, []).append(path)
    out: dict[Path, Path] = {}
    for dag_id, paths in by_id.items():
        if len(paths) > 1:
            paths = sorted(paths, key=lambda f: (f.stem != dag_id, _rel_parts(f, root)))
            for loser in paths[1:]:
                out[loser] = paths[0]
    return out


def _rel_parts(path: Path, root: Path | None) -> tuple[str, ...]:
    if root is not None:
        try:
            return path.relative_to(root).parts
        except ValueError:
            pass
    return path.parts


def duplicate_error(lp: LoadedPipeline, winner: Path, tree: ConfigTree | None = None) -> ConfigError:
    """The error of a pipeline whose dag id another file keeps; it names both files."""
    name = (lambda p: tree.relative(p)) if tree is not None else (lambda p: str(p))
    why = "it is named after the id" if winner.stem == lp.dag_id else "it comes first by path"
    collector = IssueCollector(lp.source)
    collector.add(("dag_id",), f"dag_id '{lp.dag_id}' is already defined by {name(winner)} (which keeps it: "
                  f"{why}), so {name(lp.file)} cannot use it; dag ids must be unique across config files and "
                  "folders: rename one file or set a different dag_id", found=repr(lp.dag_id))
    return ConfigError(collector.issues, salvage=lp.merged)


def narrow_files(tree: ConfigTree, dag_id: str) -> list[Path]:
    """The config files that can define ``dag_id``: a cheap bytes scan (no YAML parsing) for the id, then
    the ``dag_id:`` line (or the file name when there is none)."""
    from airflow_provider_dataeng.factory.placeholder import placeholder_dag_id

    needle = dag_id.encode()
    out = []
    for f in tree.pipelines:
        if placeholder_dag_id(f, tree.root) == dag_id or (
                (f.stem == dag_id or needle in read_bytes_prefix(f, PRESCAN_BYTES)) and prescan_dag_id(f) == dag_id):
            out.append(f)
    return out


def files_for_dag(tree: ConfigTree, dag_id: str) -> tuple[list[Path], bool]:
    """``(files, sole)``: the config files that can define ``dag_id`` ([] if none). ``sole`` when they are
    the files named after the id (``<dag_id>.yaml`` in any folder) that keep it: such a file wins the id
    over any other file, so no other file needs to be read at all."""
    named = [f for f in tree.pipelines if f.stem == dag_id and prescan_dag_id(f) == dag_id]
    if named:
        return named, True
    return narrow_files(tree, dag_id), False


class DefaultsCache:
    """The defaults chain of each folder of a tree, each ``defaults.yaml`` read and validated once; an
    invalid one is remembered as its error (the pipelines below it become placeholders)."""

    def __init__(self, tree: ConfigTree, limits: Limits) -> None:
        self.tree, self.limits = tree, limits
        self.files: dict[Path, SourceFile | ConfigError] = {}

    def _file(self, path: Path) -> SourceFile | ConfigError:
        if path not in self.files:
            try:
                self.files[path] = load_defaults_file(path, self.limits)
            except ConfigError as exc:
                self.files[path] = exc
            except FileVanished:
                self.files[path] = ConfigError([ConfigIssue(file=str(path), path=(), line=1, message=(
                    "the defaults file disappeared while the folder was read"))])
            except Exception as exc:
                self.files[path] = unexpected(path, "loading the defaults", exc)
        return self.files[path]

    def chain(self, directory: Path) -> DefaultsChain | ConfigError:
        sources: list[SourceFile] = []
        for path in self.tree.defaults_files(directory):
            got = self._file(path)
            if isinstance(got, ConfigError):
                return got
            sources.append(got)
        return DefaultsChain(sources)


def _inherited_error(path: Path, error: ConfigError, tree: ConfigTree, limits: Limits) -> ConfigError:
    """A pipeline below an invalid ``defaults.yaml``: names that file; keeps what can be read for the
    placeholder (the valid defaults above it and the pipeline file itself)."""
    bad = error.issues[0].file if error.issues else "defaults.yaml"
    issue = ConfigIssue(file=str(path), path=(), line=1, message=(
        f"inherits an invalid defaults file {tree.relative(Path(bad))} (errors below); fix it to load "
        "this pipeline"))
    salvage: Any = {}
    for d in tree.defaults_files(path.parent):
        if str(d) == bad:
            break
        try:
            salvage = deep_merge(salvage, load_defaults_file(d, limits).data)
        except Exception:
            break
    try:
        own = read_yaml(path, limits, Budget(path, limits.budget_s)).data
        if isinstance(own, dict):
            salvage = deep_merge(salvage, own)
    except Exception:
        pass
    return ConfigError([issue, *error.issues], salvage=salvage or None)


def _load_one(path: Path, defaults: DefaultsChain | None, limits: Limits) -> LoadedPipeline:
    try:
        return load_pipeline(path, defaults, limits)
    except (ConfigError, FileVanished):
        raise
    except Exception as exc:  # RecursionError, MemoryError, a bug of ours: this file only
        error = unexpected(path, "loading the config", exc)
        error.salvage = defaults.data if defaults is not None else None
        raise error from None


def _load_into(loaded: dict[Path, LoadedPipeline], errors: dict[Path, ConfigError], f: Path,
               defaults: DefaultsChain | None, limits: Limits, vanished: list[Path] | None) -> None:
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
                   vanished: list[Path] | None = None, tree: ConfigTree | None = None,
                   under: Path | None = None, files: tuple[list[Path], bool] | None = None,
                   ) -> tuple[dict[Path, LoadedPipeline], dict[Path, ConfigError]]:
    """Validate the pipelines of a config tree (all, those under ``under``, or those that can define
    ``only_dag_id``: ``files`` when already known); each folder's pipelines inherit the ``defaults.yaml``
    files from the root down."""
    limits = limits or Limits.from_settings()
    tree = tree or scan(directory)
    if files is None:
        files = files_for_dag(tree, only_dag_id) if only_dag_id else ([], False)
    files, sole = files
    if not files:
        files, sole = (tree.under(under) if under is not None else tree.pipelines), False
    cache = DefaultsCache(tree, limits)
    loaded: dict[Path, LoadedPipeline] = {}
    errors: dict[Path, ConfigError] = {}

    def load(f: Path) -> None:
        chain = cache.chain(f.parent)
        if isinstance(chain, ConfigError):
            errors[f] = _inherited_error(f, chain, tree, limits)
        else:
            _load_into(loaded, errors, f, chain, limits, vanished)

    for f in files:
        load(f)
    if only_dag_id:  # schedule: {after: [...]} needs the pipelines it names (and theirs)
        pending = _after_names(loaded.values())
        seen: set[str] = set()
        if pending and tree.only_stem is not None:
            tree = scan(tree.root)  # the whole tree, to find them
        while pending - seen:
            name = sorted(pending - seen)[0]
            seen.add(name)
            for f in files_for_dag(tree, name)[0]:
                if f not in loaded and f not in errors:
                    load(f)
            pending |= _after_names(loaded.values())
    # Duplicate dag ids. Under a parsing context, the files that can define the ids loaded are enough
    # (the named files win over the others; otherwise every candidate was loaded); else the whole tree.
    if only_dag_id and sole:
        candidates = list(loaded) + list(errors)
    else:
        candidates = tree.pipelines
    ids = {f: (loaded[f].dag_id if f in loaded else prescan_dag_id(f)) for f in candidates}
    for loser, winner in winners(ids, tree.root).items():
        if loser in loaded:
            errors[loser] = duplicate_error(loaded.pop(loser), winner, tree)
    return loaded, errors


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
        exc.salvage = lp.merged
        raise
    except Exception as exc:  # a bug must not take the other pipelines down
        error = unexpected(lp.file, "building the DAG", exc)
        error.salvage = lp.merged
        raise error from None


def build_dags(directory: str | Path, only_dag_id: str | None = None) -> BuildResult:
    """Build every pipeline of the config tree under ``directory``; a broken file becomes a placeholder DAG,
    an ERROR log and a :class:`ConfigWarning`.

    With ``only_dag_id`` (Airflow's parsing context in a task pod) only the file(s) that can define that
    DAG are read and built (:func:`files_for_dag`); when no file can, everything is built.
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
        files: tuple[list[Path], bool] = ([], False)
        if only_dag_id:  # first the files named after the id (no other file is even named), else everything
            tree = scan(directory, only_stem=only_dag_id)
            files = files_for_dag(tree, only_dag_id)
            if not files[1]:
                tree = scan(directory)
                files = files_for_dag(tree, only_dag_id)
        else:
            tree = scan(directory)
        if only_dag_id and not files[0]:
            only_dag_id = None  # no file defines it: build everything (the DAG processor's view)
        loaded, errors = load_directory(directory, only_dag_id, limits, result.vanished, tree=tree, files=files)
    except OSError as exc:  # the folder itself is missing or unreadable: nothing to build, say why
        log.error("Cannot read the pipeline config folder %s: %s", directory, exc)
        return result
    built, build_errors = build_loaded(loaded, limits, errors)
    errors.update(build_errors)
    for dag in built.values():
        if not only_dag_id or dag.dag_id == only_dag_id:  # a task pod: not the pipelines it is scheduled after
            result.dags[dag.dag_id] = dag
    if not only_dag_id:  # a folder that cannot be listed hides its pipelines: say so where users look
        for folder, reason in tree.skipped:
            if reason.startswith("cannot"):
                errors[folder] = ConfigError([ConfigIssue(file=str(folder), path=(), line=1, message=(
                    f"{reason}; the pipelines in it (if any) are not loaded"))])
    dup_losers = winners({f: prescan_dag_id(f) for f in errors}, tree.root)
    for path, exc in sorted(errors.items()):
        result.errors[path] = exc
        log.error("Invalid pipeline config %s (placeholder DAG shows it in the UI):\n%s", path, exc.format())
        warnings.warn(f"invalid pipeline config {path}: {exc.format()[:1000]}", ConfigWarning, stacklevel=2)
        dag_id = prescan_dag_id(path) if path.suffix in CONFIG_SUFFIXES else placeholder_dag_id(path, tree.root)
        if dag_id in result.dags or path in dup_losers or any(
                i.path == ("dag_id",) and "already defined" in i.message for i in exc.issues):
            dag_id = placeholder_dag_id(path, tree.root)
        if only_dag_id and dag_id != only_dag_id:
            continue
        result.dags.update(build_placeholder(dag_id, path, exc, tree.root))
    return result
