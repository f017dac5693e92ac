"""Build the dashboard's JSON: targets overview and one target's detail (no FastAPI here)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_dataeng.dashboard import airflow_side, ledger_queries
from airflow_provider_dataeng.dashboard.calendar import (
    Cell,
    classify_cells,
    classify_codes,
    codes,
    counts,
    counts_from_codes,
    drift_band,
    row_count_band,
)
from airflow_provider_dataeng.dashboard.ledger_queries import CatalogState, LedgerTarget
from airflow_provider_dataeng.dashboard.loads_cache import LOADS
from airflow_provider_dataeng.dashboard.pool import POOL
from airflow_provider_dataeng.dashboard.settings import DashboardSettings
from airflow_provider_dataeng.values import first_line


@functools.lru_cache(maxsize=65536)
def _iso_of(value: datetime, offset: timedelta | None) -> str:
    return value.isoformat()


def _isoformat(value: datetime) -> str:
    """The interval bounds repeat on every request: format each once (keyed with the offset too, as equal
    instants in other zones compare equal)."""
    return _iso_of(value, value.utcoffset())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def warehouse(conn_id: str) -> contextlib.AbstractContextManager[Any]:
    """A read-only REPEATABLE READ connection to ``conn_id`` (kept between requests: :mod:`.pool`)."""
    return POOL.connection(conn_id)


@dataclass
class TargetView:
    conn_id: str
    target: LedgerTarget
    schedule: airflow_side.DagSchedule
    cells: list[Cell]
    catalog: CatalogState | None

    def span(self) -> timedelta | None:
        if self.cells:
            last = self.cells[-1].interval
            return last.end - last.start
        return self.target.last_span

    def freshness(self, settings: DashboardSettings, now: datetime, newest_end: datetime | None = None,
                  newest_at: datetime | None = None, sla: airflow_side.SensorSla | None = None) -> dict[str, Any]:
        # The newest published interval on the calendar; the ledger's newest published load only when the
        # window has none (so "latest" and "behind" always agree).
        published = [c for c in self.cells if c.status == "published"]
        if published:
            newest_end = published[-1].interval.end
            newest_at = published[-1].load.at if published[-1].load is not None else None
        return freshness(codes(self.cells), self.span(), settings, now, newest_end, newest_at, sla)

    def summary(self, settings: DashboardSettings, now: datetime) -> dict[str, Any]:
        t = self.target
        return {
            "id": target_id(self.conn_id, t),
            "conn_id": self.conn_id,
            "dag_id": t.dag_id,
            "task_id": t.task_id,
            "schema": t.schema,
            "table": t.table,
            "schedule": self.schedule.summary,
            "schedule_description": self.schedule.description,
            "first_start": _iso(self.cells[0].interval.start) if self.cells else None,
            "last_end": _iso(self.cells[-1].interval.end) if self.cells else None,
            "intervals": len(self.cells),
            "counts": counts(self.cells),
            "codes": codes(self.cells),
            "freshness": self.freshness(settings, now),
            "partitioned": self.catalog.partitioned if self.catalog else None,
            "table_exists": self.catalog.exists if self.catalog else None,
        }


def freshness(codes_: str, span: timedelta | None, settings: DashboardSettings, now: datetime,
              newest_end: datetime | None, newest_at: datetime | None = None,
              sla: airflow_side.SensorSla | None = None) -> dict[str, Any]:
    """Latest published data vs. the SLA.

    With a freshness sensor on the table (``sla``): the sensor's own rule on the lag of the newest published
    interval's end (fresh, past ``warn_after`` warn, past ``error_after`` or nothing published error).
    Without one: how many of the latest expected intervals are not published (``[dataeng]
    dashboard_freshness_*_intervals``).
    """
    behind = len(codes_) - len(codes_.upper().rstrip("RFM"))
    lag = (now - newest_end) if newest_end else None
    out = {
        "latest": _iso(newest_end),
        "loaded_at": _iso(newest_at),
        "lag_seconds": lag.total_seconds() if lag is not None else None,
        "behind_intervals": behind,
    }
    if sla is not None:
        out.update(
            status=sla.status(lag), source="sensor", sensor={"dag_id": sla.dag_id, "task_id": sla.task_id},
            warn_after_seconds=sla.warn_after.total_seconds() if sla.warn_after is not None else None,
            error_after_seconds=sla.error_after.total_seconds() if sla.error_after is not None else None,
        )
        return out
    out.update(
        status="fresh" if behind < settings.warn_intervals else "warn" if behind < settings.error_intervals else "error",
        source="intervals",
        warn_after_seconds=span.total_seconds() * settings.warn_intervals if span else None,
        error_after_seconds=span.total_seconds() * settings.error_intervals if span else None,
        warn_intervals=settings.warn_intervals,
        error_intervals=settings.error_intervals,
    )
    return out


def sla_for(slas: dict[tuple[str | None, str, str], airflow_side.SensorSla], conn_id: str, schema: str,
            table: str) -> airflow_side.SensorSla | None:
    """The sensor SLA of a target: a sensor on the same connection, else one whose conn_id is unknown."""
    return slas.get((conn_id, schema, table)) or slas.get((None, schema, table))


def target_id(conn_id: str, t: LedgerTarget) -> str:
    return f"{conn_id}:{t.dag_id}:{t.schema}.{t.table}"


def window_start(target: LedgerTarget, schedule: airflow_side.DagSchedule, limit: int, now: datetime) -> datetime:
    """From the first load (not before the DAG's start date), at most about ``limit`` intervals back.

    ``timedelta`` schedules count intervals from the window start, so their window always starts at the
    first load (a stable anchor on the DAG's real intervals).
    """
    candidates = [c for c in (target.first_start, schedule.start_date) if c is not None]
    start = max(candidates) if candidates else now - timedelta(days=limit)
    is_anchored = schedule.is_anchored if schedule.key else airflow_side.anchored(schedule.timetable)
    if target.last_span and target.last_span > timedelta(0) and not is_anchored:
        start = max(start, now - target.last_span * (limit + 1))
    return start


def build_views(
    conn: Any, conn_id: str, targets: Sequence[LedgerTarget], schedules: dict[str, airflow_side.DagSchedule],
    session: Any, limit: int, now: datetime,
) -> list[TargetView]:
    targets = [t for t in targets if t.dag_id in schedules]
    if not targets:
        return []
    windows = {t.key: window_start(t, schedules[t.dag_id], limit, now) for t in targets}
    since = min(windows.values())
    loads = ledger_queries.latest_loads(conn, targets, since)
    catalog = ledger_queries.catalog_states(conn, [(t.schema, t.table) for t in targets])
    runs = airflow_side.dag_runs({t.dag_id for t in targets}, since, session)
    views = []
    for t in targets:
        sched = schedules[t.dag_id]
        expected = airflow_side.INTERVALS.get(sched.timetable, windows[t.key], now)[-limit:]
        cells = classify_cells(expected, loads.get(t.key, []), catalog.get((t.schema, t.table)), runs.get(t.dag_id))
        views.append(TargetView(conn_id, t, sched, cells, catalog.get((t.schema, t.table))))
    return views


def overview(settings: DashboardSettings, dag_ids: set[str], session: Any, limit: int | None = None) -> dict[str, Any]:
    """Every readable target of every configured warehouse, with its calendar as one letter per interval."""
    now = now_utc()
    limit = min(limit or settings.max_intervals, settings.max_intervals)
    out: dict[str, Any] = {"now": _iso(now), "limit": limit, "targets": [], "errors": []}
    hashes = airflow_side.latest_hashes(dag_ids, session)
    slas = airflow_side.freshness_slas(hashes, session)
    schedules: dict[str, airflow_side.DagSchedule] = {}
    for conn_id in settings.conn_ids:
        try:
            with warehouse(conn_id) as conn:
                if not ledger_queries.ledger_present(conn):
                    out["errors"].append({"conn_id": conn_id, "error": "no dataeng.load_ledger in this warehouse yet"})
                    continue
                version = LOADS.version(conn, conn_id)
                targets = LOADS.targets(conn, conn_id, version, dag_ids)
                missing = {t.dag_id for t in targets} - set(schedules)
                schedules.update(airflow_side.dag_schedules(missing & dag_ids, session, hashes))
                out["targets"].extend(
                    overview_rows(conn, conn_id, version, targets, schedules, session, limit, now, settings, slas))
        except Exception as exc:  # one broken warehouse must not hide the others
            out["errors"].append({"conn_id": conn_id, "error": first_line(exc)})
    return out


# The overview's letters per (target, its ledger rows, window, catalog state, active runs): a page that polls
# while nothing changed costs a few small queries.
_LETTERS: dict[tuple[Any, ...], str] = {}


def overview_rows(
    conn: Any, conn_id: str, version: tuple[int, int], targets: Sequence[LedgerTarget], schedules: dict[str, airflow_side.DagSchedule],
    session: Any, limit: int, now: datetime, settings: DashboardSettings,
    slas: dict[tuple[str | None, str, str], airflow_side.SensorSla] | None = None,
) -> list[dict[str, Any]]:
    """The overview's rows on the fast path (epoch seconds, one letter per interval)."""
    targets = [t for t in targets if t.dag_id in schedules]
    if not targets:
        return []
    windows = {t.key: window_start(t, schedules[t.dag_id], limit, now) for t in targets}
    since = min(windows.values())
    loads = LOADS.get(conn, conn_id, version, [t.key for t in targets], since)
    catalog = ledger_queries.catalog_states(conn, [(t.schema, t.table) for t in targets])
    runs = airflow_side.dag_runs({t.dag_id for t in targets}, since, session, active_only=True)
    rows = []
    for t in targets:
        sched = schedules[t.dag_id]
        intervals, starts, ends = airflow_side.INTERVALS.get_with_epochs(sched.timetable, windows[t.key], now, sched)
        intervals, starts, ends = intervals[-limit:], starts[-limit:], ends[-limit:]
        active = frozenset(int(k.timestamp()) for k in runs.get(t.dag_id, {}))
        state = catalog.get((t.schema, t.table))
        memo_key = (conn_id, t.key, loads[t.key].token, starts[0] if starts else None, len(starts), state, active)
        letters = _LETTERS.get(memo_key)
        if letters is None:
            letters = classify_codes(starts, ends, loads[t.key], state, active)
            if len(_LETTERS) > 4096:
                _LETTERS.clear()
            _LETTERS[memo_key] = letters
        last_p = max(letters.rfind("P"), letters.rfind("p"))
        span = (intervals[-1].end - intervals[-1].start) if intervals else t.last_span
        rows.append({
            "id": target_id(conn_id, t), "conn_id": conn_id, "dag_id": t.dag_id, "task_id": t.task_id,
            "schema": t.schema, "table": t.table, "schedule": sched.summary,
            "schedule_description": sched.description,
            "first_start": _iso(intervals[0].start) if intervals else None,
            "last_end": _iso(intervals[-1].end) if intervals else None,
            "intervals": len(intervals), "counts": counts_from_codes(letters), "codes": letters,
            "freshness": freshness(letters, span, settings, now, intervals[last_p].end if last_p >= 0 else None,
                                   sla=sla_for(slas or {}, conn_id, t.schema, t.table)),
            "partitioned": state.partitioned if state else None, "table_exists": state.exists if state else None,
        })
    return rows


def detail(settings: DashboardSettings, conn_id: str, dag_id: str, schema: str, table: str, session: Any,
           limit: int | None = None, readable: set[str] | None = None) -> dict[str, Any] | None:
    """One target: every interval with its load, run and drift band; the last checks; freshness."""
    if conn_id not in settings.conn_ids:
        return None
    now = now_utc()
    limit = min(limit or settings.max_intervals, settings.max_intervals)
    with warehouse(conn_id) as conn:
        if not ledger_queries.ledger_present(conn):
            return None
        targets = LOADS.targets(conn, conn_id, LOADS.version(conn, conn_id), {dag_id})  # cached until the ledger changes
        target = next((t for t in targets if (t.schema, t.table) == (schema, table)), None)
        if target is None:
            return None
        schedules = airflow_side.dag_schedules({dag_id}, session)
        views = build_views(conn, conn_id, [target], schedules, session, limit, now)
        if not views:
            return None
        view = views[0]
        checks = ledger_queries.recent_checks(conn, target)
        newest_end, newest_at = ledger_queries.newest_published(conn, target)
    out = view.summary(settings, now)
    slas = airflow_side.freshness_slas(airflow_side.latest_hashes(readable or {dag_id}, session), session)
    out["freshness"] = view.freshness(settings, now, newest_end, newest_at, sla_for(slas, conn_id, schema, table))
    out["now"] = _iso(now)
    out["partitions"] = len(view.catalog.partitions) if view.catalog else 0
    out["cells"] = [_cell(c) for c in view.cells]
    band = None
    for row in checks:
        band = row_count_band(row.get("checks") or [])
        if band:
            break
    out["row_count_band"] = band
    out["checks"] = [
        {
            "ledger_id": r["id"], "status": r["status"], "rows": r["rows"], "run_id": r["run_id"],
            "task_id": r["task_id"], "start": _iso(r["partition_start"]), "end": _iso(r["partition_end"]),
            "at": _iso(r["at"]), "error": first_line(r["error"]) if r["error"] else None,
            "checks": list(r["checks"] or []),
        }
        for r in checks
    ]
    return out


def _cell(c: Cell) -> dict[str, Any]:
    load = c.load
    return {
        "start": _isoformat(c.interval.start),
        "end": _isoformat(c.interval.end),
        "logical_date": _isoformat(c.interval.run_date),
        "status": c.status,
        "detail": c.detail,
        "rows": load.rows if load else None,
        "ledger_id": load.ledger_id if load else None,
        "run_id": (load.run_id if load and load.run_id else None) or (c.run.run_id if c.run else None),
        "task_id": load.task_id if load else None,
        "attempts": load.attempts if load else 0,
        "at": _iso(load.at) if load else None,
        "run_state": c.run.state if c.run else None,
        "active": c.active,
        "band": [round(v, 1) for v in b] if load and (b := drift_band(load.rows, load.checks)) else None,
    }


def formation(settings: DashboardSettings) -> dict[str, Any]:
    """The pg_auto_failover formation's nodes (role, health, LSN lag behind the primary), if configured."""
    if not settings.monitor_conn_id:
        return {"configured": False}
    from airflow_provider_dataeng.connections import connect

    out: dict[str, Any] = {"configured": True, "formation": settings.formation, "monitor": settings.monitor_conn_id}
    try:
        nodes = connect(settings.monitor_conn_id, role="monitor").get_node_states(settings.formation)
    except Exception as exc:
        out["error"] = first_line(exc)
        return out
    primary = next((n for n in nodes if n.reported_state in ("primary", "wait_primary", "single")), None)
    out["nodes"] = [
        {
            "name": n.name, "address": n.address, "reported_state": n.reported_state, "goal_state": n.goal_state,
            "health": n.health_label, "settled": n.settled, "reported_lsn": n.reported_lsn,
            "lag_bytes": (primary.reported_lsn_bytes - n.reported_lsn_bytes) if primary and n is not primary else 0,
            "report_age_s": n.report_age_s, "replication": n.reported_rep_state,
        }
        for n in nodes
    ]
    return out
