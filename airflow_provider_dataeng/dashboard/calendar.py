"""Lay a target's expected intervals out as calendar cells: published / rejected / failed / missing.

Same verdicts as the gap check (:func:`airflow_provider_dataeng.gaps.check.classify`): the newest ledger
row covering an interval decides rejected/failed; otherwise a partitioned target's interval is published
when an attached partition covers it (missing when none does, whatever the ledger says), and any other
target's when a ledger row covers it; a target table that does not exist has every interval missing. Done with an index instead of a scan
per interval, so 1,000 intervals x 1,000 rows cost milliseconds.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_dataeng.dashboard.ledger_queries import CatalogState, IntervalLoad
from airflow_provider_dataeng.gaps.expected import Interval
from airflow_provider_dataeng.values import first_line

STATUSES = ("published", "rejected", "failed", "missing")
CODES = {"published": "P", "rejected": "R", "failed": "F", "missing": "M"}
ACTIVE_RUN_STATES = ("queued", "running")


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    state: str
    run_type: str | None = None


@dataclass(frozen=True, slots=True)
class Cell:
    interval: Interval
    status: str
    load: IntervalLoad | None
    detail: str
    run: RunInfo | None = None

    @property
    def active(self) -> bool:
        return self.run is not None and self.run.state in ACTIVE_RUN_STATES


def _covers(load: IntervalLoad, iv: Interval) -> bool:
    return load.start <= iv.start and (load.end is None or iv.end <= load.end)


def classify_cells(
    expected: Sequence[Interval],
    loads: Sequence[IntervalLoad],
    catalog: CatalogState | None,
    runs: dict[datetime, RunInfo] | None = None,
) -> list[Cell]:
    """One cell per expected interval (``loads``: newest row per ``partition_start``, any order)."""
    ordered = sorted(loads, key=lambda load: load.start)
    starts = [load.start for load in ordered]
    by_start = {load.start: load for load in ordered}
    runs = runs or {}
    cells = []
    for iv in expected:
        load = by_start.get(iv.start)
        if load is None or load.end != iv.end:  # not the common exact match: look for covering rows
            load = _covering(iv, load, ordered, starts)
        status, detail = _verdict(iv, load, catalog)
        cells.append(Cell(iv, status, load, detail, runs.get(iv.start)))
    return cells


def _covering(iv: Interval, exact: IntervalLoad | None, ordered: Sequence[IntervalLoad],
              starts: Sequence[datetime]) -> IntervalLoad | None:
    """The newest row covering ``iv``: the one starting with it, or one of the nearest starting before."""
    candidates = [exact] if exact is not None and _covers(exact, iv) else []
    i = bisect.bisect_right(starts, iv.start) - 1
    for j in range(i, max(-1, i - 3), -1):
        if ordered[j] is not exact and _covers(ordered[j], iv):
            candidates.append(ordered[j])
    return max(candidates, key=lambda c: c.ledger_id) if candidates else None


def _verdict(iv: Interval, load: IntervalLoad | None, catalog: CatalogState | None) -> tuple[str, str]:
    if load is not None and load.status in ("failed", "rejected"):
        first = first_line(load.error, 160)
        return load.status, f"latest load {load.status}" + (f": {first}" if first else "")
    if catalog is not None and not catalog.exists:
        return "missing", "target table does not exist"
    if catalog is not None and catalog.partitioned:
        if catalog.covered(iv.start, iv.end):
            return "published", f"{load.rows if load and load.rows is not None else '?'} rows" + (
                "" if load else " (partition attached, no ledger row)")
        if load is not None:
            return "missing", f"ledger row {load.ledger_id} says published but no partition covers the interval"
    if load is None:
        return "missing", "no ledger row for this interval"
    return "published", f"{load.rows if load.rows is not None else '?'} rows"


def counts(cells: Sequence[Cell]) -> dict[str, int]:
    out = dict.fromkeys(STATUSES, 0)
    for cell in cells:
        out[cell.status] += 1
    out["running"] = sum(1 for c in cells if c.active)
    return out


def codes(cells: Sequence[Cell]) -> str:
    """One letter per cell (P/R/F/M), lower case while a DAG run for the interval is queued or running."""
    return "".join(CODES[c.status].lower() if c.active else CODES[c.status] for c in cells)


# -- the row-count chart's bands --------------------------------------------------------------------------
_DRIFT_THRESHOLD = re.compile(r"^\+-\s*([0-9.]+)\s*%$")
_DRIFT_OBSERVED = re.compile(r"^([+-]?[0-9.]+)\s*%$")
_RANGE = re.compile(r"^\s*(-?[0-9.]+)\s*\.\.\s*(-?[0-9.]+)\s*$")
_GE = re.compile(r"^\s*>=\s*(-?[0-9.]+)\s*$")
_LE = re.compile(r"^\s*<=\s*(-?[0-9.]+)\s*$")


def drift_band(rows: int | None, checks: Sequence[dict[str, Any]]) -> tuple[float, float] | None:
    """The row range the drift check accepted for this load: baseline x (1 -+ max_change_pct).

    The baseline (the rows published before) is recovered from the check's observed change.
    """
    if rows is None:
        return None
    for check in checks or ():
        threshold = _DRIFT_THRESHOLD.match(str(check.get("threshold") or ""))
        observed = _DRIFT_OBSERVED.match(str(check.get("observed") or ""))
        if not threshold or not observed:
            continue
        pct, change = float(threshold.group(1)), float(observed.group(1))
        if change <= -100:
            return None
        baseline = rows / (1 + change / 100)
        return baseline * (1 - pct / 100), baseline * (1 + pct / 100)
    return None


def row_count_band(checks: Sequence[dict[str, Any]]) -> tuple[float | None, float | None] | None:
    """``(min, max)`` of a ``row_count`` check (either may be None), or None without one."""
    for check in checks or ():
        if not str(check.get("check", "")).startswith("row_count"):
            continue
        text = str(check.get("threshold") or "")
        if m := _RANGE.match(text):
            return float(m.group(1)), float(m.group(2))
        if m := _GE.match(text):
            return float(m.group(1)), None
        if m := _LE.match(text):
            return None, float(m.group(1))
    return None


# -- the overview's fast path: epoch seconds and one letter per interval ---------------------------------------
@dataclass(frozen=True)
class CompactLoads:
    """A target's newest ledger row per interval start, as parallel lists sorted by start (epoch seconds)."""

    starts: list[int]
    ends: list[int | None]
    ids: list[int]
    codes: str  # P / R / F per row
    token: int = 0  # identifies this content (a new token whenever the target's rows change)


