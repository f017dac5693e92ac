"""Registry of task types: type name -> operator class path + params model path.

Operators and params models (the engines' specs) are imported by path on first use: parsing a pipeline
imports only the specs of the task types it uses (a task pod parsing one DAG pays for nothing else).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from pydantic import Field, create_model

from airflow_provider_dataeng.factory import tasks as t
from airflow_provider_dataeng.specs import StrictModel
from airflow_provider_dataeng.values import import_path

_PKG = "airflow_provider_dataeng"


@cache
def _model(path: str) -> type[StrictModel]:
    return import_path(path)


@dataclass(frozen=True)
class TaskType:
    """One task type: the operator it builds and the model of its config (both by import path)."""

    name: str
    operator_path: str | None  # None: built by a renderer (dbt) or from the config's `operator:` key
    params_path: str  # the params model: the engine's spec (imported on first use)
    sensor: bool = False
    description: str = ""

    @property
    def params_model(self) -> type[StrictModel]:
        return _model(self.params_path)

    @property
    def param_names(self) -> frozenset[str]:
        return frozenset(self.params_model.model_fields)


TASK_TYPES: dict[str, TaskType] = {
    tt.name: tt
    for tt in (
        TaskType("extract", f"{_PKG}.operators.extract.IdempotentExtractOperator", f"{_PKG}.extract.spec.ExtractSpec",
                 description="Idempotent extract from a source into a warehouse partition or table"),
        TaskType("publish", f"{_PKG}.operators.publish.StagingSwapOperator", f"{_PKG}.publish.spec.PublishSpec",
                 description="Build from SQL into staging, run checks, swap in atomically"),
        TaskType("rollback", f"{_PKG}.operators.publish.RollbackPublishOperator", f"{_PKG}.publish.spec.RollbackSpec",
                 description="Swap the previous version of a table or partition back"),
        TaskType("quality", f"{_PKG}.operators.quality.DataQualityOperator", f"{_PKG}.publish.spec.QualitySpec",
                 description="Data quality checks on an existing table"),
        TaskType("dbt", None, f"{_PKG}.dbt.spec.DbtRenderSpec", description="dbt models rendered from manifest.json"),
        TaskType("freshness", f"{_PKG}.sensors.freshness.FreshnessSensor", f"{_PKG}.freshness.spec.FreshnessSpec", sensor=True,
                 description="Wait until a table is fresh (SLA)"),
        TaskType("gap_check", f"{_PKG}.operators.gap_check.PartitionGapCheckOperator", f"{_PKG}.gaps.spec.GapCheckSpec",
                 description="Find missing partitions"),
        TaskType("failover_health", f"{_PKG}.operators.failover_health.FailoverHealthOperator",
                 f"{_PKG}.failover.spec.FailoverHealthReportSpec", description="Report pg_auto_failover formation health"),
        TaskType("failover_health_sensor", f"{_PKG}.sensors.failover_health.PostgresFailoverHealthSensor",
                 f"{_PKG}.failover.spec.FailoverHealthSensorSpec", sensor=True,
                 description="Wait until the pg_auto_failover formation is healthy"),
        TaskType("operator", None, f"{_PKG}.factory.tasks.OperatorParams", description="Any operator by import path"),
    )
}
DBT_RENDER_PATH = f"{_PKG}.dbt.render.render_dbt"
# The operator of each task type a renderer emits (RenderedTask.task_type -> class path).
RENDERED_OPERATORS = {
    "dbt": f"{_PKG}.operators.dbt.DbtOperator",
    "dbt_pod": f"{_PKG}.operators.dbt_pod.DbtKubernetesPodOperator",
    "freshness": f"{_PKG}.sensors.freshness.FreshnessSensor",
}


@cache
def task_model(type_name: str) -> type[StrictModel]:
    """The full config model of a task of this type (common fields + sensor fields + params), cached."""
    tt = TASK_TYPES[type_name]
    bases: tuple[type, ...] = (t.TaskCommon, tt.params_model)
    if tt.sensor:
        bases = (t.TaskCommon, t.SensorFields, tt.params_model)
    described = Field(description=f"Task type: {type_name}" + (" (may be omitted when operator: is given)"
                                                               if type_name == "operator" else ""))
    type_field: Any = ((Literal[type_name] | None, Field(default=None, description=described.description))
                       if type_name == "operator" else (Literal[type_name], described))
    name = "".join(p.capitalize() for p in type_name.split("_")) + "Task"
    return create_model(
        name, __base__=bases, __doc__=tt.params_model.__doc__, type=type_field,
    )


def type_of(raw: dict[str, Any]) -> str | None:
    """The task type named by a raw task mapping: ``operator:`` wins, else ``type:``."""
    if "operator" in raw and raw.get("type") in (None, "operator"):
        return "operator"
    value = raw.get("type")
    return value if isinstance(value, str) else None
