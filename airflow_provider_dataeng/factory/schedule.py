"""The ``schedule`` field: cron, preset, duration (``"1h"``) or Assets; and its Airflow form."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from airflow_provider_dataeng.specs import AssetRef, AssetSpec, StrictModel, parse_duration

PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly",
           "@annually", "@midnight")
_CRON_FIELD = r"[0-9A-Za-z*/,\-?LW#]+"
_CRON = re.compile(rf"^\s*{_CRON_FIELD}(\s+{_CRON_FIELD}){{4,5}}\s*$")
SCHEDULE_HELP = (
    "a cron expression ('0 3 * * *'), a preset (@daily, @hourly, @once, ...), a duration ('1h', '1d'), "
    "a list of Asset URIs, {any: [...]} / {all: [...]}, or null"
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


ScheduleText = Annotated[str, AfterValidator(_check_schedule_text)]
Schedule = ScheduleText | list[AssetRef] | AssetCondition | None


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


def to_airflow_schedule(schedule: Schedule, timezone: str | None = None) -> Any:
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
    refs = schedule.any if schedule.any is not None else schedule.all
    kind = "any" if schedule.any is not None else "all"
    return f"assets ({kind}): " + ", ".join(r if isinstance(r, str) else r.uri for r in refs or [])
