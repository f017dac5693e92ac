"""Which interval a run extracts: the run's conf/params, its data interval, or the DAG's last complete one.

In order:

1. ``interval_start`` and ``interval_end`` in the run's conf (or params): that interval, for any run.
2. The run's data interval (scheduled runs, backfills, triggers with a logical date).
3. No data interval (the UI's Trigger button, the REST API without ``logical_date``): the DAG's last complete
   interval before the run was triggered (``run_after``), from the DAG's timetable. A retry of that run
   computes the same interval.

The log line of the run says which of the three it used (``RunInterval.origin``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException

CONF_KEYS = ("interval_start", "interval_end")


@dataclass(frozen=True)
class RunInterval:
    lower: datetime
    upper: datetime
    origin: str  # human-readable: where the interval came from


def as_utc(value: datetime) -> datetime:
    """A plain ``datetime`` in UTC (pendulum or other tz-aware datetimes in, exact same instant out)."""
    return datetime(*value.utctimetuple()[:6], value.microsecond, tzinfo=timezone.utc)


def _parse_bound(value: Any, key: str, where: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise AirflowFailException(
                f"{where} {key}={value!r}: expected an ISO 8601 timestamp like '2024-01-01T00:00:00+00:00'"
            ) from None
    else:
        raise AirflowFailException(
            f"{where} {key}={value!r}: expected an ISO 8601 timestamp like '2024-01-01T00:00:00+00:00'")
    if parsed.tzinfo is None:  # a date or naive timestamp from a form: read as UTC (said in the log)
        parsed = parsed.replace(tzinfo=timezone.utc)
    return as_utc(parsed)


def _from_mapping(values: Any, where: str) -> RunInterval | None:
    if not isinstance(values, Mapping):
        return None
    given = [k for k in CONF_KEYS if values.get(k) not in (None, "")]
    if not given:
        return None
    if len(given) == 1:
        raise AirflowFailException(f"{where}: give both interval_start and interval_end (only {given[0]} is set)")
    lower = _parse_bound(values["interval_start"], "interval_start", where)
    upper = _parse_bound(values["interval_end"], "interval_end", where)
    if not lower < upper:
        raise AirflowFailException(f"{where}: interval_start {lower.isoformat()} is not before interval_end "
                                   f"{upper.isoformat()}")
    return RunInterval(lower, upper, f"interval from the run's {where} (naive values are read as UTC)")


def _timetable_interval(context: Mapping[str, Any]) -> RunInterval:
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    timetable = getattr(dag, "timetable", None)
    if timetable is None:
        raise AirflowFailException(
            "the run has no data interval and no DAG timetable to take the last complete interval from: give "
            "interval_start and interval_end in the run's conf"
        )
    run_after = getattr(dag_run, "run_after", None) or datetime.now(timezone.utc)
    if not hasattr(timetable, "infer_manual_data_interval"):
        from airflow.serialization.encoders import coerce_to_core_timetable  # SDK definition -> core logic

        timetable = coerce_to_core_timetable(timetable)
    import pendulum

    interval = timetable.infer_manual_data_interval(run_after=pendulum.instance(as_utc(run_after)))
    if interval is None:
        raise AirflowFailException(
            f"the run has no data interval and the DAG's timetable ({type(timetable).__name__}) defines none: give "
            "interval_start and interval_end in the run's conf"
        )
    return RunInterval(as_utc(interval.start), as_utc(interval.end),
                       f"the DAG's last complete interval before {as_utc(run_after).isoformat()} (run without a data "
                       f"interval; timetable {type(timetable).__name__})")


def resolve_interval(context: Mapping[str, Any]) -> RunInterval:
    """The ``[lower, upper)`` (UTC) this run extracts, and where it came from."""
    dag_run = context.get("dag_run")
    explicit = _from_mapping(getattr(dag_run, "conf", None), "conf") or _from_mapping(context.get("params"), "params")
    if explicit is not None:
        return explicit
    lower, upper = context.get("data_interval_start"), context.get("data_interval_end")
    if lower is not None and upper is not None:
        if lower.tzinfo is None or upper.tzinfo is None:
            raise AirflowFailException(f"data interval [{lower}, {upper}): expected timezone-aware datetimes")
        return RunInterval(as_utc(lower), as_utc(upper), "the run's data interval")
    return _timetable_interval(context)
