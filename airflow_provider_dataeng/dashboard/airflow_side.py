"""What the dashboard asks Airflow: which DAGs a user may read, a DAG's timetable, its runs.

Runs in the API server, which has the metadata database; every function takes the request's SQLAlchemy
session. Expected intervals come from :mod:`airflow_provider_dataeng.gaps.expected` (the gap check's own
code) and are cached per timetable, extended as time moves on: Airflow's cron timetables cost about a
millisecond per interval, too slow to recompute 50 x 1,000 intervals on every page load.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_dataeng.dashboard.calendar import RunInfo
from airflow_provider_dataeng.gaps.expected import Interval, expected_intervals, to_utc


def readable_dag_ids(user: Any) -> set[str]:
    """The DAG ids ``user`` may read, as Airflow's auth manager decides."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


@dataclass(frozen=True)
class DagSchedule:
    dag_id: str
    timetable: Any
    start_date: datetime | None
    summary: str


_dag_bag: Any = None
_dag_bag_lock = threading.Lock()


def _bag() -> Any:
    global _dag_bag
    with _dag_bag_lock:
        if _dag_bag is None:
            from airflow.api_fastapi.common.dagbag import create_dag_bag

            _dag_bag = create_dag_bag()
        return _dag_bag


def dag_schedules(dag_ids: Iterable[str], session: Any) -> dict[str, DagSchedule]:
    """Timetable and start date of each DAG's latest serialized version (DAGs not serialized are left out)."""
    out = {}
    for dag_id in sorted(set(dag_ids)):
        dag = _bag().get_latest_version_of_dag(dag_id, session=session)
        if dag is None:
            continue
        timetable = dag.timetable
        summary = str(getattr(timetable, "summary", "") or type(timetable).__name__)
        start = to_utc(dag.start_date, field="start_date") if dag.start_date else None
        out[dag_id] = DagSchedule(dag_id, timetable, start, summary)
    return out


def dag_runs(dag_ids: Iterable[str], since: datetime, session: Any) -> dict[str, dict[datetime, RunInfo]]:
    """The newest run per DAG and data interval start (``>= since``): ``{dag_id: {start: RunInfo}}``."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    ids = sorted(set(dag_ids))
    out: dict[str, dict[datetime, RunInfo]] = {d: {} for d in ids}
    if not ids:
        return out
    stmt = (
        select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.run_type, DagRun.data_interval_start)
        .where(DagRun.dag_id.in_(ids), DagRun.data_interval_start >= since)
        .order_by(DagRun.id)
    )
    for dag_id, run_id, state, run_type, start in session.execute(stmt):
        if start is None:
            continue
        out[dag_id][to_utc(start, field="data_interval_start")] = RunInfo(
            run_id, str(getattr(state, "value", state)), str(getattr(run_type, "value", run_type))
        )
    return out


# -- expected intervals, cached per timetable ---------------------------------------------------------------
def _extendable(timetable: Any) -> bool:
    """Whether [a, b) + [b, c) == [a, c) when b is an interval end: true for timetables whose intervals tile
    time (cron and delta data intervals, and cron triggers, whose intervals are consecutive runs)."""
    return not getattr(timetable, "partitioned", False)


def anchored(timetable: Any) -> bool:
    """Timetables whose intervals start from the window's start (``timedelta`` schedules), not a clock grid."""
    from airflow.timetables.interval import DeltaDataIntervalTimetable

    return isinstance(timetable, DeltaDataIntervalTimetable)


def timetable_key(timetable: Any) -> str:
    try:
        body = json.dumps(timetable.serialize(), sort_keys=True, default=str)
    except Exception:
        body = repr(timetable)
    return f"{type(timetable).__module__}.{type(timetable).__qualname__}:{body}"


@dataclass
class _Entry:
    start: datetime
    cover_end: datetime
    intervals: list[Interval]


class IntervalCache:
    """``expected_intervals(timetable, start, end)`` with an LRU of per-timetable results extended on demand."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, timetable: Any, start: datetime, end: datetime) -> list[Interval]:
        start, end = to_utc(start, field="start"), to_utc(end, field="end")
        if not _extendable(timetable):
            return expected_intervals(timetable, start, end)
        key = timetable_key(timetable) + (f"@{start.isoformat()}" if anchored(timetable) else "")
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry.start > start:
                found = expected_intervals(timetable, start, end)
                entry = _Entry(start, found[-1].end if found else start, found)
            elif end > entry.cover_end:
                more = [iv for iv in expected_intervals(timetable, entry.cover_end, end) if iv.start >= entry.cover_end]
                if more:
                    entry.intervals.extend(more)
                    entry.cover_end = more[-1].end
            self._data[key] = entry
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
            intervals = entry.intervals
        lo = bisect.bisect_left(intervals, start, key=lambda iv: iv.start)
        hi = bisect.bisect_right(intervals, end, key=lambda iv: iv.end)
        return intervals[lo:hi]


INTERVALS = IntervalCache()
