"""The gap check: expected intervals vs. the ledger and the partitions present."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow_provider_dataeng.gaps.catalog import (
    LedgerRow,
    TableState,
    ledger_exists,
    read_ledger,
    read_table_state,
)
from airflow_provider_dataeng.gaps.expected import Interval, describe_timetable, expected_intervals, to_utc
from airflow_provider_dataeng.gaps.report import GapReport, Hole
from airflow_provider_dataeng.values import first_line


def classify(interval: Interval, state: TableState, rows: list[LedgerRow]) -> Hole | None:
    """The hole at ``interval``, if any. The newest ledger row covering it decides failed/rejected;
    for a partitioned target an attached partition covering it counts as data present."""
    covering = [r for r in rows if r.covers(interval.start, interval.end)]
    latest = max(covering, key=lambda r: r.id) if covering else None
    partition = next((p for p in state.partitions if p.covers(interval.start, interval.end)), None)
    if latest is not None and latest.status in ("failed", "rejected"):
        detail = f"latest load {latest.status}"
        if latest.error:
            detail += f": {first_line(latest.error, 160)}"
        if partition is not None:
            detail += f" (earlier partition {partition.name} still attached)"
        return Hole(interval, latest.status, detail, latest.id, latest.run_id)
    if not state.exists:
        return Hole(interval, "missing", "target table does not exist", latest and latest.id, latest and latest.run_id)
    if state.partitioned:
        if partition is not None:
            return None
        if latest is not None:
            return Hole(
                interval, "missing",
                f"ledger row {latest.id} says {latest.status} but no partition covers the interval",
                latest.id, latest.run_id,
            )
        return Hole(interval, "missing", "no partition and no ledger row", None, None)
    if latest is None:
        return Hole(interval, "missing", "no ledger row for this interval", None, None)
    return None


def find_gaps(
    hook: Any,
    *,
    schema: str,
    table: str,
    timetable: Any,
    start: datetime,
    end: datetime,
    pipeline: str | None = None,
) -> GapReport:
    """Compare ``timetable``'s intervals in ``[start, end)`` with the ledger and partitions of ``schema.table``."""
    start, end = to_utc(start, field="start"), to_utc(end, field="end")
    expected = expected_intervals(timetable, start, end)

    def work(conn: Any) -> tuple[TableState, bool, list[LedgerRow]]:
        state = read_table_state(conn, schema, table)
        present = ledger_exists(conn)
        rows = read_ledger(conn, schema, table, start, end, pipeline) if present and expected else []
        return state, present, rows

    state, present, rows = hook.run_with_reconnect(work, description=f"gap check on {schema}.{table}")
    holes = [hole for iv in expected if (hole := classify(iv, state, rows)) is not None]
    report = GapReport(
        target=f"{schema}.{table}", schedule=describe_timetable(timetable), start=start, end=end,
        expected=expected, holes=holes, partitioned=state.partitioned, table_exists=state.exists,
        ledger_present=present,
    )
    if not state.exists:
        report.notes.append(f"target table {schema}.{table} does not exist")
    if not present:
        report.notes.append("ledger table dataeng.load_ledger does not exist: judging by partitions only")
    if state.exists and not state.partitioned:
        report.notes.append("target is not partitioned: judging by ledger rows only")
    default = [p.name for p in state.partitions if p.lower is None or p.upper is None]
    if default:
        report.notes.append(f"partitions without finite bounds ignored: {', '.join(default)}")
    return report
