"""Plain-text tables for the demo's report (no colours, so logs and CI output stay readable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                 align: Sequence[str] | None = None) -> str:
    """A boxed table. ``align`` per column: ``l`` (default) or ``r``."""
    cells = [[_text(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    align = list(align or ["l"] * len(headers))

    def line(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    def fmt(row: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            parts.append(" " + (cell.rjust(widths[i]) if align[i] == "r" else cell.ljust(widths[i])) + " ")
        return "│" + "│".join(parts) + "│"

    out = []
    if title:
        out.append(title)
    out.append(line("┌", "┬", "┐"))
    out.append(fmt(list(headers)))
    out.append(line("├", "┼", "┤"))
    out.extend(fmt(row) for row in cells)
    out.append(line("└", "┴", "┘"))
    return "\n".join(out)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def short_md5(value: str | None) -> str:
    return value[:12] if value else "-"


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# -- the demo's report -------------------------------------------------------------------------------
def render_report(report: Any) -> str:
    """The demo's closing summary (``report`` is a :class:`demo.run.DemoReport`)."""
    from demo.run import summarize

    s = summarize(report)
    parts = ["", render_table(
        ["pipeline", "interval", "target", "rows", "checks", "publish", "dbt models", "freshness", "health"],
        s["rows"], title="Summary: pipeline runs per interval (ledger dataeng.load_ledger + Airflow task states)",
        align=["l", "l", "l", "r", "l", "l", "l", "l", "l"],
    )]
    parts.append("")
    parts.append(render_table(
        ["target", "partition", "rows before", "rows after", "md5 before", "md5 after", "identical"],
        s["idempotency"], title=f"Idempotency: interval {s['middle']} rerun (md5 over the partition's rows)",
        align=["l", "l", "r", "r", "l", "l", "l"],
    ))
    if s["checks"]:
        parts.append("")
        parts.append(render_table(["check", "result"], s["checks"], title="Checks (monitoring DAG)"))
    parts.append("")
    parts.extend(s["footer"])
    return "\n".join(parts)
