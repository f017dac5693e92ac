"""GapCheckSpec: the parameters of a partition gap check (config ``type: gap_check``, ``PartitionGapCheckOperator``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, model_validator
from pydantic.json_schema import SkipJsonSchema

from airflow_provider_dataeng.specs import ConnId, TableName, TaskSpec
from airflow_provider_dataeng.values import is_templated


def _timetable_object(value: Any) -> Any:
    if not hasattr(value, "next_dagrun_info"):
        raise ValueError("expected a cron expression or preset, a timedelta or an Airflow timetable")
    return value


TimetableObject = Annotated[Any, PlainValidator(_timetable_object)]


class GapCheckSpec(TaskSpec):
    """Compare a schedule's expected intervals with the ledger and the partitions of ``target_table``;
    report the holes (missing, failed, rejected) and the ``airflow backfill create`` commands that fill them."""

    conn_id: ConnId = Field(description="Airflow connection to the warehouse")
    target_table: TableName = Field(description="'schema.table' (templated)")
    schedule: str | SkipJsonSchema[timedelta] | SkipJsonSchema[TimetableObject] | None = Field(
        default=None, description="Cron expression or preset of the intervals; default: the DAG's timetable",
    )
    start: datetime | str | None = Field(
        default=None, description="First interval start (ISO timestamp, templated); default: the DAG's start_date",
    )
    end: datetime | str | None = Field(
        default=None,
        description="Intervals must end by this time (ISO timestamp, templated); default: this run's data_interval_start",
    )
    on_holes: Literal["fail", "warn"] = Field(default="fail", description="Fail the task, or only warn, on holes")
    pipeline: str | None = Field(
        default=None,
        description="Only ledger rows of this pipeline (dag_id); also the DAG in the backfill commands (default: this DAG)",
    )

    @model_validator(mode="after")
    def _valid_values(self) -> GapCheckSpec:
        from airflow_provider_dataeng.freshness.probe import split_table_name
        from airflow_provider_dataeng.gaps.expected import resolve_timetable, to_utc

        if not is_templated(self.target_table):
            split_table_name(self.target_table, field="target_table")
        if isinstance(self.schedule, str) and not is_templated(self.schedule):
            resolve_timetable(self.schedule)  # a bad cron fails here, naming the field
        if isinstance(self.schedule, timedelta) and self.schedule <= timedelta(0):
            raise ValueError(f"schedule={self.schedule!r}: expected a positive duration")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and not is_templated(value):
                to_utc(value, field=name)
        return self
