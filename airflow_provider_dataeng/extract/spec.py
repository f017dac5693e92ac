"""ExtractSpec: the one definition of the extract task type's parameters (issue 12 item 1).

The factory's ``extract`` params model, the defaults of ``IdempotentExtractOperator`` and what the
:class:`~airflow_provider_dataeng.extract.job.ExtractJob` runs are all this model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from airflow_provider_dataeng.publish.spec import ANALYZE_DESCRIPTION, CheckSpec
from airflow_provider_dataeng.specs import ConnId, Duration, StrList, TableName, TaskSpec

DEFAULT_PARTITION_COLUMN = "_interval_start"
# Late commits: a row whose transaction started up to this long before an interval's end and committed after
# that interval's run is picked up by the next run (see docs/extract.md, "Late commits").
DEFAULT_LAG = "15m"


def _valid_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r}: expected an IANA time zone name like 'UTC' or 'Europe/Berlin'") from None
    return value


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty column name")
    return value


Name = Annotated[str, AfterValidator(_name)]
TimeZoneName = Annotated[str, AfterValidator(_valid_timezone)]


class ExtractSpec(TaskSpec):
    """``IdempotentExtractOperator``: one data interval of a PostgreSQL source table or query into its
    warehouse partition (streaming COPY into staging, checks, partition swap, ledger row)."""

    source_conn_id: ConnId = Field(description="Airflow connection of the source database")
    target_conn_id: ConnId = Field(description="Airflow connection of the warehouse")
    target_table: TableName = Field(description="schema.table in the warehouse, range-partitioned on partition_column")
    source_table: str | None = Field(default=None, description="schema.table in the source (or give source_sql)")
    source_sql: str | None = Field(default=None, description="A SELECT (templated) instead of source_table")
    mode: Literal["full_snapshot", "incremental_timestamp", "incremental_id"] = Field(
        default="full_snapshot",
        description="full_snapshot: every row; incremental_timestamp: rows modified in the interval (minus lag); "
                    "incremental_id: rows whose id is in no other partition of the target (above the ledger's id "
                    "watermark minus id_safety_window)",
    )
    partition_column: Name = Field(
        default=DEFAULT_PARTITION_COLUMN,
        description="Range-partition column of the target; a column not in the source is added to every row with "
                    "the interval's start",
    )
    timestamp_column: Name = Field(default="updated_at", description="The modified-at column (incremental_timestamp)")
    source_timezone: TimeZoneName | None = Field(
        default=None,
        description="IANA zone in which the source's naive (timestamp without time zone) columns are written; "
                    "required when timestamp_column or a source partition_column is naive",
    )
    lag: Duration = Field(
        default=DEFAULT_LAG, validate_default=True,
        description="incremental_timestamp: how far before the interval start to look again, for rows whose "
                    "transaction committed after the previous run (at least the longest write transaction on "
                    "the source)",
    )
    key_columns: StrList | None = Field(
        default=None, description="Key of the <table>__latest view (incremental_timestamp)",
    )
    id_column: Name = Field(default="id", description="The id column (incremental_id)")
    id_safety_window: int = Field(
        default=10_000, ge=0,
        description="incremental_id with an integer id: only ids above (the largest published id - "
                    "id_safety_window) are compared with the warehouse; a new row whose id is below that is "
                    "not loaded (ids committed out of order by more than this are missed)",
    )
    detect_deletes: bool = Field(
        default=False,
        description="incremental_timestamp: compare the source's key_columns with the keys the warehouse serves "
                    "and write a tombstone row (_deleted = true) into the interval's partition for each key gone "
                    "from the source; <table>__latest hides them (costs a key scan of both sides per run)",
    )
    checks: list[CheckSpec] | None = Field(default=None, description="Quality checks on the staging table")
    schema_drift: Literal["fail", "add_columns", "ignore_extra"] = Field(
        default="fail", description="What to do when the source's columns differ from the target's",
    )
    lock_timeout: Duration = Field(default="2s", validate_default=True,
                                   description="lock_timeout of the swap (and of added columns)")
    swap_attempts: int = Field(default=5, ge=1, description="Swap attempts on lock timeout or deadlock")
    keep_previous: bool = Field(default=False, description="Keep the replaced partition as <partition>__previous")
    keep_failed_staging: bool = Field(default=False,
                                      description="Keep the staging table of a load rejected by its checks")
    analyze: bool = Field(default=False, description=ANALYZE_DESCRIPTION)
    progress_interval: Duration = Field(default="5s", validate_default=True,
                                        description="How often the COPY logs rows so far and the rate")
    copy_sessions: int = Field(
        default=1, ge=1, le=16,
        description="Parallel COPY streams for a big source_table: its blocks are split into this many ranges "
                    "(TID range scans, PostgreSQL 14+), each read by its own source session under one exported "
                    "snapshot and written by its own warehouse session into the same staging table (without "
                    "COPY FREEZE). Pays off when both servers have spare cores; tables under 8 MB per session, "
                    "views and servers before 14 use one session. full_snapshot and incremental_timestamp only",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExtractSpec:
        if (self.source_table is None) == (self.source_sql is None):
            raise ValueError("source_table / source_sql: give exactly one of them")
        if self.key_columns is not None and (not self.key_columns or not all(c for c in self.key_columns)):
            raise ValueError(f"key_columns={self.key_columns!r}: expected a list of column names")
        if self.copy_sessions > 1 and (self.source_table is None or self.mode == "incremental_id"):
            raise ValueError(
                f"copy_sessions={self.copy_sessions}: parallel streams split a source_table's blocks (not a "
                "source_sql) and need mode full_snapshot or incremental_timestamp (incremental_id compares ids "
                "in one session's temp table)")
        if self.detect_deletes:
            if self.mode != "incremental_timestamp":
                raise ValueError(f"detect_deletes: only with mode incremental_timestamp (mode is {self.mode}); a "
                                 "full_snapshot partition has no deleted rows, incremental_id has no __latest view")
            if not self.key_columns:
                raise ValueError("detect_deletes: needs key_columns (the key compared with the source)")
            if self.timestamp_column in self.key_columns:
                raise ValueError("detect_deletes: timestamp_column cannot be one of key_columns")
        return self

