"""Expected data intervals between two dates, from a cron expression, a timedelta or a DAG's timetable.

Uses Airflow's own timetable API (``next_dagrun_info_v2`` iteration under a catch-up ``TimeRestriction``),
so the intervals are exactly the ones the scheduler and ``airflow backfill create`` would produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

MAX_INTERVALS = 200_000


@dataclass(frozen=True, order=True)
class Interval:
    """A data interval ``[start, end)`` in UTC; ``logical_date`` is what a backfill names it by."""

    start: datetime
    end: datetime
    logical_date: datetime | None = None

    @property
    def run_date(self) -> datetime:
        return self.logical_date or self.start


def to_utc(value: datetime | str, *, field: str) -> datetime:
    """An aware UTC ``datetime`` from a ``datetime`` (naive = UTC) or an ISO string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{field}={value!r}: expected an ISO date or timestamp") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{field}={value!r}: expected a datetime or an ISO timestamp string")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(value.timestamp(), tz=timezone.utc)


def resolve_timetable(schedule: Any, *, dag_timetable: Any = None, tz: Any = "UTC") -> Any:
    """A core Airflow timetable for ``schedule``.

    ``schedule``: ``None`` (use ``dag_timetable``), a cron expression or preset (``"0 * * * *"``, ``"@daily"``;
    data intervals like ``CronDataIntervalTimetable``), a ``timedelta`` (``DeltaDataIntervalTimetable``)
    or a timetable instance (core or Task SDK).
    """
    from airflow.timetables.base import Timetable as CoreTimetable
    from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable

    if schedule is None:
        if dag_timetable is None:
            raise ValueError("schedule: no schedule given and no DAG timetable to fall back on")
        schedule = dag_timetable
    if isinstance(schedule, str):
        try:
            timetable: Any = CronDataIntervalTimetable(schedule, tz)
            timetable.validate()
        except Exception as exc:
            raise ValueError(f"schedule={schedule!r}: not a valid cron expression or preset ({exc})") from None
        return timetable
    if isinstance(schedule, timedelta):
        if schedule <= timedelta(0):
            raise ValueError(f"schedule={schedule!r}: expected a positive timedelta")
        return DeltaDataIntervalTimetable(schedule)
    if isinstance(schedule, CoreTimetable):
        return schedule
    try:  # A Task SDK timetable (what a DAG holds at runtime): convert the way Airflow's serializer does.
        from airflow.serialization.encoders import coerce_to_core_timetable

        core = coerce_to_core_timetable(schedule)
    except Exception as exc:
        raise ValueError(f"schedule={schedule!r}: cannot use this timetable ({exc})") from None
    if not isinstance(core, CoreTimetable):
        raise ValueError(
            f"schedule={schedule!r}: expected a cron expression, a timedelta or an Airflow timetable"
        )
    return core


def describe_timetable(timetable: Any) -> str:
    return str(getattr(timetable, "summary", None) or getattr(timetable, "description", None) or type(timetable).__name__)


def expected_intervals(timetable: Any, start: datetime, end: datetime) -> list[Interval]:
    """Data intervals of ``timetable`` with ``start <= interval.start`` and ``interval.end <= end``.

    A timetable whose runs have zero-length data intervals (``CronTriggerTimetable`` without ``interval``)
    gets ``[run_i, run_{i+1})``: the data between two consecutive runs.
    """
    start, end = to_utc(start, field="start"), to_utc(end, field="end")
    if end <= start:
        return []
    if getattr(timetable, "partitioned", False):
        raise ValueError("schedule: partitioned (partition-key) timetables are not supported by the gap check")
    fast = _utc_cron_intervals(timetable, start, end)
    if fast is not None:
        return fast
    return _timetable_intervals(timetable, start, end)


def _utc_cron_intervals(timetable: Any, start: datetime, end: datetime) -> list[Interval] | None:
    """The intervals of a ``CronDataIntervalTimetable`` in UTC with one croniter walk, or None for any other
    timetable. Airflow's own iteration builds five croniter objects per interval (``_get_next``/``_get_prev``
    for alignment); in UTC (no DST fix) each interval is simply ``[fire_i, fire_{i+1})`` from the first fire
    time at or after ``start`` (the timetable's own alignment), so both give the same intervals
    (``tests/test_gap_check.py`` compares them)."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    tz = getattr(timetable, "_timezone", None)
    if type(timetable) is not CronDataIntervalTimetable or getattr(tz, "name", None) not in ("UTC", "Etc/UTC"):
        return None
    import pendulum
    from croniter import croniter

    first = to_utc(timetable._align_to_next(pendulum.instance(start)), field="interval start")
    walk = croniter(timetable._expression, start_time=first.replace(tzinfo=None))
    intervals: list[Interval] = []
    lo = first
    while True:
        hi = walk.get_next(datetime).replace(tzinfo=timezone.utc)
        if hi > end or hi <= lo:
            break
        intervals.append(Interval(lo, hi, lo))
        if len(intervals) > MAX_INTERVALS:
            raise ValueError(
                f"start..end ({start.isoformat()} .. {end.isoformat()}) spans more than {MAX_INTERVALS} "
                "intervals of this schedule; narrow the window"
            )
        lo = hi
    return intervals


def _timetable_intervals(timetable: Any, start: datetime, end: datetime) -> list[Interval]:
    """Airflow's own iteration (``next_dagrun_info_v2`` under a catch-up restriction): any timetable."""
    import pendulum
    from airflow.timetables.base import TimeRestriction

    restriction = TimeRestriction(earliest=pendulum.instance(start), latest=pendulum.instance(end), catchup=True)
    intervals: list[Interval] = []
    zero_length_runs: list[datetime] = []
    info = None
    while True:
        if hasattr(timetable, "next_dagrun_info_v2"):
            info = timetable.next_dagrun_info_v2(last_dagrun_info=info, restriction=restriction)
        else:  # Airflow < 3.2
            info = timetable.next_dagrun_info(
                last_automated_data_interval=info and info.data_interval, restriction=restriction
            )
        if info is None or info.data_interval is None:
            break
        lo = to_utc(info.data_interval.start, field="interval start")
        hi = to_utc(info.data_interval.end, field="interval end")
        logical = to_utc(info.logical_date, field="logical date") if info.logical_date else lo
        if lo == hi:
            if lo > end:
                break
            zero_length_runs.append(lo)
        else:
            if hi > end:
                break
            if lo >= start:
                intervals.append(Interval(lo, hi, logical))
        if len(intervals) + len(zero_length_runs) > MAX_INTERVALS:
            raise ValueError(
                f"start..end ({start.isoformat()} .. {end.isoformat()}) spans more than {MAX_INTERVALS} "
                "intervals of this schedule; narrow the window"
            )
    for lo, hi in zip(zero_length_runs, zero_length_runs[1:], strict=False):
        if lo >= start:
            intervals.append(Interval(lo, hi, lo))
    return sorted(intervals)
