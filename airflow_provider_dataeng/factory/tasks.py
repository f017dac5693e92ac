"""Task config models: fields common to every task, and one params model per task type.

A task type's params model is its engine's spec (``freshness.spec.FreshnessSpec``, ...): a config key is
the spec field, which is also the operator's parameter name. Unknown keys are errors (with a did-you-mean).
The ``*Params`` models below are task types whose owners have not moved them into a spec yet.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from airflow_provider_dataeng.dbt.spec import DbtRenderSpec  # noqa: F401  (the dbt task type's params)
from airflow_provider_dataeng.factory.notifications import TaskNotifications
from airflow_provider_dataeng.factory.resources import Resources
from airflow_provider_dataeng.failover.spec import (
    FailoverHealthReportSpec,
    FailoverHealthSensorSpec,
)
from airflow_provider_dataeng.freshness.spec import FreshnessSpec
from airflow_provider_dataeng.gaps.spec import GapCheckSpec
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

__all__ = [  # the specs are the params models of their task types
    "FailoverHealthReportSpec", "FailoverHealthSensorSpec", "FreshnessSpec", "GapCheckSpec",
]

TRIGGER_RULES = (
    "all_success", "all_failed", "all_done", "all_done_min_one_success", "all_skipped", "one_success",
    "one_done", "one_failed", "none_failed", "none_failed_min_one_success", "none_skipped", "always",
    "all_done_setup_success",
)


# --- data quality checks (publish/checks.py config format) -------------------------------------------------
class _Check(StrictModel):
    name: str | None = Field(default=None, min_length=1, description="Name in the check table (default: the kind)")


class RowCountCheck(_Check):
    check: Literal["row_count"]
    min: int | None = None
    max: int | None = None


class NullFractionCheck(_Check):
    check: Literal["null_fraction"]
    column: str
    max: float = Field(ge=0, le=1)


class UniqueCheck(_Check):
    check: Literal["unique"]
    columns: StrList = Field(min_length=1)
    max_duplicates: int | None = Field(default=None, ge=0)


class AcceptedValuesCheck(_Check):
    check: Literal["accepted_values"]
    column: str
    values: list[Any] = Field(min_length=1)
    max_violations: int | None = Field(default=None, ge=0)


class SqlCheck(_Check):
    check: Literal["sql"]
    name: str = Field(min_length=1)
    sql: str = Field(description="A query returning one boolean; {table} is the table under test")


class DriftCheck(_Check):
    check: Literal["drift"]
    max_change_pct: float = Field(gt=0)


CheckSpec = Annotated[
    RowCountCheck | NullFractionCheck | UniqueCheck | AcceptedValuesCheck | SqlCheck | DriftCheck,
    Field(discriminator="check"),
]


# --- fields every task has ----------------------------------------------------------------------------------
class TaskCommon(StrictModel):
    """Fields every task accepts, whatever its type."""

    type: str | None = Field(default=None, description="Task type (extract, publish, quality, dbt, ...)")
    description: str | None = Field(default=None, description="Shown as the task's doc in the UI")
    depends_on: StrList = Field(default_factory=list, description="Task or task group names upstream of this one")
    group: Identifier | None = Field(default=None, description="The task group (see task_groups) it belongs to")
    retries: int | None = Field(default=None, ge=0)
    retry_delay: Duration | None = None
    retry_exponential_backoff: bool | float | None = Field(
        default=None, description="true (x2) or a multiplier for the delay between retries"
    )
    max_retry_delay: Duration | None = None
    execution_timeout: Duration | None = None
    trigger_rule: Literal[TRIGGER_RULES] | None = None  # type: ignore[valid-type]
    pool: str | None = None
    pool_slots: int | None = Field(default=None, ge=1)
    priority_weight: int | None = None
    resources: Resources | None = Field(default=None, description="Overrides the pipeline's resources")
    inlets: list[AssetRef] | None = None
    outlets: list[AssetRef] | None = None
    notifications: TaskNotifications | None = None


class SensorFields(StrictModel):
    """Extra fields of sensor task types."""

    poke_interval: Duration | None = None
    timeout: Duration | None = None
    mode: Literal["poke", "reschedule"] | None = None
    soft_fail: bool | None = None


# --- params per task type ------------------------------------------------------------------------------------
class ExtractParams(StrictModel):
    """``IdempotentExtractOperator``: source -> a partition (or table) of the warehouse."""

    source_conn_id: ConnId
    target_conn_id: ConnId
    target_table: TableName
    source_table: str | None = None
    source_sql: str | None = None
    mode: Literal["full_snapshot", "incremental_timestamp", "incremental_id"] = "full_snapshot"
    partition_column: str = "_interval_start"
    timestamp_column: str = "updated_at"
    lag: DurationText = "0s"
    key_columns: StrList | None = None
    id_column: str = "id"
    checks: list[CheckSpec] | None = None
    schema_drift: Literal["fail", "add_columns", "ignore_extra"] = "fail"
    lock_timeout: DurationText = "2s"
    progress_interval: DurationText = "5s"

    @model_validator(mode="after")
    def _one_source(self) -> ExtractParams:
        if (self.source_table is None) == (self.source_sql is None):
            raise ValueError("give exactly one of source_table or source_sql")
        return self


class PublishParams(StrictModel):
    """``StagingSwapOperator``: build a staging table from SQL, check it, swap it in atomically."""

    conn_id: ConnId
    target_table: TableName
    select_sql: str = Field(description="SELECT that fills the staging table (templated)")
    checks: list[CheckSpec] | None = None
    partition_column: str | None = None
    partition_start: str | None = None
    partition_end: str | None = None
    lock_timeout: DurationText = "2s"
    swap_attempts: int = Field(default=5, ge=1)
    keep_previous: bool = True
    keep_failed_staging: bool = False
    database: str | None = Field(default=None, description="Database name in the Asset URI")
    asset_uri: str | None = Field(default=None, description="Override the outlet Asset URI")


class RollbackParams(StrictModel):
    """``RollbackPublishOperator``: swap the previous table/partition back."""

    conn_id: ConnId
    target_table: TableName
    partition_start: str | None = None
    lock_timeout: DurationText = "2s"
    swap_attempts: int = Field(default=5, ge=1)
    database: str | None = None
    asset_uri: str | None = None


class QualityParams(StrictModel):
    """``DataQualityOperator``: run checks on an existing table."""

    conn_id: ConnId
    table: TableName
    checks: list[CheckSpec] = Field(min_length=1)


class OperatorParams(StrictModel):
    """Any operator by import path, with its keyword arguments."""

    operator: DottedPath
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the operator")
