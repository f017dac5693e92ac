"""Build Airflow DAGs from validated pipeline configs; build every DAG of a config directory, isolating errors."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow_provider_dataeng.factory.errors import ConfigError, ConfigIssue, did_you_mean
from airflow_provider_dataeng.factory.graph import group_chain
from airflow_provider_dataeng.factory.kubernetes import executor_config
from airflow_provider_dataeng.factory.loader import (
    CONFIG_SUFFIXES,
    IssueCollector,
    LoadedPipeline,
    config_files,
    load_defaults,
    load_pipeline,
    prescan_dag_id,
)
from airflow_provider_dataeng.factory.notifications import make_deadline, make_notifier
from airflow_provider_dataeng.factory.schedule import make_asset, to_airflow_schedule
from airflow_provider_dataeng.factory.task_types import (
    DBT_RENDER_PATH,
    RENDERED_OPERATORS,
    TASK_TYPES,
    import_path,
)
from airflow_provider_dataeng.factory.tasks import TaskCommon

log = logging.getLogger(__name__)
_COMMON_KEYS = ("retries", "trigger_rule", "pool", "pool_slots", "priority_weight")
_DURATION_KEYS = ("retry_delay", "max_retry_delay", "execution_timeout")


def _backoff(value: bool | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 2.0 if value else 0.0
    return float(value)


def _to_datetime(value: date | datetime | None, tz: str | None) -> datetime | None:
    if value is None:
        return None
    import pendulum

    zone = pendulum.timezone(tz or "UTC")
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _notifiers(specs: list[Any] | None) -> list[Any] | None:
    return [make_notifier(s) for s in specs] if specs else None


def _dag_kwargs(loaded: LoadedPipeline) -> dict[str, Any]:
    p = loaded.pipeline
    default_args: dict[str, Any] = {"owner": p.owner or "airflow"}
    for key in ("retries", "retry_delay", "max_retry_delay", "execution_timeout"):
        if getattr(p, key) is not None:
            default_args[key] = getattr(p, key)
    if (backoff := _backoff(p.retry_exponential_backoff)) is not None:
        default_args["retry_exponential_backoff"] = backoff
    n = p.notifications
    if n is not None and n.on_retry:
        default_args["on_retry_callback"] = _notifiers(n.on_retry)
    doc = (p.doc_md + "\n\n") if p.doc_md else ""
    doc += f"Built by airflow-provider-dataeng from `{loaded.file.name}`."
    kwargs: dict[str, Any] = {
        "dag_id": loaded.dag_id,
        "description": p.description,
        "schedule": to_airflow_schedule(p.schedule, p.timezone),
        "start_date": _to_datetime(p.start_date, p.timezone),
        "end_date": _to_datetime(p.end_date, p.timezone),
        "catchup": bool(p.catchup),
        "tags": list(p.tags or []),
        "default_args": default_args,
        "doc_md": doc,
        "auto_register": False,
    }
    for key in ("max_active_runs", "max_active_tasks", "dagrun_timeout", "params"):
        if getattr(p, key) is not None:
            kwargs[key] = getattr(p, key)
    if n is not None:
        if n.on_failure:
            kwargs["on_failure_callback"] = _notifiers(n.on_failure)
        if n.on_success:
            kwargs["on_success_callback"] = _notifiers(n.on_success)
        if n.sla_breach:
            kwargs["deadline"] = [make_deadline(s) for s in n.sla_breach]
    return {k: v for k, v in kwargs.items() if v is not None or k == "schedule"}


def _task_kwargs(loaded: LoadedPipeline, name: str, task: TaskCommon) -> dict[str, Any]:
    """Operator kwargs every task type gets: retries, callbacks, assets, executor_config..."""
    kwargs: dict[str, Any] = {}
    for key in _COMMON_KEYS + _DURATION_KEYS:
        if getattr(task, key) is not None:
            kwargs[key] = getattr(task, key)
    if (backoff := _backoff(task.retry_exponential_backoff)) is not None:
        kwargs["retry_exponential_backoff"] = backoff
    if task.description:
        kwargs["doc_md"] = task.description
    if task.inlets:
        kwargs["inlets"] = [make_asset(r) for r in task.inlets]
    if task.outlets:
        kwargs["outlets"] = [make_asset(r) for r in task.outlets]
    if task.notifications is not None:
        for event in ("on_failure", "on_success", "on_retry"):
            specs = getattr(task.notifications, event)
            if specs:
                kwargs[f"{event}_callback"] = _notifiers(specs)
    kwargs["executor_config"] = executor_config(loaded.resources[name])
    return kwargs


def _sensor_kwargs(task: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("poke_interval", "timeout"):
        value: timedelta | None = getattr(task, key, None)
        if value is not None:
            out[key] = value.total_seconds()
    for key in ("mode", "soft_fail"):
        if getattr(task, key, None) is not None:
            out[key] = getattr(task, key)
    return out


def _check_templates(collector: IssueCollector, name: str, cls: type, params: dict[str, Any]) -> None:
    """A ``{{ ... }}`` value in a field the operator does not template would be passed on literally."""
    templated = set(getattr(cls, "template_fields", ()) or ())
    for key, value in params.items():
        if isinstance(value, str) and "{{" in value and key not in templated:
            collector.add(("tasks", name, key), f"{cls.__name__} does not template '{key}', so "
                          "'{{ ... }}' would reach it unrendered",
                          expected="a literal value" + (f" (templated: {', '.join(sorted(templated))})"
                                                        if templated else ""))


def _resolve_path(base: Path, value: str) -> str:
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    return str(path if path.is_absolute() else (base / path).resolve())


def build_dag(loaded: LoadedPipeline) -> Any:
    """The DAG of one validated pipeline; operator problems raise :class:`ConfigError` with the task path."""
    from airflow.providers.common.compat.sdk import DAG, TaskGroup

    collector = IssueCollector(loaded.source, loaded.defaults_source)
    p = loaded.pipeline
    try:
        dag = DAG(**_dag_kwargs(loaded))
    except ConfigError:
        raise
    except Exception as exc:  # e.g. a cron the timetable rejects, a notifier that fails to import
        text = str(exc).lower()
        where: tuple[str, ...] = ("notifications",) if isinstance(exc, ImportError) else (
            ("schedule",) if "schedule" in text or "cron" in text else ())
        collector.add(where, f"cannot create the DAG: {type(exc).__name__}: {exc}")
        collector.raise_if_any()
        raise

    groups: dict[str, Any] = {}
    for gname in sorted(p.task_groups, key=lambda g: len(group_chain(p, g))):
        spec = p.task_groups[gname]
        groups[gname] = TaskGroup(group_id=gname, tooltip=spec.tooltip or "", prefix_group_id=spec.prefix_group_id,
                                  parent_group=groups.get(spec.parent) if spec.parent else None, dag=dag)

    built: dict[str, tuple[list[Any], list[Any]]] = {}  # name -> (entry tasks, exit tasks)
    with dag:
        for name in loaded.order:
            task = loaded.tasks[name]
            try:
                built[name] = _build_task(loaded, collector, name, task, dag, groups.get(task.group or ""))
            except ConfigError as exc:
                collector.issues.extend(exc.issues)
            except ImportError as exc:
                tname = loaded.task_types[name]
                key = "operator" if tname == "operator" else "type"
                collector.add(("tasks", name, key), f"cannot import the operator: {exc}")
            except Exception as exc:
                collector.add(("tasks", name), f"cannot create the task: {type(exc).__name__}: {exc}")
        collector.raise_if_any()
        for name in loaded.order:
            entries = built[name][0]
            for dep in loaded.tasks[name].depends_on:
                upstream = built[dep][1] if dep in built else [groups[dep]]
                for up in upstream:
                    up >> entries
    return dag


def _build_task(loaded: LoadedPipeline, collector: IssueCollector, name: str, task: Any, dag: Any,
                group: Any) -> tuple[list[Any], list[Any]]:
    type_name = loaded.task_types[name]
    tt = TASK_TYPES[type_name]
    common = _task_kwargs(loaded, name, task)
    params = task.model_dump(include=set(tt.param_names), exclude_unset=True)

    if type_name == "dbt":
        base = loaded.file.parent
        params["project_dir"] = _resolve_path(base, task.project_dir)
        if task.manifest_path:
            params["manifest_path"] = _resolve_path(base, task.manifest_path)
        rendering = import_path(DBT_RENDER_PATH)(name, tt.params_model.model_validate(params))
        return build_rendered(rendering, common, group)

    if type_name == "operator":
        cls = import_path(task.operator)
        kwargs = dict(task.kwargs)
        clash = sorted(set(kwargs) & {"task_id", "dag", "task_group", "executor_config"})
        if clash:
            collector.add(("tasks", name, "kwargs", clash[0]), f"'{clash[0]}' is set by the factory",
                          expected="task fields (retries, resources, ...) at the task level")
            raise ConfigError([])
    else:
        assert tt.operator_path is not None
        cls = import_path(tt.operator_path)
        kwargs = params
        if "notifier" in kwargs and task.notifier is not None:
            kwargs["notifier"] = make_notifier(task.notifier)
        if tt.sensor:
            kwargs.update(_sensor_kwargs(task))
    before = len(collector.issues)
    _check_templates(collector, name, cls, kwargs)
    if len(collector.issues) > before:
        raise ConfigError([])
    op = cls(task_id=name, dag=dag, task_group=group, **kwargs, **common)
    return [op], [op]


def build_rendered(rendering: Any, common: dict[str, Any] | None = None,
                   group: Any = None) -> tuple[list[Any], list[Any]]:
    """Create the operators of a rendering (e.g. :func:`~airflow_provider_dataeng.dbt.render.render_dbt`) in
    the current DAG, each with ``common`` kwargs; returns ``(entry tasks, exit tasks)``."""
    from airflow.providers.common.compat.sdk import TaskGroup

    common = dict(common or {})
    extra_outlets = list(common.pop("outlets", None) or [])
    task_group = TaskGroup(group_id=rendering.group_id, parent_group=group) if rendering.group_id else group
    ops: dict[str, Any] = {}
    for t in rendering.tasks:
        cls = import_path(RENDERED_OPERATORS[t.task_type])
        ops[t.task_id] = cls(task_id=t.task_id, task_group=task_group, outlets=[*t.outlets, *extra_outlets],
                             **{**common, **t.operator_kwargs()})
    for t in rendering.tasks:
        if t.upstream:
            ops[t.task_id].set_upstream([ops[u] for u in t.upstream])
    return [ops[i] for i in rendering.entries], [ops[i] for i in rendering.exits]


# --- a whole config directory --------------------------------------------------------------------------------
@dataclass
class BuildResult:
    """DAGs by id (placeholders for broken files included) and the errors by config file."""

    dags: dict[str, Any] = field(default_factory=dict)
    errors: dict[Path, ConfigError] = field(default_factory=dict)


def _winners(ids: dict[Path, str]) -> dict[Path, Path]:
    """For files sharing a dag id: loser -> winner (the file named after the id, else the first by name)."""
    by_id: dict[str, list[Path]] = {}
    for path, dag_id in ids.items():
        by_id.setdefault(dag_id, []).append(path)
    out: dict[Path, Path] = {}
    for dag_id, paths in by_id.items():
        if len(paths) > 1:
            paths = sorted(paths, key=lambda f: (f.stem != dag_id, f.name))
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


def load_directory(directory: Path, only_dag_id: str | None = None) -> tuple[
        dict[Path, LoadedPipeline], dict[Path, ConfigError]]:
    """Validate the pipelines of a directory (all, or those that can define ``only_dag_id``)."""
    files, sole = files_for_dag(directory, only_dag_id) if only_dag_id else ([], False)
    if not files:
        files, sole = config_files(directory), False
    loaded: dict[Path, LoadedPipeline] = {}
    errors: dict[Path, ConfigError] = {}
    defaults = None
    defaults_error: ConfigError | None = None
    try:
        defaults = load_defaults(directory)
    except ConfigError as exc:
        defaults_error = exc
    for f in files:
        if defaults_error is not None:
            errors[f] = ConfigError([ConfigIssue(
                file=str(f), path=(), line=1, message="inherits an invalid defaults.yaml (errors below)")]
                + defaults_error.issues)
            continue
        try:
            loaded[f] = load_pipeline(f, defaults)
        except ConfigError as exc:
            errors[f] = exc
    if sole:
        return loaded, errors
    # Duplicate dag ids: among everything in the directory (prescan for files not loaded here).
    ids = {f: (loaded[f].dag_id if f in loaded else prescan_dag_id(f)) for f in config_files(directory)}
    for loser, winner in _winners(ids).items():
        if loser in loaded:
            lp = loaded.pop(loser)
            collector = IssueCollector(lp.source)
            collector.add(("dag_id",), f"dag_id '{ids[loser]}' is already defined by {winner.name}; dag ids "
                          "must be unique across config files", found=repr(ids[loser]))
            errors[loser] = ConfigError(collector.issues)
    return loaded, errors


def build_dags(directory: str | Path, only_dag_id: str | None = None) -> BuildResult:
    """Build every pipeline of ``directory``; a broken file becomes a placeholder DAG and an ERROR log.

    With ``only_dag_id`` (Airflow's parsing context in a task pod) only the file(s) that can define that
    DAG are read and built; when no file can, everything is built.
    """
    from airflow_provider_dataeng.factory.placeholder import build_placeholder, placeholder_dag_id

    directory = Path(directory)
    result = BuildResult()
    if only_dag_id and not files_for_dag(directory, only_dag_id)[0]:
        only_dag_id = None  # no file defines it: build everything (the DAG processor's view)
    loaded, errors = load_directory(directory, only_dag_id)
    for path, lp in loaded.items():
        try:
            result.dags[lp.dag_id] = build_dag(lp)
        except ConfigError as exc:
            errors[path] = exc
        except Exception as exc:  # a bug must not take the other pipelines down
            log.exception("Building %s failed", path)
            errors[path] = ConfigError([ConfigIssue(file=str(path), path=(), line=1,
                                                    message=f"cannot build the DAG: {type(exc).__name__}: {exc}")])
    dup_losers = _winners({f: prescan_dag_id(f) for f in errors})
    for path, exc in sorted(errors.items()):
        result.errors[path] = exc
        log.error("Invalid pipeline config %s (placeholder DAG shows it in the UI):\n%s", path, exc.format())
        dag_id = prescan_dag_id(path)
        if dag_id in result.dags or path in dup_losers or any(
                i.path == ("dag_id",) and "already defined" in i.message for i in exc.issues):
            dag_id = placeholder_dag_id(path)
        if only_dag_id and dag_id != only_dag_id:
            continue
        try:
            result.dags[dag_id] = build_placeholder(dag_id, path, exc)
        except Exception:  # an unusable dag id in a broken file: fall back to the file name
            result.dags[placeholder_dag_id(path)] = build_placeholder(placeholder_dag_id(path), path, exc)
    return result


def suggest_dag_id(directory: Path, dag_id: str) -> str | None:
    """Closest dag id in a directory (CLI help)."""
    return did_you_mean(dag_id, [prescan_dag_id(f) for f in config_files(directory)])
