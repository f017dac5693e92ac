"""What the dashboard asks Airflow: which DAGs a user may read, a DAG's timetable, its runs.

Runs in the API server, which has the metadata database; every function takes the request's SQLAlchemy
session. Expected intervals come from :mod:`airflow_provider_dataeng.gaps.expected` (the gap check's own
code) and are cached per timetable, extended as time moves on: Airflow's cron timetables cost about a
millisecond per interval, too slow to recompute 50 x 1,000 intervals on every page load.
"""

from __future__ import annotations

import bisect
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_dataeng.dashboard.calendar import ACTIVE_RUN_STATES, RunInfo
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
    description: str = ""
    key: str = ""  # timetable_key(timetable), computed once per serialized DAG version
    is_anchored: bool = False  # anchored(timetable)


_schedules: dict[tuple[str, str], DagSchedule] = {}
_schedules_lock = threading.Lock()


def latest_hashes(dag_ids: Iterable[str], session: Any) -> dict[str, str]:
    """The ``dag_hash`` of each DAG's latest serialized version (one query; DAGs not serialized are left out)."""
    from airflow.models.serialized_dag import SerializedDagModel as Sdm
    from sqlalchemy import and_, func, select

    ids = sorted(set(dag_ids))
    if not ids:
        return {}
    latest: dict[str, tuple[Any, str]] = {}
    # Airflow 3 keeps one row per DAG version: only the newest of each DAG is read.
    newest = (select(Sdm.dag_id, func.max(Sdm.created_at).label("created_at")).where(Sdm.dag_id.in_(ids))
              .group_by(Sdm.dag_id).subquery())
    stmt = select(Sdm.dag_id, Sdm.created_at, Sdm.dag_hash).join(
        newest, and_(Sdm.dag_id == newest.c.dag_id, Sdm.created_at == newest.c.created_at))
    for dag_id, created_at, dag_hash in session.execute(stmt):
        if dag_id not in latest or created_at > latest[dag_id][0]:
            latest[dag_id] = (created_at, dag_hash)
    return {dag_id: dag_hash for dag_id, (_created, dag_hash) in latest.items()}


def dag_schedules(dag_ids: Iterable[str], session: Any, hashes: dict[str, str] | None = None) -> dict[str, DagSchedule]:
    """Timetable and start date of each DAG's latest serialized version (DAGs not serialized are left out).

    One query for the DAGs' latest ``dag_hash`` (or ``hashes``, from :func:`latest_hashes`); a DAG is
    deserialized only when its hash is new to us.
    """
    ids = set(dag_ids)
    hashes = latest_hashes(ids, session) if hashes is None else {d: h for d, h in hashes.items() if d in ids}
    out = {}
    for dag_id, dag_hash in hashes.items():
        with _schedules_lock:
            found = _schedules.get((dag_id, dag_hash))
        if found is None:
            found = _load_schedule(dag_id, session)
            if found is None:
                continue
            with _schedules_lock:
                if len(_schedules) > 4096:
                    _schedules.clear()
                _schedules[(dag_id, dag_hash)] = found
        out[dag_id] = found
    return out


# -- freshness SLAs of the DAGs' freshness sensors --------------------------------------------------------
@dataclass(frozen=True)
class SensorSla:
    """A freshness sensor's thresholds, read from its serialized task (template fields ``table``,
    ``conn_id``, ``warn_after``, ``error_after`` of :class:`~airflow_provider_dataeng.sensors.freshness.FreshnessSensor`)."""

    dag_id: str
    task_id: str
    conn_id: str | None
    schema: str
    table: str
    warn_after: timedelta | None
    error_after: timedelta | None

    def status(self, lag: timedelta | None) -> str:
        """The sensor's verdict for ``lag`` (same rule: past error_after is error, past warn_after warn)."""
        from airflow_provider_dataeng.freshness.status import FreshnessSLA

        return FreshnessSLA(self.warn_after, self.error_after).status_for(lag).value


_slas: dict[tuple[str, str], tuple[SensorSla, ...]] = {}


def freshness_slas(hashes: dict[str, str], session: Any) -> dict[tuple[str | None, str, str], SensorSla]:
    """``{(conn_id, schema, table): sla}`` of every freshness sensor in the DAGs of ``hashes``.

    A DAG's serialized JSON is read only when its hash is new to us. With several sensors on one table the
    strictest (smallest ``error_after``, then ``warn_after``) wins.
    """
    from airflow.models.serialized_dag import SerializedDagModel

    out: dict[tuple[str | None, str, str], SensorSla] = {}
    for dag_id, dag_hash in hashes.items():
        with _schedules_lock:
            found = _slas.get((dag_id, dag_hash))
        if found is None:
            serdag = SerializedDagModel.get(dag_id, session=session)
            found = tuple(sensor_slas(dag_id, serdag.data if serdag is not None else None))
            with _schedules_lock:
                if len(_slas) > 4096:
                    _slas.clear()
                _slas[(dag_id, dag_hash)] = found
        for sla in found:
            key = (sla.conn_id, sla.schema, sla.table)
            if key not in out or _strictness(sla) < _strictness(out[key]):
                out[key] = sla
    return out


def _strictness(sla: SensorSla) -> tuple[float, float]:
    inf = float("inf")
    return (sla.error_after.total_seconds() if sla.error_after else inf,
            sla.warn_after.total_seconds() if sla.warn_after else inf)


