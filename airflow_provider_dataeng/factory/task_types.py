"""Registry of task types: type name -> operator class path + params model. Operators import lazily."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from pydantic import Field, create_model

from airflow_provider_dataeng.factory import tasks as t
from airflow_provider_dataeng.specs import StrictModel
from airflow_provider_dataeng.values import import_path  # noqa: F401 - re-exported for the builder

_PKG = "airflow_provider_dataeng"


@dataclass(frozen=True)
class TaskType:
    """One task type: the operator it builds and the model of its config."""

    name: str
    operator_path: str | None  # None: built by a renderer (dbt) or from the config's `operator:` key
    params_model: type[StrictModel]
    sensor: bool = False
    description: str = ""

    @property
    def param_names(self) -> frozenset[str]:
        return frozenset(self.params_model.model_fields)


TASK_TYPES: dict[str, TaskType] = {
    tt.name: tt
    for tt in (
        TaskType("extract", f"{_PKG}.operators.extract.IdempotentExtractOperator", t.ExtractParams,
                 description="Idempotent extract from a source into a warehouse partition or table"),
        TaskType("publish", f"{_PKG}.operators.publish.StagingSwapOperator", t.PublishParams,
                 description="Build from SQL into staging, run checks, swap in atomically"),
        TaskType("rollback", f"{_PKG}.operators.publish.RollbackPublishOperator", t.RollbackParams,
                 description="Swap the previous version of a table or partition back"),
        TaskType("quality", f"{_PKG}.operators.quality.DataQualityOperator", t.QualityParams,
                 description="Data quality checks on an existing table"),
        TaskType("dbt", None, t.DbtRenderSpec, description="dbt models rendered from manifest.json"),
        TaskType("freshness", f"{_PKG}.sensors.freshness.FreshnessSensor", t.FreshnessSpec, sensor=True,
                 description="Wait until a table is fresh (SLA)"),
        TaskType("gap_check", f"{_PKG}.operators.gap_check.PartitionGapCheckOperator", t.GapCheckSpec,
                 description="Find missing partitions"),
        TaskType("failover_health", f"{_PKG}.operators.failover_health.FailoverHealthOperator",
                 t.FailoverHealthReportSpec, description="Report pg_auto_failover formation health"),
        TaskType("failover_health_sensor", f"{_PKG}.sensors.failover_health.PostgresFailoverHealthSensor",
                 t.FailoverHealthSensorSpec, sensor=True,
                 description="Wait until the pg_auto_failover formation is healthy"),
        TaskType("operator", None, t.OperatorParams, description="Any operator by import path"),
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
