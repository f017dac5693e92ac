"""The outcome of one publish or rollback: what operators return and what the Asset event carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from airflow_provider_dataeng.publish.checks import CheckResult
from airflow_provider_dataeng.publish.table_ref import TableRef


@dataclass
class PublishResult:
    """The outcome of one publish."""

    status: str  # published | rejected | failed
    target: TableRef
    partition: TableRef | None
    rows: int
    bytes: int | None
    checks: list[CheckResult]
    ledger_id: int | None
    details: dict = field(default_factory=dict)
    partition_start: datetime | None = None  # UTC bounds of a partition publish
    partition_end: datetime | None = None
    run_id: str | None = None

    def as_xcom(self) -> dict:
        """A small JSON-able dict (what operators return)."""
        return {
            "status": self.status,
            "target": self.target.qualified,
            "partition": self.partition.qualified if self.partition else None,
            "rows": self.rows,
            "bytes": self.bytes,
            "checks": [c.as_dict() for c in self.checks],
            "ledger_id": self.ledger_id,
        }

    def event_extra(self) -> dict:
        """The extras of the target Asset's event: what was published, for which interval, by which run."""
        return {
            "status": self.status,
            "partition_start": self.partition_start.isoformat() if self.partition_start else None,
            "partition_end": self.partition_end.isoformat() if self.partition_end else None,
            "rows": self.rows,
            "ledger_id": self.ledger_id,
            "run_id": self.run_id,
        }
