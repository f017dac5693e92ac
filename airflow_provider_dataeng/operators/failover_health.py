"""FailoverHealthOperator: report a failover cluster's health (node table in the log and XCom)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from airflow_provider_dataeng.failover.health_check import FailoverHealthCheck, report_verdict
from airflow_provider_dataeng.failover.spec import FailoverHealthReportSpec
from airflow_provider_dataeng.specs import spec_default, task_spec
from airflow_provider_dataeng.values import is_templated


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
        monitor_conn_id: str | None = spec_default(FailoverHealthReportSpec, "monitor_conn_id"),
        conn_id: str | None = spec_default(FailoverHealthReportSpec, "conn_id"),
        formation: str = spec_default(FailoverHealthReportSpec, "formation"),
        group_id: int = spec_default(FailoverHealthReportSpec, "group_id"),
        min_secondaries: int = spec_default(FailoverHealthReportSpec, "min_secondaries"),
        accept_wait_primary: bool = spec_default(FailoverHealthReportSpec, "accept_wait_primary"),
        max_lag_bytes: int = spec_default(FailoverHealthReportSpec, "max_lag_bytes"),
        expected_sync_state: str | None = spec_default(FailoverHealthReportSpec, "expected_sync_state"),
        fail_on_unhealthy: bool = spec_default(FailoverHealthReportSpec, "fail_on_unhealthy"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.monitor_conn_id = monitor_conn_id
        self.conn_id = conn_id
        self.formation = formation
        self.group_id = group_id
        self.min_secondaries = min_secondaries
        self.accept_wait_primary = accept_wait_primary
        self.max_lag_bytes = max_lag_bytes
        self.expected_sync_state = expected_sync_state
        self.fail_on_unhealthy = fail_on_unhealthy
        if not is_templated(monitor_conn_id, conn_id, formation):
            self.spec()  # validate arguments at parse time (no connection is made)

    def spec(self) -> FailoverHealthReportSpec:
        """The task's spec (after templating when called in ``execute``)."""
        return task_spec(self, FailoverHealthReportSpec)

    def health_check(self) -> FailoverHealthCheck:
        return self.spec().health_check()

    def execute(self, context: Any) -> dict[str, Any]:
        spec = self.spec()  # templates are rendered now
        verdict = spec.health_check().evaluate()
        report_verdict(self, context, verdict)
        if spec.fail_on_unhealthy and not verdict.healthy:
            raise AirflowFailException(f"Failover health: {verdict.summary()}\n{verdict.table()}")
        return verdict.as_xcom()
