"""Task config models: fields common to every task, and the params of ``operator:`` tasks.

Every other task type's params model is its engine's spec (``freshness.spec.FreshnessSpec``, ...; the
registry in :mod:`.task_types` names them by import path, so only the specs a pipeline uses are imported):
a config key is the spec field, which is also the operator's parameter name. Unknown keys are errors (with a
did-you-mean).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from airflow_provider_dataeng.factory.notifications import TaskNotifications
from airflow_provider_dataeng.factory.resources import Resources
from airflow_provider_dataeng.specs import (
    AssetRef,
    DottedPath,
    Duration,
    Identifier,
    StrictModel,
    StrList,
)

TRIGGER_RULES = (
    "all_success", "all_failed", "all_done", "all_done_min_one_success", "all_skipped", "one_success",
    "one_done", "one_failed", "none_failed", "none_failed_min_one_success", "none_skipped", "always",
    "all_done_setup_success",
)


# --- fields every task has ----------------------------------------------------------------------------------
class XComRef(StrictModel):
    """The result of an upstream task of this pipeline (a list), e.g. ``{xcom: list_tables}``."""

    xcom: Identifier = Field(description="Name of a task of this pipeline whose result (a list) is mapped over; "
                                         "it runs before this task")
    key: str = Field(default="return_value", min_length=1, description="The XCom key (default: the task's result)")


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
    pool: str | None = Field(default=None, min_length=1, description="Airflow pool the task takes a slot of")
    pool_slots: int | None = Field(default=None, ge=1, description="Slots it takes in its pool")
    queue: str | None = Field(default=None, min_length=1, description="Executor queue (e.g. a Celery queue)")
    executor: str | None = Field(
        default=None, min_length=1,
        description="Executor of this task when several are configured ([core] executor), e.g. KubernetesExecutor")
    priority_weight: int | None = Field(default=None, description="Scheduling priority among queued tasks")
    resources: Resources | None = Field(default=None, description="Overrides the pipeline's resources")
    inlets: list[AssetRef] | None = Field(default=None, description="Assets the task reads (lineage)")
    outlets: list[AssetRef] | None = Field(default=None, description="Assets the task updates (schedule others)")
    notifications: TaskNotifications | None = Field(
        default=None, description="Notifiers on this task's failure, success or retry")
    expand: dict[Identifier, Annotated[list[Any], Field(min_length=1)] | XComRef] | None = Field(
        default=None, min_length=1,
        description="Dynamic task mapping: one task instance per value. Parameter name -> a list of values, or "
                    "{xcom: <task>} (that task's result, a list). Several parameters: one instance per "
                    "combination (Airflow's expand)")
    expand_kwargs: Annotated[list[dict[Identifier, Any]], Field(min_length=1)] | XComRef | None = Field(
        default=None,
        description="Dynamic task mapping: one task instance per set of parameters, e.g. [{source_table: "
                    "public.a, target_table: raw.a}, ...], or {xcom: <task>} returning such a list (Airflow's "
                    "expand_kwargs)")
    max_active_tis_per_dagrun: int | None = Field(
        default=None, ge=1, description="Most instances of this (mapped) task running at once in one run")


class SensorFields(StrictModel):
    """Extra fields of sensor task types."""

    poke_interval: Duration | None = Field(default=None, description="Time between checks")
    timeout: Duration | None = Field(default=None, description="Give up (fail) after this long")
    mode: Literal["poke", "reschedule"] | None = Field(
        default=None, description="poke holds a worker slot; reschedule frees it between checks")
    soft_fail: bool | None = Field(default=None, description="On timeout, skip instead of failing")


# --- params of `operator:` tasks ------------------------------------------------------------------------------
class OperatorParams(StrictModel):
    """Any operator by import path, with its keyword arguments."""

    operator: DottedPath
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the operator")
