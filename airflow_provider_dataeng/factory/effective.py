"""The effective config of one pipeline, each value with where it came from (``dataeng render``).

A value comes from the pipeline file (``FILE:LINE``), from the nearest ``defaults.yaml`` that sets it
(``FILE:LINE``), from the pipeline's setting for every task (``FILE:LINE (pipeline-wide)``), or is the
model's default (``default``). Every field of a task type's spec is listed (defaults included); pipeline
and common task settings that are unset and have no value are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from airflow_provider_dataeng.durations import format_duration
from airflow_provider_dataeng.factory.loader import LoadedPipeline, has_path
from airflow_provider_dataeng.factory.mapping import MAPPED
from airflow_provider_dataeng.factory.task_types import TASK_TYPES

DEFAULT = "default"
# Task settings that fall back on the pipeline's (passed to every task as default_args).
INHERITED = ("retries", "retry_delay", "retry_exponential_backoff", "max_retry_delay", "execution_timeout",
             "queue", "pool", "pool_slots", "executor", "priority_weight")
_STRUCTURAL = ("tasks", "task_groups")


def _text(value: Any) -> str:
    """A value as one line (JSON; durations as written: ``5m``)."""
    if isinstance(value, timedelta):
        return json.dumps(format_duration(value))
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, datetime | date):
        return json.dumps(value.isoformat())
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(str(value))


class Origins:
    """Where a config path's value came from: the pipeline file, else the nearest defaults file."""

    def __init__(self, lp: LoadedPipeline) -> None:
        self.lp = lp

    def of(self, path: Sequence[str | int]) -> str | None:
        source = self.lp.source
        if has_path(source.data, path):
            line, _ = source.find(path)
            return f"{source.display}:{line or 1}"
        if self.lp.defaults is not None:
            origin = self.lp.defaults.origin(path)
            if origin is not None:
                return f"{origin[0].display}:{origin[1]}"
        return None


def _walk(key: str, value: Any, path: tuple[Any, ...], origins: Origins, indent: str,
          fallback: str) -> Iterator[str]:
    """``key: value  <- origin`` lines; mappings are expanded key by key (each with its own origin)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=False, exclude_none=True)
    if isinstance(value, dict) and value:
        yield f"{indent}{key}:"
        for sub, sub_value in value.items():
            yield from _walk(str(sub), sub_value, (*path, sub), origins, indent + "  ", fallback)
        return
    yield f"{indent}{key}: {_text(value)}  <- {origins.of(path) or fallback}"


def _raw_value(lp: LoadedPipeline, path: tuple[Any, ...], parsed: Any) -> Any:
    """The value as written in the config (``5m``, not a timedelta) when it was written, else ``parsed``."""
    data = lp.merged
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return parsed
        data = data[part]
    return data


def effective_config(lp: LoadedPipeline) -> list[str]:
    """The effective config of a loaded pipeline, one ``key: value  <- origin`` line per value."""
    origins = Origins(lp)
    p = lp.pipeline
    out: list[str] = []
    out.append(f"dag_id: {_text(lp.dag_id)}  <- " + (origins.of(("dag_id",)) or "default (the file name)"))
    for name in type(p).model_fields:
        if name in _STRUCTURAL or name == "dag_id":
            continue
        value = getattr(p, name)
        if value is None and name not in p.model_fields_set:
            continue
        out.extend(_walk(name, _raw_value(lp, (name,), value), (name,), origins, "", DEFAULT))
    if p.task_groups:
        out.append("task_groups:")
        for gname, spec in p.task_groups.items():
            out.extend(_walk(gname, spec.model_dump(), ("task_groups", gname), origins, "  ", DEFAULT))
    out.append("tasks:")
    for name in lp.order or list(lp.tasks):
        out.append(f"  {name}:")
        out.extend(_task_lines(lp, origins, name))
    return out


def _task_lines(lp: LoadedPipeline, origins: Origins, name: str) -> Iterator[str]:
    task = lp.tasks[name]
    params = set(TASK_TYPES[lp.task_types[name]].param_names)
    indent = "    "
    base = ("tasks", name)
    yield f"{indent}type: {_text(lp.task_types[name])}  <- {origins.of((*base, 'type')) or origins.of((*base, 'operator'))}"
    for field in type(task).model_fields:
        if field == "type":
            continue
        path = (*base, field)
        value = getattr(task, field)
        if field == "resources":
            yield from _resources(lp, origins, name, indent)
            continue
        if isinstance(value, str) and value == MAPPED:
            where = origins.of((*base, "expand", field)) or origins.of((*base, "expand_kwargs"))
            yield f"{indent}{field}: (mapped: one value per task instance)  <- {where}"
            continue
        if field not in task.model_fields_set and field in INHERITED and getattr(lp.pipeline, field, None) is not None:
            where = origins.of((field,))
            yield (f"{indent}{field}: {_text(_raw_value(lp, (field,), getattr(lp.pipeline, field)))}  <- "
                   f"{where} (pipeline-wide)")
            continue
        if field not in task.model_fields_set and field not in params and value in (None, [], {}):
            continue  # an unset common setting: Airflow's default
        yield from _walk(field, _raw_value(lp, path, value), path, origins, indent, DEFAULT)


def _resources(lp: LoadedPipeline, origins: Origins, name: str, indent: str) -> Iterator[str]:
    res = lp.resources.get(name)
    if res is None:
        return
    values = {**res.requests(), **res.model_dump(exclude_none=True)}  # cpu and memory have defaults
    yield f"{indent}resources:"
    for key, value in values.items():
        if value in ({}, []):
            continue
        if isinstance(value, dict):
            yield f"{indent}  {key}:"
            for sub, sub_value in value.items():
                where = origins.of(("tasks", name, "resources", key, sub)) or (
                    _pipeline_wide(origins.of(("resources", key, sub)))) or DEFAULT
                yield f"{indent}    {sub}: {_text(sub_value)}  <- {where}"
            continue
        where = origins.of(("tasks", name, "resources", key)) or _pipeline_wide(
            origins.of(("resources", key))) or DEFAULT
        yield f"{indent}  {key}: {_text(value)}  <- {where}"


def _pipeline_wide(where: str | None) -> str | None:
    return f"{where} (pipeline-wide)" if where else None
