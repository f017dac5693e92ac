"""Task config models: fields common to every task, and one params model per task type.

Params models mirror the operator signatures in the team contract: a config key is the operator's
parameter name. Unknown keys are errors (with a did-you-mean).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from airflow_provider_dataeng.dbt.spec import DbtRenderSpec  # noqa: F401  (the dbt task type's params)
from airflow_provider_dataeng.extract.spec import ExtractSpec
from airflow_provider_dataeng.factory.notifications import NotifierSpec, TaskNotifications
from airflow_provider_dataeng.factory.resources import Resources
from airflow_provider_dataeng.publish.spec import PublishSpec as PublishParams  # noqa: F401  (task_types)
from airflow_provider_dataeng.publish.spec import QualitySpec as QualityParams  # noqa: F401  (task_types)
from airflow_provider_dataeng.publish.spec import RollbackSpec as RollbackParams  # noqa: F401  (task_types)
from airflow_provider_dataeng.specs import (
    AssetRef,
    ConnId,
    DottedPath,
    Duration,
    DurationText,
    Identifier,
    StrictModel,
    StrList,
    TableName,
)

TRIGGER_RULES = (
    "all_success", "all_failed", "all_done", "all_done_min_one_success", "all_skipped", "one_success",
    "one_done", "one_failed", "none_failed", "none_failed_min_one_success", "none_skipped", "always",
    "all_done_setup_success",
)


# --- fields every task has ----------------------------------------------------------------------------------
class TaskCommon(StrictModel):
    """Fields every task accepts, whatever its type."""

    type: str | None = Field(default=None, description="Task type (extract, publish, quality, dbt, ...)")
    description: str | None = Field(default=None, description="Shown as the task's doc in the UI")
    depends_on: StrList = Field(default_factory=list, description="Task or task group names upstream of this one")
    group: Identifier | None = Field(default=None, description="The task group (see task_groups) it belongs to")
    retries: int | None = Field(default=None, ge=0, description="Retries of this task (overrides the pipeline's)")
    retry_delay: Duration | None = Field(default=None, description="Delay before the first retry")
    retry_exponential_backoff: bool | float | None = Field(
        default=None, description="true (x2) or a multiplier for the delay between retries"
    )
    max_retry_delay: Duration | None = Field(default=None, description="Cap of the backed-off retry delay")
    execution_timeout: Duration | None = Field(default=None, description="A try running longer fails")
    trigger_rule: Literal[TRIGGER_RULES] | None = Field(  # type: ignore[valid-type]
        default=None, description="When the task runs given its upstream states (default all_success)")
    pool: str | None = Field(default=None, description="Airflow pool the task takes a slot of")
    pool_slots: int | None = Field(default=None, ge=1, description="Slots it takes in its pool")
    priority_weight: int | None = Field(default=None, description="Scheduling priority among queued tasks")
    resources: Resources | None = Field(default=None, description="Overrides the pipeline's resources")
    inlets: list[AssetRef] | None = Field(default=None, description="Assets the task reads (lineage)")
    outlets: list[AssetRef] | None = Field(default=None, description="Assets the task updates (schedule others)")
    notifications: TaskNotifications | None = Field(
        default=None, description="Notifiers on this task's failure, success or retry")


class SensorFields(StrictModel):
    """Extra fields of sensor task types."""

    poke_interval: Duration | None = Field(default=None, description="Time between checks")
    timeout: Duration | None = Field(default=None, description="Give up (fail) after this long")
    mode: Literal["poke", "reschedule"] | None = Field(
        default=None, description="poke holds a worker slot; reschedule frees it between checks")
    soft_fail: bool | None = Field(default=None, description="On timeout, skip instead of failing")


# --- params per task type ------------------------------------------------------------------------------------
ExtractParams = ExtractSpec  # the extract task type's params model is its spec (extract/spec.py)




class FreshnessParams(StrictModel):
    """``FreshnessSensor``: wait until a table's newest row is fresh enough."""

    conn_id: ConnId
    table: TableName
    timestamp_column: str | None = None
    loaded_at_query: str | None = None
    filter: str | None = None
    warn_after: DurationText | None = None
    error_after: DurationText | None = None
    deferrable: bool | None = None
    notifier: NotifierSpec | None = None


class GapCheckParams(StrictModel):
    """``PartitionGapCheckOperator``: find missing partitions between start and end."""

    conn_id: ConnId
    target_table: TableName
    schedule: str | None = Field(default=None, description="Default: the DAG's timetable")
    start: str | None = None
    end: str | None = None
    on_holes: Literal["fail", "warn"] = "fail"
    pipeline: str | None = None


class FailoverHealthParams(StrictModel):
    """``FailoverHealthOperator`` / ``PostgresFailoverHealthSensor`` (pg_auto_failover formation health)."""

    monitor_conn_id: ConnId | None = None
    conn_id: ConnId | None = None
    formation: str = "default"
    group_id: int = Field(default=0, ge=0)
    min_secondaries: int = Field(default=1, ge=0)
    accept_wait_primary: bool = False
    max_lag_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    expected_sync_state: str | None = None
    deferrable: bool | None = None

    @model_validator(mode="after")
    def _one_conn(self) -> FailoverHealthParams:
        if self.monitor_conn_id is None and self.conn_id is None:
            raise ValueError("give monitor_conn_id (the pg_auto_failover monitor) or conn_id")
        return self


class FailoverHealthReportParams(FailoverHealthParams):
    fail_on_unhealthy: bool = False


class OperatorParams(StrictModel):
    """Any operator by import path, with its keyword arguments."""

    operator: DottedPath
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the operator")
