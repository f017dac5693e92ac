"""The ``schedule`` field: cron, preset, duration (``"1h"``) or Assets; and its Airflow form."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from airflow_provider_dataeng.specs import (
    AssetRef,
    AssetSpec,
    ConnId,
    StrictModel,
    TableName,
    parse_duration,
)

PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly",
           "@annually", "@midnight")
_CRON_FIELD = r"[0-9A-Za-z*/,\-?LW#]+"
_CRON = re.compile(rf"^\s*{_CRON_FIELD}(\s+{_CRON_FIELD}){{4,5}}\s*$")
SCHEDULE_HELP = (
    "a cron expression ('0 3 * * *'), a preset (@daily, @hourly, @once, ...), a duration ('1h', '1d'), "
    "a list of Asset URIs, {any: [...]} / {all: [...]}, {after: [pipelines], tables: [...], conn_id: ...}, or null"
)


def _check_schedule_text(value: str) -> str:
    text = value.strip()
    if text.startswith("@"):
        if text not in PRESETS:
            raise ValueError(f"unknown preset {text!r}; expected one of {', '.join(PRESETS)}")
        return text
    if _CRON.match(text):
        return text
    try:
        parse_duration(text)
    except ValueError:
        raise ValueError(f"expected {SCHEDULE_HELP}") from None
    return text


class AssetCondition(StrictModel):
    """Run when any (or all) of the Assets are updated."""

    any: list[AssetRef] | None = Field(default=None, min_length=1, description="Run when any of these is updated")
    all: list[AssetRef] | None = Field(default=None, min_length=1, description="Run when all of these were updated")

    def model_post_init(self, _context: Any) -> None:
        if (self.any is None) == (self.all is None):
            raise ValueError("give exactly one of 'any' or 'all'")


class ScheduleOn(StrictModel):
    """Run when other pipelines (by name) and/or tables were updated: no Asset URIs written by hand.

    ``after: [orders, customers]`` waits for every table those pipelines' tasks update (their outlets);
    ``tables: [raw.orders]`` (with ``conn_id``) for tables by name. The Assets come from the one table
    identity (:func:`airflow_provider_dataeng.publish.assets.table_asset`), so they are the producers' own.
    """

    after: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]+$")]] | None = Field(
        default=None, min_length=1, description="Pipelines (dag ids) whose updated tables trigger this one")
    tables: list[TableName] | None = Field(
        default=None, min_length=1, description="Tables (schema.table) whose updates trigger this one")
    conn_id: ConnId | None = Field(default=None, description="The warehouse connection of 'tables'")
    when: Literal["all", "any"] = Field(
        default="all", description="all: run once every one was updated since the last run; any: on each update")

    @model_validator(mode="after")
    def _something(self) -> ScheduleOn:
        if not self.after and not self.tables:
            raise ValueError("give 'after' (pipelines) and/or 'tables'")
        if self.tables and not self.conn_id:
            raise ValueError("'tables' needs 'conn_id' (the warehouse connection)")
        return self


ScheduleText = Annotated[str, AfterValidator(_check_schedule_text)]
Schedule = ScheduleText | list[AssetRef] | AssetCondition | ScheduleOn | None
OutletsOf = Callable[[str], list[Any]]
"""dag id -> the Assets its tasks update (raises KeyError for an unknown or broken pipeline)."""


def make_asset(ref: AssetRef) -> Any:
    """An Airflow ``Asset`` for a URI string or :class:`AssetSpec`."""
    from airflow.providers.common.compat.sdk import Asset

    if isinstance(ref, AssetSpec):
        kwargs: dict[str, Any] = {"uri": ref.uri}
        if ref.name:
            kwargs["name"] = ref.name
        if ref.group:
            kwargs["group"] = ref.group
        if ref.extra:
            kwargs["extra"] = ref.extra
        return Asset(**kwargs)
    return Asset(uri=ref)


def _on(schedule: ScheduleOn, outlets_of: OutletsOf | None) -> Any:
    from airflow.providers.common.compat.sdk import AssetAll, AssetAny

    from airflow_provider_dataeng.publish.assets import table_asset

    assets = [table_asset(schedule.conn_id, t) for t in schedule.tables or []] if schedule.conn_id else []
    for name in schedule.after or []:
        if outlets_of is None:
            raise ValueError("schedule.after needs the other pipelines of the folder")
        assets.extend(outlets_of(name))
    unique = list({a.uri: a for a in assets}.values())
    return AssetAny(*unique) if schedule.when == "any" else AssetAll(*unique)


def to_airflow_schedule(schedule: Schedule, timezone: str | None = None, outlets_of: OutletsOf | None = None) -> Any:
    """The ``schedule=`` argument for ``DAG``: a data-interval timetable, an Asset expression, or a preset.

    Cron expressions and presets become ``CronDataIntervalTimetable`` and durations
    ``DeltaDataIntervalTimetable``: every run of a pipeline covers one data interval [start, end) that its
    tasks target (Airflow 3's default for a cron string, ``CronTriggerTimetable``, gives runs an empty
    interval, so partition-targeted extracts would have nothing to target). ``@once`` and
    ``@continuous`` stay as they are.
    """
    if schedule is None:
        return None
    if isinstance(schedule, str):
        text = schedule.strip()
        if text in ("@once", "@continuous"):
            return text
        try:
            from airflow.sdk import CronDataIntervalTimetable, DeltaDataIntervalTimetable
        except ImportError:  # Airflow 2.x
            from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable
        if text.startswith("@") or _CRON.match(text):
            return CronDataIntervalTimetable(text, timezone=timezone or "UTC")
        return DeltaDataIntervalTimetable(parse_duration(text))
    if isinstance(schedule, list):
        return [make_asset(ref) for ref in schedule]
    if isinstance(schedule, ScheduleOn):
        return _on(schedule, outlets_of)
    from airflow.providers.common.compat.sdk import AssetAll, AssetAny

    if schedule.any is not None:
        return AssetAny(*(make_asset(ref) for ref in schedule.any))
    return AssetAll(*(make_asset(ref) for ref in schedule.all or []))


def describe_schedule(schedule: Schedule) -> str:
    """Human text for ``dataeng render``."""
    if schedule is None:
        return "none (manual/triggered)"
    if isinstance(schedule, str):
        return schedule
    if isinstance(schedule, list):
        return "assets (all): " + ", ".join(r if isinstance(r, str) else r.uri for r in schedule)
    if isinstance(schedule, ScheduleOn):
        parts = ([f"pipelines {', '.join(schedule.after)}"] if schedule.after else []) + (
            [f"tables {', '.join(schedule.tables)} ({schedule.conn_id})"] if schedule.tables else [])
        return f"after {schedule.when} of: " + "; ".join(parts)
    refs = schedule.any if schedule.any is not None else schedule.all
    kind = "any" if schedule.any is not None else "all"
    return f"assets ({kind}): " + ", ".join(r if isinstance(r, str) else r.uri for r in refs or [])
