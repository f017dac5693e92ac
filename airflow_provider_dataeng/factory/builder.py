"""Build the Airflow DAG of one validated pipeline config (a config directory: :mod:`.folder`)."""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow_provider_dataeng.factory.compat import backoff_value
from airflow_provider_dataeng.factory.errors import ConfigError, did_you_mean
from airflow_provider_dataeng.factory.graph import group_chain
from airflow_provider_dataeng.factory.kubernetes import executor_config
from airflow_provider_dataeng.factory.loader import IssueCollector, LoadedPipeline
from airflow_provider_dataeng.factory.notifications import make_deadline, make_notifier
from airflow_provider_dataeng.factory.resources import Resources
from airflow_provider_dataeng.factory.schedule import OutletsOf, ScheduleOn, make_asset, to_airflow_schedule
from airflow_provider_dataeng.factory.task_types import (
    DBT_RENDER_PATH,
    RENDERED_OPERATORS,
    TASK_TYPES,
    import_path,
)
from airflow_provider_dataeng.factory.tasks import TaskCommon
from airflow_provider_dataeng.notifications.deadline import deadline_alerts_supported
from airflow_provider_dataeng.notifications.deadline_watch import add_deadline_watch
from airflow_provider_dataeng.values import is_templated

log = logging.getLogger(__name__)
_COMMON_KEYS = ("retries", "trigger_rule", "pool", "pool_slots", "priority_weight", "queue", "executor",
                "max_active_tis_per_dagrun")
_DURATION_KEYS = ("retry_delay", "max_retry_delay", "execution_timeout")


def _backoff(value: bool | float | None) -> float | bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return backoff_value(2.0 if value else 0.0)
    return backoff_value(float(value))


def to_datetime(value: date | datetime | None, tz: str | None) -> datetime | None:
    if value is None:
        return None
    import pendulum

    zone = pendulum.timezone(tz or "UTC")
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _notifiers(specs: list[Any] | None) -> list[Any] | None:
    return [make_notifier(s) for s in specs] if specs else None


def _dag_kwargs(loaded: LoadedPipeline, outlets_of: OutletsOf | None = None) -> dict[str, Any]:
    p = loaded.pipeline
    default_args: dict[str, Any] = {"owner": p.owner or "airflow"}
    for key in ("retries", "retry_delay", "max_retry_delay", "execution_timeout", "queue", "pool", "pool_slots",
                "executor", "priority_weight"):
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
        "schedule": to_airflow_schedule(p.schedule, p.timezone, outlets_of),
        "start_date": to_datetime(p.start_date, p.timezone),
        "end_date": to_datetime(p.end_date, p.timezone),
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
        if n.sla_breach and deadline_alerts_supported():
            kwargs["deadline"] = [make_deadline(s) for s in n.sla_breach]
        # else: build_dag adds the sla_deadline_watch task (Deadline Alerts before Airflow 3.1)
    return {k: v for k, v in kwargs.items() if v is not None or k == "schedule"}


def configured_executors() -> list[str] | None:
    """Names and aliases of the executors in ``[core] executor`` (None when they cannot be read)."""
    try:
        from airflow.executors.executor_loader import ExecutorLoader

        names = ExecutorLoader.get_executor_names()
    except Exception:
        return None
    return sorted({n for e in names for n in (getattr(e, "alias", None), getattr(e, "module_path", None),
                                                 str(getattr(e, "module_path", "")).rpartition(".")[2]) if n})


def _check_executor(collector: IssueCollector, where: tuple[str, ...], executor: str | None) -> None:
    """An unknown executor would fail the whole DAG file in the DagBag: report it on this config instead."""
    if executor is None:
        return
    known = configured_executors()
    if known is not None and executor not in known:
        collector.add((*where, "executor"), "executor not configured in [core] executor",
                      expected="one of " + ", ".join(known), found=repr(executor),
                      suggestion=did_you_mean(executor, known))


def _check_databases(collector: IssueCollector, databases: dict[str, str] | None) -> None:
    """A ``databases:`` entry that contradicts the connection's own database (its ``AIRFLOW_CONN_*``
    variable, read without I/O) would name one table twice: refuse it here rather than fail every run."""
    from airflow_provider_dataeng.publish.assets import environment_database

    for conn_id, database in (databases or {}).items():
        own = environment_database(conn_id)
        if own is not None and own != database:
            collector.add(("databases", conn_id), f"connection '{conn_id}' reaches database '{own}' "
                          f"(AIRFLOW_CONN_{conn_id.upper()}), so its tables' Assets must name that database",
                          expected=repr(own), found=repr(database))


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
        if is_templated(value) and key not in templated:
            collector.add(("tasks", name, key), f"{cls.__name__} does not template '{key}', so "
                          "'{{ ... }}' would reach it unrendered",
                          expected="a literal value" + (f" (templated: {', '.join(sorted(templated))})"
                                                        if templated else ""))


def _resolve_path(base: Path, value: str) -> str:
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    return str(path if path.is_absolute() else (base / path).resolve())


