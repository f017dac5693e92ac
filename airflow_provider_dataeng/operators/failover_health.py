"""FailoverHealthOperator: report a failover cluster's health (node table in the log and XCom)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from airflow_provider_dataeng.failover.health_check import (
    FailoverHealthCheck,
    build_health_check,
    report_verdict,
)
from airflow_provider_dataeng.failover.verdict import DEFAULT_MAX_LAG_BYTES


class FailoverHealthOperator(BaseOperator):
    """Check once and report; fails only with ``fail_on_unhealthy=True``. Returns the verdict dict.

    Parameters are those of :class:`~airflow_provider_dataeng.sensors.failover_health.PostgresFailoverHealthSensor`
    (without ``deferrable``: a single check does not wait).
    """

    template_fields: Sequence[str] = ("monitor_conn_id", "conn_id", "formation")
    ui_color = "#e8f5e9"

    def __init__(
        self,
        *,
        monitor_conn_id: str | None = None,
        conn_id: str | None = None,
        formation: str = "default",
        group_id: int = 0,
        min_secondaries: int = 1,
        accept_wait_primary: bool = False,
        max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES,
        expected_sync_state: str | None = None,
        fail_on_unhealthy: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(fail_on_unhealthy, bool):
            raise ValueError(f"fail_on_unhealthy={fail_on_unhealthy!r}: expected true or false")
        self.monitor_conn_id = monitor_conn_id
        self.conn_id = conn_id
        self.formation = formation
        self.group_id = group_id
        self.min_secondaries = min_secondaries
        self.accept_wait_primary = accept_wait_primary
        self.max_lag_bytes = max_lag_bytes
        self.expected_sync_state = expected_sync_state
        self.fail_on_unhealthy = fail_on_unhealthy
        self.health_check()  # validate arguments at parse time (no connection is made)

    def health_check(self) -> FailoverHealthCheck:
        return build_health_check(
            monitor_conn_id=self.monitor_conn_id, conn_id=self.conn_id, formation=self.formation,
            group_id=self.group_id, min_secondaries=self.min_secondaries,
            accept_wait_primary=self.accept_wait_primary, max_lag_bytes=self.max_lag_bytes,
            expected_sync_state=self.expected_sync_state,
        )

    def execute(self, context: Any) -> dict[str, Any]:
        verdict = self.health_check().evaluate()
        report_verdict(self, context, verdict)
        if self.fail_on_unhealthy and not verdict.healthy:
            raise AirflowFailException(f"Failover health: {verdict.summary()}\n{verdict.table()}")
        return verdict.as_xcom()