def classify_codes(
    exp_starts: Sequence[int], exp_ends: Sequence[int], loads: CompactLoads,
    catalog: CatalogState | None, active_starts: frozenset[int] = frozenset(),
) -> str:
    """:func:`classify_cells` for the overview: one letter per interval (lower case while a run is active).

    The same verdicts on integers instead of objects, so 50 targets x 1,000 intervals take milliseconds.
    """
    index = {s: i for i, s in enumerate(loads.starts)}
    exists = catalog is None or catalog.exists
    partitioned = catalog is not None and catalog.partitioned
    parts = [(int(lo.timestamp()), int(hi.timestamp())) for lo, hi in catalog.partitions] if partitioned else []
    part_starts = [lo for lo, _ in parts]
    out = []
    for s, e in zip(exp_starts, exp_ends, strict=True):
        i = index.get(s)
        if i is None or loads.ends[i] != e:
            i = _covering_index(s, e, i, loads)
        code = loads.codes[i] if i is not None else None
        if code in ("F", "R"):
            pass
        elif not exists:
            code = "M"
        elif partitioned:
            j = bisect.bisect_right(part_starts, s) - 1
            covered = any(parts[k][0] <= s and e <= parts[k][1] for k in range(j, max(-1, j - 3), -1))
            code = "P" if covered else "M"
        else:
            code = "M" if code is None else "P"
        out.append(code.lower() if s in active_starts else code)
    return "".join(out)


def _covering_index(s: int, e: int, exact: int | None, loads: CompactLoads) -> int | None:
    def covers(k: int) -> bool:
        end = loads.ends[k]
        return loads.starts[k] <= s and (end is None or e <= end)

    candidates = [exact] if exact is not None and covers(exact) else []
    i = bisect.bisect_right(loads.starts, s) - 1
    candidates += [k for k in range(i, max(-1, i - 3), -1) if k != exact and covers(k)]
    return max(candidates, key=lambda k: loads.ids[k]) if candidates else None


def counts_from_codes(codes: str) -> dict[str, int]:
    out = {status: codes.count(code) + codes.count(code.lower()) for status, code in CODES.items()}
    out["running"] = sum(codes.count(code.lower()) for code in CODES.values())
    return out