def build_dag(loaded: LoadedPipeline, outlets_of: OutletsOf | None = None) -> Any:
    """The DAG of one validated pipeline; operator problems raise :class:`ConfigError` with the task path.

    ``outlets_of`` resolves ``schedule: {after: [pipeline, ...]}`` (the other pipelines' updated tables).
    """
    from airflow_provider_dataeng.publish.assets import asset_databases, register_dag_databases

    register_dag_databases(loaded.dag_id, loaded.pipeline.databases)
    with asset_databases(loaded.pipeline.databases):  # the pipeline's tables' Asset identity (one for all)
        return _build_dag(loaded, outlets_of)


def _build_dag(loaded: LoadedPipeline, outlets_of: OutletsOf | None) -> Any:
    from airflow.providers.common.compat.sdk import DAG, TaskGroup

    collector = IssueCollector(loaded.source, loaded.defaults)
    p = loaded.pipeline
    if isinstance(p.schedule, ScheduleOn):
        for i, name in enumerate(p.schedule.after or []):
            try:
                if outlets_of is None:
                    raise LookupError("needs the other pipelines of the config folder")
                if not outlets_of(name):
                    collector.add(("schedule", "after", i), f"pipeline '{name}' updates no table (no extract or "
                                  "publish task, no outlets)", found=repr(name))
            except LookupError as exc:
                collector.add(("schedule", "after", i), str(exc).strip("'\""), found=repr(name))
        collector.raise_if_any()
    _check_executor(collector, (), p.executor)
    _check_databases(collector, p.databases)
    collector.raise_if_any()
    try:
        dag = DAG(**_dag_kwargs(loaded, outlets_of))
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
                built[name] = _build_task(loaded, collector, name, task, dag, groups.get(task.group or ""), built)
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
    if p.notifications is not None and p.notifications.sla_breach and not deadline_alerts_supported():
        # the pipeline's pod (image, placement; requests == limits) for its few seconds on a worker
        add_deadline_watch(dag, p.notifications.sla_breach, executor_config=executor_config(p.resources or Resources()))
    return dag


def _build_task(loaded: LoadedPipeline, collector: IssueCollector, name: str, task: Any, dag: Any,
                group: Any, built: dict[str, tuple[list[Any], list[Any]]]) -> tuple[list[Any], list[Any]]:
    type_name = loaded.task_types[name]
    tt = TASK_TYPES[type_name]
    before = len(collector.issues)
    _check_executor(collector, ("tasks", name), task.executor)
    if len(collector.issues) > before:
        raise ConfigError([])
    common = _task_kwargs(loaded, name, task)
    params = task.model_dump(include=set(tt.param_names), exclude_unset=True)
    mapping = _mapping(collector, name, task, built)

    if type_name == "dbt":
        base = loaded.file.parent
        params["project_dir"] = _resolve_path(base, task.project_dir)
        if task.manifest_path:
            params["manifest_path"] = _resolve_path(base, task.manifest_path)
        rendering = import_path(DBT_RENDER_PATH)(name, tt.params_model.model_validate(params))
        if task.pod is not None:  # the task's resources size the dbt pods (requests == limits)
            common["container_resources"] = common["executor_config"]["pod_override"].spec.containers[0].resources
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
    for key, value in mapping.literal.items():
        _check_templates(collector, name, cls, {key: value})
    if len(collector.issues) > before:
        raise ConfigError([])
    if mapping.kind is None:
        op = cls(task_id=name, dag=dag, task_group=group, **kwargs, **common)
        return [op], [op]
    partial = cls.partial(task_id=name, dag=dag, task_group=group, **kwargs, **common)
    if mapping.kind == "expand":
        mapped = partial.expand(**mapping.values)
    else:
        mapped = partial.expand_kwargs(mapping.values)
    return [mapped], [mapped]


class _Mapping:
    """What a task maps over: ``kind`` (None, "expand", "expand_kwargs"), the values to pass (lists and
    XComArgs), and the literal values by parameter (for the template check)."""

    def __init__(self, kind: str | None = None, values: Any = None, literal: dict[str, Any] | None = None) -> None:
        self.kind, self.values, self.literal = kind, values, literal or {}


def _mapping(collector: IssueCollector, name: str, task: Any, built: dict[str, tuple[list[Any], list[Any]]]) -> _Mapping:
    from airflow_provider_dataeng.factory.tasks import XComRef

    def resolve(value: Any, path: tuple[Any, ...]) -> Any:
        if not isinstance(value, XComRef):
            return value
        from airflow.sdk import XComArg

        exits = built.get(value.xcom, ([], []))[1]
        if len(exits) != 1:
            collector.add((*path, "xcom"), f"task '{value.xcom}' is not a single task (e.g. a dbt task renders "
                          "several), so it has no one result to map over")
            raise ConfigError([])
        return XComArg(exits[0], key=value.key)

    where = ("tasks", name)
    if task.expand is not None:
        values = {k: resolve(v, (*where, "expand", k)) for k, v in task.expand.items()}
        literal = {k: v for k, v in task.expand.items() if isinstance(v, list)}
        return _Mapping("expand", values, literal)
    if task.expand_kwargs is not None:
        values = resolve(task.expand_kwargs, (*where, "expand_kwargs"))
        literal: dict[str, Any] = {}
        if isinstance(values, list):
            for entry in values:
                for k, v in entry.items():
                    literal.setdefault(k, []).append(v)
        return _Mapping("expand_kwargs", values, literal)
    return _Mapping()


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
