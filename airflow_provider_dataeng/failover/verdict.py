"""What "healthy" means for a failover cluster (HealthCriteria) and the answer (HealthVerdict + node table)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

SYNC_STATES = ("sync", "async", "quorum", "potential")
DEFAULT_MAX_LAG_BYTES = 16 * 1024 * 1024
# A keeper reports to the monitor every second; silence this long means it is gone or stuck. Same as the
# monitor's default pgautofailover.node_considered_unhealthy_timeout.
DEFAULT_MAX_REPORT_AGE_S = 20.0


@dataclass(frozen=True)
class HealthCriteria:
    """The conditions a cluster must meet to be called healthy.

    :param formation: pg_auto_failover formation (monitor path only).
    :param group_id: group in the formation (monitor path only).
    :param min_secondaries: nodes that must be ``secondary`` (streaming, within ``max_lag_bytes``).
    :param accept_wait_primary: count a ``wait_primary`` node (writable, no secondary in sync) as primary.
    :param max_lag_bytes: largest allowed WAL distance, in bytes, between the primary and a secondary.
    :param expected_sync_state: replication state the primary must report (``sync``, ``async``,
        ``quorum``, ``potential``), or None to not check it.
    :param max_report_age_s: monitor path: a keeper silent for longer is unhealthy.
    """

    formation: str = "default"
    group_id: int = 0
    min_secondaries: int = 1
    accept_wait_primary: bool = False
    max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES
    expected_sync_state: str | None = None
    max_report_age_s: float = DEFAULT_MAX_REPORT_AGE_S

    def __post_init__(self) -> None:
        if not isinstance(self.formation, str) or not self.formation.strip():
            raise ValueError(f"formation={self.formation!r}: expected a non-empty formation name")
        if not _is_int(self.group_id) or self.group_id < 0:
            raise ValueError(f"group_id={self.group_id!r}: expected an integer >= 0")
        if not _is_int(self.min_secondaries) or self.min_secondaries < 0:
            raise ValueError(f"min_secondaries={self.min_secondaries!r}: expected an integer >= 0")
        if not isinstance(self.accept_wait_primary, bool):
            raise ValueError(f"accept_wait_primary={self.accept_wait_primary!r}: expected true or false")
        if not _is_int(self.max_lag_bytes) or self.max_lag_bytes < 0:
            raise ValueError(f"max_lag_bytes={self.max_lag_bytes!r}: expected an integer number of bytes >= 0")
        if self.expected_sync_state is not None and self.expected_sync_state not in SYNC_STATES:
            raise ValueError(
                f"expected_sync_state={self.expected_sync_state!r}: expected one of {', '.join(SYNC_STATES)} or None"
            )
        if not isinstance(self.max_report_age_s, (int, float)) or self.max_report_age_s <= 0:
            raise ValueError(f"max_report_age_s={self.max_report_age_s!r}: expected a positive number of seconds")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthCriteria:
        return cls(**data)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class NodeRow:
    """One line of the node table shown in logs and XCom."""

    name: str
    host: str
    port: int
    state: str  # reported state (monitor) or primary / standby / unreachable (no monitor)
    goal_state: str | None = None
    health: str = "good"  # good | bad | unknown | unreachable
    lag_bytes: int | None = None
    sync_state: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthVerdict:
    """Healthy or not, why not, and the node table it was decided from."""

    healthy: bool
    source: str  # "monitor" or "replication"
    reasons: list[str]
    nodes: list[NodeRow]
    primary: str | None = None
    secondaries: int = 0
    formation: str | None = None
    group_id: int | None = None
    checked_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def status(self) -> str:
        return "healthy" if self.healthy else "unhealthy"

    def summary(self) -> str:
        where = f"formation {self.formation!r} group {self.group_id}" if self.source == "monitor" else "cluster"
        head = f"{where} is {self.status} (via {self.source}; primary: {self.primary or 'none'}, " \
               f"secondaries: {self.secondaries})"
        return head if self.healthy else head + ": " + "; ".join(self.reasons)

    def table(self) -> str:
        """The node table as fixed-width text for task logs."""
        headers = ["node", "address", "state", "goal", "health", "lag", "sync", "note"]
        rows = [
            [
                n.name, f"{n.host}:{n.port}", n.state, n.goal_state or "-", n.health,
                "-" if n.lag_bytes is None else format_bytes(n.lag_bytes), n.sync_state or "-", n.note,
            ]
            for n in self.nodes
        ]
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
        lines = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [headers, *rows]]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)

    def report(self) -> str:
        """Summary, reasons and node table (what operators log)."""
        parts = [self.summary(), self.table()]
        return "\n".join(parts)

    def as_xcom(self) -> dict[str, Any]:
        """A small JSON-able dict (XCom, trigger events)."""
        return {
            "healthy": self.healthy,
            "status": self.status,
            "source": self.source,
            "formation": self.formation,
            "group_id": self.group_id,
            "primary": self.primary,
            "secondaries": self.secondaries,
            "reasons": list(self.reasons),
            "nodes": [n.as_dict() for n in self.nodes],
            "checked_at": self.checked_at,
        }

    @classmethod
    def from_xcom(cls, data: dict[str, Any]) -> HealthVerdict:
        return cls(
            healthy=bool(data["healthy"]), source=data["source"], reasons=list(data["reasons"]),
            nodes=[NodeRow(**n) for n in data["nodes"]], primary=data.get("primary"),
            secondaries=int(data.get("secondaries", 0)), formation=data.get("formation"),
            group_id=data.get("group_id"), checked_at=data.get("checked_at", ""),
        )


def format_bytes(value: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover
