"""The specs of the publish, rollback and quality task types, and the config models of the quality checks.

One definition each: the factory's params models, the operators' keyword defaults and what the engine is
given all come from these models (see :mod:`airflow_provider_dataeng.specs`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from airflow_provider_dataeng.specs import ConnId, DurationText, StrictModel, StrList, TableName, TaskSpec

if TYPE_CHECKING:
    from airflow_provider_dataeng.publish import checks


def _checks() -> ModuleType:
    """The check implementations (psycopg), imported when a check is built, not when a config is parsed."""
    return importlib.import_module("airflow_provider_dataeng.publish.checks")


# --- quality checks (the ``checks:`` list of publish, quality and extract tasks) -------------------------------
class _Check(StrictModel):
    name: str | None = Field(default=None, min_length=1, description="Name in the check table (default: the kind)")

    def build(self) -> checks.Check:  # pragma: no cover - abstract
        raise NotImplementedError


class RowCountCheck(_Check):
    """Row count within ``[min, max]`` (either bound optional, at least one given)."""

    check: Literal["row_count"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountCheck:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs 'min' and/or 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is greater than 'max' ({self.max})")
        return self

    def build(self) -> checks.Check:
        return _checks().RowCountCheck(min=self.min, max=self.max, name=self.name or "row_count")


class NullFractionCheck(_Check):
    """At most ``max`` (0..1) of ``column`` is NULL."""

    check: Literal["null_fraction"]
    column: str = Field(min_length=1)
    max: float = Field(ge=0, le=1, allow_inf_nan=False)

    def build(self) -> checks.Check:
        return _checks().NullFractionCheck(column=self.column, max=self.max, name=self.name or "")


class UniqueCheck(_Check):
    """No two rows share the key ``columns``; at most ``max_duplicates`` extra rows."""

    check: Literal["unique"]
    columns: StrList = Field(min_length=1)
    max_duplicates: int = Field(default=0, ge=0)

    def build(self) -> checks.Check:
        return _checks().UniqueCheck(columns=list(self.columns), max_duplicates=self.max_duplicates, name=self.name or "")


class AcceptedValuesCheck(_Check):
    """Every non-NULL value of ``column`` (as text) is one of ``values``; at most ``max_violations`` others."""

    check: Literal["accepted_values"]
    column: str = Field(min_length=1)
    values: list[Any] = Field(min_length=1)
    max_violations: int = Field(default=0, ge=0)

    def build(self) -> checks.Check:
        return _checks().AcceptedValuesCheck(column=self.column, values=self.values, max_violations=self.max_violations,
                                     name=self.name or "")


class SqlCheck(_Check):
    """A custom assertion: ``sql`` returns one boolean, true = pass (read only, one statement)."""

    check: Literal["sql"]
    name: str = Field(min_length=1, description="Name in the check table")
    sql: str = Field(min_length=1, description="A query returning one boolean; {table} is the table under test")

    def build(self) -> checks.Check:
        return _checks().SqlCheck(sql=self.sql, name=self.name)


class DriftCheck(_Check):
    """Row count within +-``max_change_pct`` % of the published data (publish only)."""

    check: Literal["drift"]
    max_change_pct: float = Field(ge=0, allow_inf_nan=False)

    def build(self) -> checks.Check:
        return _checks().DriftCheck(max_change_pct=self.max_change_pct, name=self.name or "drift")


CheckSpec = Annotated[
    RowCountCheck | NullFractionCheck | UniqueCheck | AcceptedValuesCheck | SqlCheck | DriftCheck,
    Field(discriminator="check"),
]
CHECK_MODELS: dict[str, type[_Check]] = {
    "row_count": RowCountCheck, "null_fraction": NullFractionCheck, "unique": UniqueCheck,
    "accepted_values": AcceptedValuesCheck, "sql": SqlCheck, "drift": DriftCheck,
}


# --- task specs ---------------------------------------------------------------------------------------------------
# the `analyze` setting of every task type that publishes through the engine (publish, extract)
ANALYZE_DESCRIPTION = (
    "ANALYZE staging before the swap, so the new partition or table goes live with column statistics (a sample "
    "of 30,000 rows: about 0.2-0.4 s per load, whatever its size). Off: the load still VACUUMs staging (row and "
    "page counts for the planner, visibility map) and autovacuum analyzes the new table at its next round "
    "(autovacuum_naptime, 1 min by default)"
)


class PublishSpec(TaskSpec):
    """``StagingSwapOperator``: build a staging table from SQL, check it, swap it in atomically.

    With ``partition_column`` the target is range-partitioned and only ``[partition_start, partition_end)``
    (default: the run's data interval) is replaced; otherwise the whole table.
    """

    conn_id: ConnId = Field(description="Warehouse connection")
    target_table: TableName
    select_sql: str | None = Field(default=None, description="SELECT whose rows become the new table or partition "
                                                             "(templated; .sql files)")
    loader: SkipJsonSchema[Callable[..., Any] | None] = Field(
        default=None, description="Python only: callable(conn, staging) -> LoadStats | int | None, instead of "
                                  "select_sql")
    checks: list[CheckSpec] | None = Field(default=None, description="Quality checks on staging (templated)")
    partition_column: str | None = Field(default=None, description="Range partition column: publish one partition")
    partition_start: Any = Field(default=None, description="Partition lower bound (default: data interval start)")
    partition_end: Any = Field(default=None, description="Partition upper bound (default: data interval end)")
    lock_timeout: DurationText = Field(default="2s", description="How long the swap may wait for its locks per "
                                                                 "attempt")
    swap_attempts: int = Field(default=5, ge=1, description="Swap attempts on lock timeout before failing")
    lock_wait: DurationText = Field(default="1h", description="How long to wait for another publish of the same "
                                                             "target or partition before failing (naming it)")
    keep_previous: bool = Field(default=True, description="Keep the replaced table or partition as __previous "
                                                          "(for rollback)")
    keep_failed_staging: bool = Field(default=False, description="Keep a rejected staging table for inspection")
    analyze: bool = Field(default=False, description=ANALYZE_DESCRIPTION)

    @model_validator(mode="after")
    def _one_source(self) -> PublishSpec:
        if (self.select_sql is None) == (self.loader is None):
            raise ValueError("give exactly one of select_sql or loader")
        if (self.partition_start is not None or self.partition_end is not None) and not self.partition_column:
            raise ValueError("partition_start/partition_end need partition_column")
        return self

    def built_checks(self) -> list[checks.Check]:
        return [check.build() for check in self.checks or []]


class RollbackSpec(TaskSpec):
    """``RollbackPublishOperator``: swap the previous table or partition back in."""

    conn_id: ConnId = Field(description="Warehouse connection")
    target_table: TableName
    partition_start: Any = Field(default=None, description="Lower bound of the partition to roll back (partitioned "
                                                           "targets)")
    lock_timeout: DurationText = Field(default="2s", description="How long the swap may wait for its locks per "
                                                                 "attempt")
    swap_attempts: int = Field(default=5, ge=1, description="Swap attempts on lock timeout before failing")
    lock_wait: DurationText = Field(default="1h", description="How long to wait for another publish of the same "
                                                             "target or partition before failing (naming it)")


class QualitySpec(TaskSpec):
    """``DataQualityOperator``: run checks on an existing table (read only); fail with the check table."""

    conn_id: ConnId = Field(description="Warehouse connection")
    table: TableName
    checks: list[CheckSpec] = Field(min_length=1, description="Quality checks (all but drift)")

    @model_validator(mode="after")
    def _no_drift(self) -> QualitySpec:
        if any(check.check == "drift" for check in self.checks):
            raise ValueError("checks: 'drift' needs a publish (staging vs published); not available here")
        return self

    def built_checks(self) -> list[checks.Check]:
        return [check.build() for check in self.checks]
