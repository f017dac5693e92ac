"""One health check of a failover cluster: through a pg_auto_failover monitor, or host by host without one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_dataeng.connections import connect
from airflow_provider_dataeng.failover.verdict import HealthCriteria, HealthVerdict


@dataclass(frozen=True)
class FailoverHealthCheck:
    """Where to look (``monitor_conn_id`` xor ``conn_id``) and what healthy means (``criteria``).

    :param monitor_conn_id: connection to the pg_auto_failover monitor (conn type ``pg_auto_failover``).
    :param conn_id: multi-host connection to the cluster's nodes, for clusters without a monitor.
    """

    criteria: HealthCriteria
    monitor_conn_id: str | None = None
    conn_id: str | None = None

    def __post_init__(self) -> None:
        validate_targets(self.monitor_conn_id, self.conn_id)

    @property
    def source(self) -> str:
        return "monitor" if self.monitor_conn_id else "replication"

    def evaluate(self) -> HealthVerdict:
        """Check now. Raises MonitorUnreachableError when the monitor cannot be reached."""
        if self.monitor_conn_id:
            from airflow_provider_dataeng.failover.formation_health import check_formation_health

            return check_formation_health(connect(self.monitor_conn_id, role="monitor"), self.criteria)
        from airflow_provider_dataeng.failover.replication_health import check_replication_health

        assert self.conn_id is not None
        return check_replication_health(connect(self.conn_id, role="warehouse"), self.criteria)

    def as_dict(self) -> dict[str, Any]:
        return {"monitor_conn_id": self.monitor_conn_id, "conn_id": self.conn_id, "criteria": self.criteria.as_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FailoverHealthCheck:
        return cls(
            criteria=HealthCriteria.from_dict(data["criteria"]),
            monitor_conn_id=data.get("monitor_conn_id"), conn_id=data.get("conn_id"),
        )


def validate_targets(monitor_conn_id: Any, conn_id: Any) -> None:
    """Exactly one of ``monitor_conn_id`` / ``conn_id``, as a non-empty string."""
    for name, value in (("monitor_conn_id", monitor_conn_id), ("conn_id", conn_id)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{name}={value!r}: expected a connection id (non-empty string) or None")
    if bool(monitor_conn_id) == bool(conn_id):
        raise ValueError(
            "pass exactly one of monitor_conn_id (a pg_auto_failover monitor connection) or conn_id "
            f"(a multi-host connection to the nodes, no monitor); got monitor_conn_id={monitor_conn_id!r}, "
            f"conn_id={conn_id!r}"
        )


def report_verdict(task: Any, context: Any, verdict: HealthVerdict) -> None:
    """Log the verdict with its node table and push it to XCom under key ``failover_health``."""
    log = task.log.info if verdict.healthy else task.log.warning
    log("Failover health: %s\n%s", verdict.summary(), verdict.table())
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        ti.xcom_push(key=XCOM_KEY, value=verdict.as_xcom())


XCOM_KEY = "failover_health"

