"""Dynamic task mapping in configs: ``expand`` (one instance per value) and ``expand_kwargs`` (one per set).

Literal values are validated at parse time like any config: each mapped instance against the task type's
spec, errors pointing at the list entry. Values from an upstream task's XCom are known only at run time:
the rest of the task is validated with them left open, and the operator validates each instance with its
spec when it runs (``build_spec``).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError, create_model

from airflow_provider_dataeng.factory.errors import PathT, did_you_mean
from airflow_provider_dataeng.factory.task_types import TASK_TYPES, task_model
from airflow_provider_dataeng.factory.validation import issues_from_validation_error

if TYPE_CHECKING:
    from airflow_provider_dataeng.factory.loader import IssueCollector

MAPPED = "{{ mapped at run time }}"
"""Stands in for a value only known at run time (templated, so cross-field checks let it through)."""
KEYS = ("expand", "expand_kwargs")
NOT_MAPPABLE = frozenset({"dbt"})


def is_mapped(raw_task: dict[str, Any]) -> bool:
    return any(raw_task.get(k) is not None for k in KEYS)


def xcom_sources(raw_task: Any) -> list[tuple[PathT, str]]:
    """``(path within the task, task name)`` of each ``{xcom: <task>}`` the task maps over."""
    if not isinstance(raw_task, dict):
        return []
    out: list[tuple[PathT, str]] = []
    expand = raw_task.get("expand")
    if isinstance(expand, dict):
        for key, value in expand.items():
            if isinstance(value, dict) and isinstance(value.get("xcom"), str):
                out.append((("expand", key, "xcom"), value["xcom"]))
    kwargs = raw_task.get("expand_kwargs")
    if isinstance(kwargs, dict) and isinstance(kwargs.get("xcom"), str):
        out.append((("expand_kwargs", "xcom"), kwargs["xcom"]))
    return out


@cache
def open_model(type_name: str, open_fields: frozenset[str], cross_checks: bool = True) -> type[BaseModel]:
    """The task model with ``open_fields`` accepting anything (default: :data:`MAPPED`); without
    ``cross_checks`` the spec's cross-field validation is left to run time (the values are unknown)."""
    from airflow_provider_dataeng.factory.tasks import SensorFields, TaskCommon

    base = task_model(type_name)
    if not cross_checks:  # the same fields, without the spec's model validators
        tt = TASK_TYPES[type_name]
        fields = {f: (info.annotation, info) for f, info in base.model_fields.items()
                  if f in tt.params_model.model_fields or f == "type"}
        bases = (TaskCommon, SensorFields) if tt.sensor else (TaskCommon,)
        base = create_model(f"{base.__name__}Fields", __base__=bases, **fields)
    if not open_fields:
        return base
    fields = {f: (Any, Field(default=MAPPED)) for f in open_fields}
    return create_model(f"{base.__name__}Mapped", __base__=base, **fields)


def validate_mapped(collector: IssueCollector, name: str, type_name: str, raw_task: dict[str, Any]) -> Any:
    """Validate a mapped task; return its model instance (mapped parameters left open) or None."""
    where: PathT = ("tasks", name)
    before = len(collector.issues)
    if all(raw_task.get(k) is not None for k in KEYS):
        collector.add(where, "give expand or expand_kwargs, not both")
    if type_name in NOT_MAPPABLE:
        collector.add((*where, "expand" if raw_task.get("expand") is not None else "expand_kwargs"),
                      f"a {type_name} task cannot be mapped (it renders several tasks)")
    if len(collector.issues) > before:
        return None
    params = TASK_TYPES[type_name].param_names
    is_operator = type_name == "operator"
    base = {k: v for k, v in raw_task.items() if k not in KEYS}
    expand, expand_kwargs = raw_task.get("expand"), raw_task.get("expand_kwargs")
    fixed = set(base.get("kwargs") or {}) if is_operator and isinstance(base.get("kwargs"), dict) else set(base)

    # the keys mapped over, where each is written, and the literal instances to check
    mapped: dict[str, PathT] = {}
    instances: list[tuple[dict[str, Any], dict[str, PathT], PathT]] = []  # values, their paths, the entry
    open_fields: set[str] = set()
    cross_checks = True
    if isinstance(expand, dict):
        for key, value in expand.items():
            mapped[key] = (*where, "expand", key)
            if not isinstance(value, list):
                open_fields.add(key)
        literal = {k: v for k, v in expand.items() if isinstance(v, list) and v}
        for key, values in literal.items():  # each value, with the first value of the other lists
            for i, value in enumerate(values):
                others = {k: v[0] for k, v in literal.items() if k != key}
                instances.append(({**others, key: value}, {key: (*where, "expand", key, i),
                                                           **{k: (*where, "expand", k, 0) for k in others}},
                                  (*where, "expand", key, i)))
    elif isinstance(expand_kwargs, list):
        for i, entry in enumerate(expand_kwargs):
            if isinstance(entry, dict):
                for key in entry:
                    mapped.setdefault(str(key), (*where, "expand_kwargs", i, key))
                instances.append((entry, {str(k): (*where, "expand_kwargs", i, k) for k in entry},
                                  (*where, "expand_kwargs", i)))
    elif isinstance(expand_kwargs, dict):  # {xcom: task}: any parameter not set here may come from it
        required = {f for f, info in task_model(type_name).model_fields.items() if info.is_required()}
        open_fields |= (required & set(params)) - set(base)
        cross_checks = False

    for key, path in mapped.items():
        if not is_operator and key not in params:
            collector.add(path, f"'{key}' is not a parameter of a {type_name} task, so it cannot be mapped",
                          expected="one of " + ", ".join(sorted(params)), suggestion=did_you_mean(key, params))
        elif key in fixed:
            collector.add(path, f"'{key}' is both set on the task and mapped; keep one",
                          found=repr(key))
        elif is_operator and key in {"task_id", "dag", "task_group", "executor_config"}:
            collector.add(path, f"'{key}' is set by the factory and cannot be mapped")
    if len(collector.issues) > before:
        return None

    if not is_operator:  # each literal instance must be a valid task of its type
        full = task_model(type_name)
        for values, paths, entry_path in instances:
            data = {**base, **values}
            try:
                full.model_validate(data)
            except ValidationError as exc:
                for issue in issues_from_validation_error(exc, full, data):
                    head = issue.path[0] if issue.path else None
                    path = ((*paths[head], *issue.path[1:]) if head in paths else (*where, *issue.path)
                            if issue.path else entry_path)
                    collector.add(path, issue.message, expected=issue.expected, found=issue.found,
                                  suggestion=issue.suggestion)
        open_fields |= set(mapped)
    model = open_model(type_name, frozenset(open_fields & set(params)), cross_checks)
    try:
        return model.model_validate(raw_task)
    except ValidationError as exc:
        collector.add_validation_error(exc, model, raw_task, prefix=where)
        return None
