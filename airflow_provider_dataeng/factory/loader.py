"""Read pipeline YAML (bounded: :mod:`.reading`), merge ``defaults.yaml``, validate into models.

Every problem becomes a :class:`ConfigError` naming the file, the line and the field; a failed pipeline's
error carries what could be read of it (``salvage``) so its placeholder DAG keeps the schedule and alerts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from airflow_provider_dataeng.factory.errors import ConfigError, ConfigIssue, PathT, did_you_mean, found_repr
from airflow_provider_dataeng.factory.graph import check_graph
from airflow_provider_dataeng.factory.mapping import is_mapped, validate_mapped
from airflow_provider_dataeng.factory.pipeline import Defaults, Pipeline
from airflow_provider_dataeng.factory.reading import Budget, Limits, load_file, read_text_prefix
from airflow_provider_dataeng.factory.resources import Resources
from airflow_provider_dataeng.factory.secrets import find_secrets
from airflow_provider_dataeng.factory.task_types import TASK_TYPES, task_model, type_of
from airflow_provider_dataeng.factory.tree import CONFIG_SUFFIXES, DEFAULTS_NAMES
from airflow_provider_dataeng.factory.validation import issues_from_validation_error

__all__ = ["CONFIG_SUFFIXES", "DEFAULTS_NAMES"]
_DAG_ID_LINE = re.compile(r"""^dag_id:[ \t]*["']?([A-Za-z0-9_.\-]+)["']?[ \t]*(?:#.*)?$""", re.MULTILINE)
PRESCAN_BYTES = 64 * 1024
_DAG_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
QOS_WHY = (
    "pods get limits equal to requests (Guaranteed QoS): autoscaling on relative usage is measured against "
    "requests, so a pod using more than it requested hides real demand and gets evicted first under "
    "pressure. Set the limits equal to the requests, or set allow_burstable: true on this resources block "
    "to opt out on purpose"
)


@dataclass
class SourceFile:
    """One YAML file: its text, its data, and its node tree (for line numbers)."""

    path: Path
    text: str
    data: Any
    root: yaml.Node | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        return str(self.path)

    def find(self, path: Sequence[str | int]) -> tuple[int | None, bool]:
        """``(line, exact)`` of the entry at ``path`` (1-based), or of its nearest existing ancestor.

        A mapping entry is located at its key's line (a block value starts on the next line).
        """
        node = self.root
        if node is None:
            return None, False
        line = node.start_mark.line + 1
        for part in path:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == str(part):
                        line, node = key_node.start_mark.line + 1, value_node
                        break
                else:
                    return line, False
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line, False
        return line, True


def read_yaml(path: Path, limits: Limits | None = None, budget: Budget | None = None) -> SourceFile:
    """Read and parse one YAML file under the reading limits; every problem raises :class:`ConfigError`."""
    text, data, root = load_file(path, limits, budget)
    return SourceFile(path=path, text=text, data=data, root=root)


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key (recursively); anything else in ``override`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = deep_merge(base[key], value) if key in base else value
        return out
    return override


def defaults_file(directory: Path) -> Path | None:
    for name in DEFAULTS_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def has_path(data: Any, path: Sequence[str | int]) -> bool:
    """Whether ``data`` (mappings and lists) holds an entry at ``path``."""
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


@dataclass
class DefaultsChain:
    """The ``defaults.yaml`` files that apply to one folder, root first; nearer files override farther ones
    (mappings merge key by key, anything else replaces)."""

    sources: list[SourceFile] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for source in self.sources:
            merged = deep_merge(merged, source.data if isinstance(source.data, dict) else {})
        return merged

    def origin(self, path: Sequence[str | int]) -> tuple[SourceFile, int] | None:
        """The nearest defaults file that sets ``path``, and the line."""
        for source in reversed(self.sources):
            if has_path(source.data, path):
                line, _ = source.find(path)
                return source, line or 1
        return None

    def __bool__(self) -> bool:
        return bool(self.sources)


def as_chain(defaults: DefaultsChain | SourceFile | None) -> DefaultsChain | None:
    if defaults is None or isinstance(defaults, DefaultsChain):
        return defaults or None
    return DefaultsChain([defaults])


def prescan_dag_id(path: Path) -> str:
    """The dag id of a config without parsing it: a top-level ``dag_id:`` line, else the file name.

    Never raises: an unreadable or undecodable file is known by its file name."""
    match = _DAG_ID_LINE.search(read_text_prefix(path, PRESCAN_BYTES))
    return match.group(1) if match else path.stem


class IssueCollector:
    """Collects issues for one pipeline, locating each in the pipeline file or in ``defaults.yaml``."""

    def __init__(self, source: SourceFile, defaults: DefaultsChain | SourceFile | None = None) -> None:
        self.source = source
        self.defaults = as_chain(defaults)
        self.issues: list[ConfigIssue] = []

    def add(self, path: PathT, message: str, *, expected: str | None = None,
            found: str | None = None, suggestion: str | None = None) -> None:
        if any(i.path == tuple(path) and i.message == message for i in self.issues):
            return
        line, exact = self.source.find(path)
        file = self.source.display
        if not exact and path and self.defaults is not None:
            origin = self.defaults.origin(path)
            if origin is not None:
                line, file = origin[1], origin[0].display
        self.issues.append(ConfigIssue(file=file, path=tuple(path), line=line, message=message,
                                       expected=expected, found=found, suggestion=suggestion))

    def add_validation_error(self, exc: ValidationError, model: type[BaseModel], data: Any,
                             prefix: PathT = ()) -> None:
        reported = {i.path for i in self.issues}
        for issue in issues_from_validation_error(exc, model, data):
            if prefix + issue.path in reported:
                continue
            self.add(prefix + issue.path, issue.message, expected=issue.expected,
                     found=issue.found, suggestion=issue.suggestion)

    def raise_if_any(self, salvage: Any = None) -> None:
        if self.issues:
            raise ConfigError(sorted(self.issues, key=lambda i: (i.file != self.source.display, i.file,
                                                                  i.line or 0)), salvage=salvage)


@dataclass
class LoadedPipeline:
    """A validated pipeline, ready for the builder."""

    source: SourceFile
    dag_id: str
    pipeline: Pipeline
    tasks: dict[str, Any]  # name -> task model instance
    task_types: dict[str, str]  # name -> type name
    resources: dict[str, Resources]  # name -> effective resources
    order: list[str]  # a topological order of the task names
    defaults: DefaultsChain | None = None

    @property
    def file(self) -> Path:
        return self.source.path

    @property
    def merged(self) -> Any:
        """The config as the pipeline sees it: its defaults merged with the file."""
        return deep_merge(self.defaults.data, self.source.data) if self.defaults else self.source.data


def load_defaults(directory: Path, limits: Limits | None = None) -> SourceFile | None:
    """Read and validate ``defaults.yaml`` of a directory (None if there is none)."""
    path = defaults_file(directory)
    return None if path is None else load_defaults_file(path, limits)


def load_defaults_file(path: Path, limits: Limits | None = None) -> SourceFile:
    """Read and validate one ``defaults.yaml`` on its own; every problem raises :class:`ConfigError`."""
    source = read_yaml(path, limits, Budget(path, (limits or Limits.from_settings()).budget_s))
    if source.data is None:
        source.data = {}
    collector = IssueCollector(source)
    if not isinstance(source.data, dict):
        collector.add((), "defaults.yaml must be a mapping", expected="a mapping", found=found_repr(source.data))
        collector.raise_if_any()
    for path_, key in find_secrets(source.data):
        collector.add(path_, _secret_message(key))
    try:
        Defaults.model_validate(source.data)
    except ValidationError as exc:
        collector.add_validation_error(exc, Defaults, source.data)
    collector.raise_if_any()
    return source


def _secret_message(key: str) -> str:
    return (f"'{key}' looks like a credential: configs hold connection ids only; credentials live in "
            "Airflow connections (or a secrets backend)")


def load_pipeline(path: Path, defaults: DefaultsChain | SourceFile | None = None, limits: Limits | None = None,
                  budget: Budget | None = None) -> LoadedPipeline:
    """Read and validate one pipeline file; raise :class:`ConfigError` with every problem found.

    ``defaults``: the ``defaults.yaml`` files above it (a chain, root first; or one file). The error's
    ``salvage`` is the merged config as far as it could be read (the defaults alone when the file itself
    is unreadable)."""
    defaults = as_chain(defaults)
    limits = limits or Limits.from_settings()
    budget = budget or Budget(path, limits.budget_s)
    try:
        source = read_yaml(path, limits, budget)
    except ConfigError as exc:
        exc.salvage = defaults.data if defaults is not None else None
        raise
    collector = IssueCollector(source, defaults)
    raw = source.data
    if not isinstance(raw, dict):
        collector.add((), "a pipeline file must be a mapping with at least 'tasks'", expected="a mapping",
                      found=found_repr(raw))
        collector.raise_if_any(salvage=defaults.data if defaults is not None else None)
    for path_, key in find_secrets(raw):
        collector.add(path_, _secret_message(key))

    if "dag_id" not in raw and not _DAG_ID.match(path.stem):
        collector.add((), f"the file name {path.stem!r} is not a usable dag id; rename the file or set dag_id",
                      expected="letters, digits, '_', '.', '-'")
    merged = deep_merge(defaults.data, raw) if defaults is not None else raw
    budget.check("reading the file")
    pipeline: Pipeline | None = None
    try:
        pipeline = Pipeline.model_validate(merged)
    except ValidationError as exc:
        collector.add_validation_error(exc, Pipeline, merged)

    tasks: dict[str, Any] = {}
    types: dict[str, str] = {}
    raw_tasks = merged.get("tasks") if isinstance(merged.get("tasks"), dict) else {}
    for name, raw_task in raw_tasks.items():
        if not isinstance(raw_task, dict):
            continue  # reported by the Pipeline model
        type_name = type_of(raw_task)
        if type_name is None or type_name not in TASK_TYPES:
            _report_type(collector, name, raw_task)
            continue
        if is_mapped(raw_task):
            instance = validate_mapped(collector, name, type_name, raw_task)
            if instance is not None:
                tasks[name], types[name] = instance, type_name
            continue
        model = task_model(type_name)
        try:
            tasks[name] = model.model_validate(raw_task)
            types[name] = type_name
        except ValidationError as exc:
            collector.add_validation_error(exc, model, raw_task, prefix=("tasks", name))

    resources: dict[str, Resources] = {}
    order: list[str] = []
    pipe_res = merged.get("resources") if isinstance(merged.get("resources"), dict) else {}
    shared: Resources | None = None  # tasks without their own resources share the pipeline's
    for name, raw_task in raw_tasks.items():
        task_res = raw_task.get("resources") if isinstance(raw_task, dict) else None
        task_res = task_res if isinstance(task_res, dict) else {}
        try:
            if task_res:
                effective = Resources.model_validate(deep_merge(pipe_res, task_res))
            else:
                effective = shared = shared or Resources.model_validate(pipe_res)
        except ValidationError:
            continue  # each block was validated (and reported) on its own
        own = "limits" in task_res or "allow_burstable" in task_res
        _check_qos(collector, effective, ("tasks", name, "resources") if own else ("resources",))
        resources[name] = effective
    shape = pipeline or _graph_shape(merged)
    if shape is not None:
        order = check_graph(collector, shape, raw_tasks)
    collector.raise_if_any(salvage=merged)
    budget.check("validating the config")
    assert pipeline is not None
    return LoadedPipeline(source=source, dag_id=pipeline.dag_id or path.stem, pipeline=pipeline, tasks=tasks,
                          task_types=types, resources=resources, order=order, defaults=defaults)


def _graph_shape(merged: dict[str, Any]) -> Pipeline | None:
    """Tasks and groups alone, to check the graph of a pipeline whose other settings are invalid."""
    try:
        return Pipeline.model_validate({"tasks": merged.get("tasks"), "task_groups": merged.get("task_groups") or {}})
    except ValidationError:
        return None


def _report_type(collector: IssueCollector, name: str, raw_task: dict[str, Any]) -> None:
    known = sorted(TASK_TYPES)
    value = raw_task.get("type")
    if value is None:
        collector.add(("tasks", name), "a task needs a 'type' (or 'operator: <import path>')",
                      expected="type: one of " + ", ".join(known))
    else:
        collector.add(("tasks", name, "type"), "unknown task type", expected="one of " + ", ".join(known),
                      found=found_repr(value), suggestion=did_you_mean(str(value), known))


def _check_qos(collector: IssueCollector, res: Resources, where: PathT) -> None:
    for key, req, lim in res.below_requests():
        collector.add(where + ("limits", key), f"limit {lim} is below the request {req}",
                      expected=f"a limit >= {req}", found=lim)
    if res.allow_burstable:
        return
    problems = res.qos_problems()
    if problems:
        diff = ", ".join(f"{k}: request {r}, limit {lim}" for k, r, lim in problems)
        collector.add(where + ("limits",), f"limits differ from requests ({diff}); {QOS_WHY}",
                      expected="limits equal to requests", found=diff)
