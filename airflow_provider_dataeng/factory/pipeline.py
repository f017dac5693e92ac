"""The pipeline config model (one YAML file = one DAG) and the ``defaults.yaml`` model."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from airflow_provider_dataeng.factory.notifications import Notifications
from airflow_provider_dataeng.factory.resources import Resources
from airflow_provider_dataeng.factory.schedule import Schedule
from airflow_provider_dataeng.specs import ConnId, Duration, Identifier, StrictModel

DagId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]+$", min_length=1, max_length=250)]
DatabaseName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[^/\x00]+$"),
                         Field(description="A PostgreSQL database name (as in the connection)")]


class PipelineSettings(StrictModel):
    """Settings a pipeline may inherit from ``defaults.yaml`` and override."""

    description: str | None = Field(default=None, description="One line shown under the DAG's name in the UI")
    doc_md: str | None = Field(default=None, description="Markdown shown as the DAG's docs")
    owner: str | None = Field(default=None, description="Task owner shown in the UI (default: airflow)")
    tags: list[str] | None = Field(default=None, description="DAG tags (filters in the UI)")
    schedule: Schedule = Field(
        default=None,
        description="cron ('0 3 * * *'), preset ('@daily'), duration ('1h'), a list of Asset URIs, "
        "{any: [...]}/{all: [...]}, {after: [pipelines]} / {tables: [...], conn_id: ...} (by name), or null",
    )
    start_date: datetime | date | None = Field(default=None, description="First data interval start (YYYY-MM-DD or ISO 8601)")
    end_date: datetime | date | None = Field(default=None, description="No runs after this date")
    timezone: str | None = Field(default=None, description="IANA name for naive start/end dates (default UTC)")
    catchup: bool | None = Field(default=None, description="Create runs for every missed interval since start_date")
    max_active_runs: int | None = Field(default=None, ge=1, description="Most concurrent runs of this DAG")
    max_active_tasks: int | None = Field(default=None, ge=1, description="Most concurrent tasks across its runs")
    dagrun_timeout: Duration | None = Field(default=None, description="A run still going after this fails")
    retries: int | None = Field(default=None, ge=0, description="Retries of each task (default for every task)")
    retry_delay: Duration | None = Field(default=None, description="Delay before the first retry")
    retry_exponential_backoff: bool | float | None = Field(
        default=None, description="true (x2) or a multiplier for the delay between retries"
    )
    max_retry_delay: Duration | None = Field(default=None, description="Cap of the backed-off retry delay")
    execution_timeout: Duration | None = Field(default=None, description="A task try running longer fails")
    queue: str | None = Field(default=None, min_length=1,
                              description="Executor queue of every task (e.g. a Celery queue); a task may override")
    pool: str | None = Field(default=None, min_length=1,
                             description="Airflow pool every task takes a slot of; a task may override")
    pool_slots: int | None = Field(default=None, ge=1, description="Slots each task takes in its pool")
    executor: str | None = Field(
        default=None, min_length=1,
        description="Executor of every task when several are configured ([core] executor), e.g. "
                    "KubernetesExecutor; a task may override")
    priority_weight: int | None = Field(default=None, description="Scheduling priority of every task")
    notifications: Notifications | None = Field(
        default=None, description="Notifiers on failure, success, retry and SLA breach (see docs/sla.md)")
    resources: Resources | None = Field(default=None, description="Kubernetes resources for every task pod")
    params: dict[str, Any] | None = Field(default=None, description="DAG params (shown in the trigger form)")
    databases: dict[ConnId, DatabaseName] | None = Field(
        default=None,
        description="The database each connection reaches ({conn_id: database}), for the tables' Asset and "
                    "lineage names, when the connection is defined in Airflow's UI, metadata DB or a secrets "
                    "backend (the factory reads no connection at parse time). One line in defaults.yaml covers "
                    "every pipeline, e.g. {warehouse: analytics}. A task whose connection reaches another "
                    "database fails (see docs/publish.md, Assets)")


class Defaults(PipelineSettings):
    """``defaults.yaml``: inherited by every pipeline in the directory (mappings merge, the rest replaces)."""


class TaskGroupSpec(StrictModel):
    """A task group; tasks join it with ``group: <name>``."""

    tooltip: str | None = Field(default=None, description="Shown when hovering the group in the graph")
    parent: Identifier | None = Field(default=None, description="Enclosing task group")
    prefix_group_id: bool = Field(default=True, description="Prefix task ids with the group name (group.task)")


class Pipeline(PipelineSettings):
    """One pipeline (one DAG)."""

    dag_id: DagId | None = Field(default=None, description="Default: the config file name without .yaml")
    task_groups: dict[Identifier, TaskGroupSpec] = Field(
        default_factory=dict, description="Task groups by name; tasks join one with group: <name>")
    tasks: dict[Identifier, dict[str, Any]] = Field(
        min_length=1, description="Tasks by name; each has a type (or operator:) and depends_on"
    )
