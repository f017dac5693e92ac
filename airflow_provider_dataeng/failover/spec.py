"""The parameters of a failover health check, shared by the operator, the sensor and the trigger.

:class:`FailoverHealthSpec` is where to look and what healthy means; the operator's spec adds
``fail_on_unhealthy``, the sensor's ``deferrable``. :meth:`FailoverHealthSpec.health_check` is the
:class:`~airflow_provider_dataeng.failover.health_check.FailoverHealthCheck` all of them run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from airflow_provider_dataeng.failover.verdict import DEFAULT_MAX_LAG_BYTES
from airflow_provider_dataeng.specs import ConnId, TaskSpec


class FailoverHealthSpec(TaskSpec):
    """Is the cluster healthy: exactly one primary, enough secondaries, every node good and settled,
    replication lag under ``max_lag_bytes``, the expected sync state?"""

    monitor_conn_id: ConnId | None = Field(
        default=None, description="pg_auto_failover monitor connection (conn type pg_auto_failover)",
    )
    conn_id: ConnId | None = Field(
        default=None, description="Multi-host connection to the nodes, for clusters without a monitor",
    )
    formation: str = Field(default="default", min_length=1, description="pg_auto_failover formation")
    group_id: int = Field(default=0, ge=0, strict=True, description="Group within the formation")
    min_secondaries: int = Field(default=1, ge=0, strict=True, description="Secondaries required")
    accept_wait_primary: bool = Field(
        default=False, strict=True,
        description="Accept a wait_primary (writable, no secondary in sync) as the primary",
    )
    max_lag_bytes: int = Field(
        default=DEFAULT_MAX_LAG_BYTES, ge=0, strict=True, description="Largest allowed WAL lag of a secondary, in bytes",
    )
    expected_sync_state: Literal["sync", "async", "quorum", "potential"] | None = Field(
        default=None, description="Replication state the primary must report; unset: not checked",
    )

    @model_validator(mode="after")
    def _one_target(self) -> FailoverHealthSpec:
        if bool(self.monitor_conn_id) == bool(self.conn_id):
            raise ValueError(
                "give exactly one of monitor_conn_id (a pg_auto_failover monitor connection) or conn_id "
                "(a multi-host connection to the nodes, no monitor)"
            )
        return self

    def health_check(self) -> Any:
        """The :class:`~airflow_provider_dataeng.failover.health_check.FailoverHealthCheck` of this spec."""
        from airflow_provider_dataeng.failover.health_check import FailoverHealthCheck
        from airflow_provider_dataeng.failover.verdict import HealthCriteria

        return FailoverHealthCheck(
            criteria=HealthCriteria(
                formation=self.formation, group_id=self.group_id, min_secondaries=self.min_secondaries,
                accept_wait_primary=self.accept_wait_primary, max_lag_bytes=self.max_lag_bytes,
                expected_sync_state=self.expected_sync_state,
            ),
            monitor_conn_id=self.monitor_conn_id,
            conn_id=self.conn_id,
        )


class FailoverHealthReportSpec(FailoverHealthSpec):
    """Check once and report the node table (``FailoverHealthOperator``)."""

    fail_on_unhealthy: bool = Field(default=False, strict=True, description="Fail the task when unhealthy")


class FailoverHealthSensorSpec(FailoverHealthSpec):
    """Wait until the cluster is healthy (``PostgresFailoverHealthSensor``)."""

    deferrable: bool | None = Field(
        default=None,
        description="Wait in the triggerer (LISTEN on the monitor's state channel plus polling); "
        "default: [operators] default_deferrable",
    )