def sensor_slas(dag_id: str, data: dict[str, Any] | None) -> list[SensorSla]:
    """The freshness SLAs in one serialized DAG (its ``data`` JSON); tasks with unreadable values are skipped."""
    from airflow_provider_dataeng.freshness.probe import split_table_name

    tasks = ((data or {}).get("dag") or {}).get("tasks") or []
    out = []
    for item in tasks:
        op = item.get("__var", item) if isinstance(item, dict) else None
        if not isinstance(op, dict) or not ("warn_after" in op or "error_after" in op) or not op.get("table"):
            continue
        if not str(op.get("_task_module", "")).startswith("airflow_provider_dataeng."):
            continue
        try:
            warn, error = duration_value(op.get("warn_after")), duration_value(op.get("error_after"))
            schema, table = split_table_name(str(op["table"]))
        except ValueError:
            continue  # templated or unreadable: the page falls back to its interval rule
        if warn is None and error is None:
            continue
        conn_id = op.get("conn_id")
        out.append(SensorSla(dag_id, str(op.get("task_id")), str(conn_id) if conn_id else None, schema, table,
                             warn, error))
    return out


_TIMEDELTA_STR = re.compile(r"^(?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)$")


def duration_value(value: Any) -> timedelta | None:
    """A serialized duration: what ``parse_duration`` accepts, or ``str(timedelta)`` ("1 day, 2:00:00")."""
    from airflow_provider_dataeng.durations import parse_duration

    if isinstance(value, dict) and value.get("__type") == "timedelta":
        return timedelta(seconds=float(value["__var"]))
    if isinstance(value, str) and (m := _TIMEDELTA_STR.match(value.strip())):
        days, hours, minutes, secs = m.groups()
        return timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=float(secs))
    return parse_duration(value, field="duration")


def _load_schedule(dag_id: str, session: Any) -> DagSchedule | None:
    from airflow.models.serialized_dag import SerializedDagModel

    serdag = SerializedDagModel.get(dag_id, session=session)
    dag = serdag.dag if serdag is not None else None
    if dag is None:
        return None
    timetable = dag.timetable
    summary = str(getattr(timetable, "summary", "") or type(timetable).__name__)
    description = str(getattr(timetable, "description", "") or "")
    start = to_utc(dag.start_date, field="start_date") if dag.start_date else None
    return DagSchedule(dag_id, timetable, start, summary, description, timetable_key(timetable), anchored(timetable))


def dag_runs(dag_ids: Iterable[str], since: datetime, session: Any, *,
             active_only: bool = False) -> dict[str, dict[datetime, RunInfo]]:
    """The newest run per DAG and data interval start (``>= since``): ``{dag_id: {start: RunInfo}}``.

    ``active_only``: only queued and running runs (what the overview marks as in progress).
    """
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
    if active_only:
        stmt = stmt.where(DagRun.state.in_(ACTIVE_RUN_STATES))
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
    starts: list[int]
    ends: list[int]
    checked_at: float = 0.0
    checked_end: datetime | None = None


class IntervalCache:
    """``expected_intervals(timetable, start, end)`` with an LRU of per-timetable results extended on demand."""

    def __init__(self, maxsize: int = 256, recheck_seconds: float = 30.0) -> None:
        self.maxsize = maxsize
        self.recheck_seconds = recheck_seconds
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, timetable: Any, start: datetime, end: datetime) -> list[Interval]:
        return self.get_with_epochs(timetable, start, end)[0]

    def get_with_epochs(self, timetable: Any, start: datetime, end: datetime, schedule: DagSchedule | None = None,
                        ) -> tuple[list[Interval], list[int], list[int]]:
        """The intervals, and their starts and ends in epoch seconds (parallel lists).

        ``schedule``: the DAG's schedule, whose precomputed timetable key saves serializing the timetable.
        """
        start, end = to_utc(start, field="start"), to_utc(end, field="end")
        if not _extendable(timetable):
            found = expected_intervals(timetable, start, end)
            return found, _epochs(iv.start for iv in found), _epochs(iv.end for iv in found)
        if schedule is not None and schedule.key:
            key, is_anchored = schedule.key, schedule.is_anchored
        else:
            key, is_anchored = timetable_key(timetable), anchored(timetable)
        key += f"@{start.isoformat()}" if is_anchored else ""
        with self._lock:
            entry = self._data.get(key)
            now = time.monotonic()
            if entry is None or entry.start > start:
                found = expected_intervals(timetable, start, end)
                entry = _Entry(start, found[-1].end if found else start, found, _epochs(iv.start for iv in found),
                               _epochs(iv.end for iv in found), now, end)
            elif end > entry.cover_end and not (
                # Asked again within recheck_seconds for a later end: an interval that ended since may
                # show up to recheck_seconds late (each look-ahead costs a timetable step).
                entry.checked_end is not None and end <= entry.checked_end + timedelta(seconds=self.recheck_seconds)
                and now - entry.checked_at < self.recheck_seconds
            ):
                more = [iv for iv in expected_intervals(timetable, entry.cover_end, end) if iv.start >= entry.cover_end]
                entry.checked_at, entry.checked_end = now, end
                if more:
                    entry.intervals.extend(more)
                    entry.starts.extend(_epochs(iv.start for iv in more))
                    entry.ends.extend(_epochs(iv.end for iv in more))
                    entry.cover_end = more[-1].end
            self._data[key] = entry
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
            intervals, starts, ends = entry.intervals, entry.starts, entry.ends
            lo = bisect.bisect_left(starts, start.timestamp())
            hi = bisect.bisect_right(ends, end.timestamp())
            return intervals[lo:hi], starts[lo:hi], ends[lo:hi]


def _epochs(values: Iterable[datetime]) -> list[int]:
    return [int(v.timestamp()) for v in values]


INTERVALS = IntervalCache()
