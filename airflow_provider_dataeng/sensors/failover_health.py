"""PostgresFailoverHealthSensor: wait until a failover cluster (pg_auto_failover or plain replicas) is healthy."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_dataeng.failover.health_check import (
    FailoverHealthCheck,
    report_verdict,
)
from airflow_provider_dataeng.failover.spec import FailoverHealthSensorSpec
from airflow_provider_dataeng.failover.verdict import HealthVerdict
from airflow_provider_dataeng.specs import spec_default, task_spec
from airflow_provider_dataeng.values import is_templated


class PostgresFailoverHealthSensor(BaseSensorOperator):
    """Succeeds once the cluster is healthy; each check logs a node table and pushes it to XCom.

    Healthy: exactly one primary (``wait_primary`` too with ``accept_wait_primary``), at least
    ``min_secondaries`` secondaries, every node's health good and settled, replication lag under
    ``max_lag_bytes``, and the primary's sync state equal to ``expected_sync_state`` when given.

    :param monitor_conn_id: pg_auto_failover monitor connection (conn type ``pg_auto_failover``).
    :param conn_id: multi-host connection to the nodes, for clusters without a monitor. Exactly one of
        ``monitor_conn_id`` / ``conn_id``.
    :param formation: pg_auto_failover formation.
    :param group_id: group within the formation.
    :param min_secondaries: secondaries required.
    :param accept_wait_primary: accept a ``wait_primary`` (writable, no secondary in sync) as primary.
    :param max_lag_bytes: largest allowed WAL lag of a secondary, in bytes.
    :param expected_sync_state: ``sync``, ``async``, ``quorum`` or ``potential``; None skips the check.
    :param deferrable: wait in the triggerer (LISTEN on the monitor's ``state`` channel, plus polling
        every ``poke_interval``).
    """

    template_fields: Sequence[str] = ("monitor_conn_id", "conn_id", "formation")
    ui_color = "#c8e6c9"

    def __init__(
        self,
        *,
        monitor_conn_id: str | None = spec_default(FailoverHealthSensorSpec, "monitor_conn_id"),
        conn_id: str | None = spec_default(FailoverHealthSensorSpec, "conn_id"),
        formation: str = spec_default(FailoverHealthSensorSpec, "formation"),
        group_id: int = spec_default(FailoverHealthSensorSpec, "group_id"),
        min_secondaries: int = spec_default(FailoverHealthSensorSpec, "min_secondaries"),
        accept_wait_primary: bool = spec_default(FailoverHealthSensorSpec, "accept_wait_primary"),
        max_lag_bytes: int = spec_default(FailoverHealthSensorSpec, "max_lag_bytes"),
        expected_sync_state: str | None = spec_default(FailoverHealthSensorSpec, "expected_sync_state"),
        deferrable: bool | None = spec_default(FailoverHealthSensorSpec, "deferrable"),
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
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False) if deferrable is None else deferrable
        )
        if not is_templated(monitor_conn_id, conn_id, formation):
            self.spec()  # validate arguments at parse time (no connection is made)

    def spec(self) -> FailoverHealthSensorSpec:
        """The task's spec (after templating when called in ``execute``)."""
        return task_spec(self, FailoverHealthSensorSpec)

    def health_check(self) -> FailoverHealthCheck:
        return self.spec().health_check()

    def poke(self, context: Any) -> PokeReturnValue:
        verdict = self.health_check().evaluate()
        report_verdict(self, context, verdict)
        return PokeReturnValue(is_done=verdict.healthy, xcom_value=verdict.as_xcom())

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        check = self.health_check()
        verdict = check.evaluate()
        report_verdict(self, context, verdict)
        if verdict.healthy:
            return verdict.as_xcom()
        from airflow_provider_dataeng.triggers.failover_health import FailoverHealthTrigger

        self.defer(
            trigger=FailoverHealthTrigger(
                criteria=check.criteria.as_dict(), monitor_conn_id=check.monitor_conn_id, conn_id=check.conn_id,
                poll_interval=float(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "healthy" or not event.get("verdict"):
            raise AirflowException(f"Failover health wait failed: {event.get('message') or event}")
        verdict = HealthVerdict.from_xcom(event["verdict"])
        self.log.info(
            "Woken %d time(s) by monitor notifications, %d check(s)", event.get("notifications", 0), event.get("checks", 0)
        )
        report_verdict(self, context, verdict)
        return verdict.as_xcom()
