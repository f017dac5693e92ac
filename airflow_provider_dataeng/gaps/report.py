"""Holes found by the gap check, their log table, and the ``airflow backfill create`` commands that fill them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_dataeng.gaps.expected import Interval

HOLE_KINDS = ("missing", "failed", "rejected")
MAX_TABLE_ROWS = 200


@dataclass(frozen=True)
class Hole:
    """An expected interval without published data: ``missing``, ``failed`` or ``rejected``."""

    interval: Interval
    kind: str
    detail: str
    ledger_id: int | None = None
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.interval.start.isoformat(),
            "end": self.interval.end.isoformat(),
            "logical_date": self.interval.run_date.isoformat(),
            "kind": self.kind,
            "detail": self.detail,
            "ledger_id": self.ledger_id,
            "run_id": self.run_id,
        }


@dataclass
class GapReport:
    """The outcome of one gap check over ``[start, end)``."""

    target: str
    schedule: str
    start: datetime
    end: datetime
    expected: list[Interval]
    holes: list[Hole]
    partitioned: bool
    table_exists: bool
    ledger_present: bool
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {kind: sum(1 for h in self.holes if h.kind == kind) for kind in HOLE_KINDS}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {kind}" for kind, n in self.counts().items() if n)
        head = (
            f"{self.target}: {len(self.holes)} hole(s) in {len(self.expected)} expected interval(s) "
            f"[{self.start.isoformat()} .. {self.end.isoformat()}) of schedule {self.schedule}"
        )
        return f"{head}: {counts}" if self.holes else f"{head}: none"

    def table(self, limit: int = MAX_TABLE_ROWS) -> str:
        """A fixed-width text table of the holes (first ``limit`` rows)."""
        header = ("interval_start", "interval_end", "hole", "ledger_id", "run_id", "detail")
        rows = [
            (
                h.interval.start.isoformat(), h.interval.end.isoformat(), h.kind,
                "-" if h.ledger_id is None else str(h.ledger_id), h.run_id or "-", h.detail,
            )
            for h in self.holes[:limit]
        ]
        widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(6)]
        lines = ["  ".join(col.ljust(widths[i]) for i, col in enumerate(header)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(col.ljust(widths[i]) for i, col in enumerate(r)).rstrip() for r in rows]
        if len(self.holes) > limit:
            lines.append(f"... and {len(self.holes) - limit} more")
        return "\n".join(lines)

    def backfill_ranges(self) -> list[tuple[datetime, datetime]]:
        """Runs of consecutive holes as ``(first logical date, last logical date)``, both inclusive."""
        index = {iv: i for i, iv in enumerate(self.expected)}
        ranges: list[tuple[datetime, datetime]] = []
        prev_i: int | None = None
        for hole in sorted(self.holes, key=lambda h: h.interval):
            i = index[hole.interval]
            if ranges and prev_i is not None and i == prev_i + 1:
                ranges[-1] = (ranges[-1][0], hole.interval.run_date)
            else:
                ranges.append((hole.interval.run_date, hole.interval.run_date))
            prev_i = i
        return ranges

    def backfill_commands(self, dag_id: str) -> list[str]:
        """``airflow backfill create`` commands that re-run exactly the holes (one per run of holes).

        ``--from-date``/``--to-date`` are inclusive logical dates; ``--reprocess-behavior completed`` also
        re-runs intervals whose earlier run exists (failed, or succeeded but the partition is gone): every
        date in a range is a hole, so nothing else is re-run.
        """
        commands = []
        for lo, hi in self.backfill_ranges():
            args = ["--dag-id", dag_id, "--from-date", lo.isoformat(), "--to-date", hi.isoformat()]
            commands.append(
                "airflow backfill create " + shlex.join(args) + " --reprocess-behavior completed"
            )
        return commands

    def as_xcom(self) -> list[dict[str, Any]]:
        return [h.as_dict() for h in self.holes]
