"""Read pipeline YAML (line numbers on demand), merge ``defaults.yaml``, validate into models.

Fast path: libyaml (``CSafeLoader``) parses to plain Python. Line numbers are only needed for errors, so the
node tree (``yaml.compose``) is built lazily, when an error has to be located.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from airflow_provider_dataeng.factory.errors import ConfigError, ConfigIssue, PathT, did_you_mean, found_repr
from airflow_provider_dataeng.factory.graph import check_graph
from airflow_provider_dataeng.factory.pipeline import Defaults, Pipeline
from airflow_provider_dataeng.factory.resources import Resources
from airflow_provider_dataeng.factory.secrets import find_secrets
from airflow_provider_dataeng.factory.task_types import TASK_TYPES, task_model, type_of
from airflow_provider_dataeng.factory.validation import issues_from_validation_error

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DEFAULTS_NAMES = ("defaults.yaml", "defaults.yml")
CONFIG_SUFFIXES = (".yaml", ".yml")
_DAG_ID_LINE = re.compile(r"""^dag_id:[ \t]*["']?([A-Za-z0-9_.\-]+)["']?[ \t]*(?:#.*)?$""", re.MULTILINE)
_DAG_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
QOS_WHY = (
    "pods get limits equal to requests (Guaranteed QoS): autoscaling on relative usage is measured against "
    "requests, so a pod using more than it requested hides real demand and gets evicted first under "
    "pressure. Set the limits equal to the requests, or set allow_burstable: true on this resources block "
    "to opt out on purpose"
)


class _StrictLoader(_Loader):  # type: ignore[misc, valid-type]
    """libyaml loader that rejects duplicate mapping keys (YAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"duplicate key {key!r}", seen[key].start_mark,
                    f"duplicate key {key!r} (first defined on line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


@dataclass
class SourceFile:
    """One YAML file: its text, its data, and (lazily) its node tree for line numbers."""

    path: Path
    text: str
    data: Any
    _root: yaml.Node | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        return str(self.path)

    def _nodes(self) -> yaml.Node | None:
        if self._root is None:
            try:
                self._root = yaml.compose(self.text, Loader=_Loader)
            except yaml.YAMLError:
                return None
        return self._root

    def find(self, path: Sequence[str | int], key_line: bool = False) -> tuple[int | None, bool]:
        """``(line, exact)`` of the entry at ``path`` (1-based), or of its nearest existing ancestor.

        A mapping entry is located at its key's line (a block value starts on the next line).
        """
        node = self._nodes()
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


def read_yaml(path: Path) -> SourceFile:
    """Read and parse one YAML file; syntax errors and duplicate keys raise :class:`ConfigError`."""
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError([ConfigIssue(
            file=str(path), path=(), line=(mark.line + 1) if mark else 1,
            message=f"invalid YAML: {exc.problem or exc}",
        )]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(file=str(path), path=(), line=1, message=f"invalid YAML: {exc}")]) from None
    return SourceFile(path=path, text=text, data=data)


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key (recursively); anything else in ``override`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = deep_merge(base[key], value) if key in base else value
        return out
    return override


def config_files(directory: Path) -> list[Path]:
    """Pipeline files of a config directory (``*.yaml``/``*.yml`` except ``defaults.yaml``), sorted."""
    return sorted(
        p for p in directory.iterdir()
        if p.suffix in CONFIG_SUFFIXES and p.name not in DEFAULTS_NAMES and not p.name.startswith((".", "_"))
        and p.is_file()
    )


def defaults_file(directory: Path) -> Path | None:
    for name in DEFAULTS_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def prescan_dag_id(path: Path) -> str:
    """The dag id of a config without parsing it: a top-level ``dag_id:`` line, else the file name."""
    try:
        match = _DAG_ID_LINE.search(path.read_text(encoding="utf-8"))
    except OSError:
        match = None
    return match.group(1) if match else path.stem


class IssueCollector:
    """Collects issues for one pipeline, locating each in the pipeline file or in ``defaults.yaml``."""

    def __init__(self, source: SourceFile, defaults: SourceFile | None = None) -> None:
        self.source = source
        self.defaults = defaults
        self.issues: list[ConfigIssue] = []

    def add(self, path: PathT, message: str, *, key_line: bool = False, expected: str | None = None,
            found: str | None = None, suggestion: str | None = None) -> None:
        if any(i.path == tuple(path) and i.message == message for i in self.issues):
            return
        line, exact = self.source.find(path, key_line=key_line)
        file = self.source.display
        if not exact and self.defaults is not None:
            d_line, d_exact = self.defaults.find(path, key_line=key_line)
            if d_exact:
                line, file = d_line, self.defaults.display
        self.issues.append(ConfigIssue(file=file, path=tuple(path), line=line, message=message,
                                       expected=expected, found=found, suggestion=suggestion))

    def add_validation_error(self, exc: ValidationError, model: type[BaseModel], data: Any,
                             prefix: PathT = ()) -> None:
        reported = {i.path for i in self.issues}
        for issue in issues_from_validation_error(exc, model, data):
            if prefix + issue.path in reported:
                continue
            self.add(prefix + issue.path, issue.message, key_line=issue.key_line, expected=issue.expected,
                     found=issue.found, suggestion=issue.suggestion)

    def raise_if_any(self) -> None:
        if self.issues:
            raise ConfigError(sorted(self.issues, key=lambda i: (i.file != self.source.display, i.file,
                                                                  i.line or 0)))


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
    defaults_source: SourceFile | None = None

    @property
    def file(self) -> Path:
        return self.source.path


def load_defaults(directory: Path) -> SourceFile | None:
    """Read and validate ``defaults.yaml`` of a directory (None if there is none)."""
    path = defaults_file(directory)
    if path is None:
        return None
    source = read_yaml(path)
    if source.data is None:
        source.data = {}
    collector = IssueCollector(source)
    if not isinstance(source.data, dict):
        collector.add((), "defaults.yaml must be a mapping", expected="a mapping", found=found_repr(source.data))
        collector.raise_if_any()
    for path_, key in find_secrets(source.data):
        collector.add(path_, _secret_message(key), key_line=True)
    try:
        Defaults.model_validate(source.data)
    except ValidationError as exc:
        collector.add_validation_error(exc, Defaults, source.data)
    collector.raise_if_any()
    return source


def _secret_message(key: str) -> str:
    return (f"'{key}' looks like a credential: configs hold connection ids only; credentials live in "
            "Airflow connections (or a secrets backend)")


def load_pipeline(path: Path, defaults: SourceFile | None = None) -> LoadedPipeline:
    """Read and validate one pipeline file; raise :class:`ConfigError` with every problem found."""
    source = read_yaml(path)
    collector = IssueCollector(source, defaults)
    raw = source.data
    if not isinstance(raw, dict):
        collector.add((), "a pipeline file must be a mapping with at least 'tasks'", expected="a mapping",
                      found=found_repr(raw))
        collector.raise_if_any()
    for path_, key in find_secrets(raw):
        collector.add(path_, _secret_message(key), key_line=True)

    if "dag_id" not in raw and not _DAG_ID.match(path.stem):
        collector.add((), f"the file name {path.stem!r} is not a usable dag id; rename the file or set dag_id",
                      expected="letters, digits, '_', '.', '-'")
    merged = deep_merge(defaults.data, raw) if defaults is not None else raw
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
    collector.raise_if_any()
    assert pipeline is not None
    return LoadedPipeline(source=source, dag_id=pipeline.dag_id or path.stem, pipeline=pipeline, tasks=tasks,
                          task_types=types, resources=resources, order=order, defaults_source=defaults)


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
        collector.add(("tasks", name), "a task needs a 'type' (or 'operator: <import path>')", key_line=True,
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
                      key_line=True, expected="limits equal to requests", found=diff)


def iter_sources(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into their pipeline files (CLI helper); files are kept as given."""
    out: list[Path] = []
    for p in paths:
        out.extend(config_files(p) if p.is_dir() else [p])
    return out
