"""IdempotentExtractOperator: one data interval of a source table or query into its warehouse partition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import Asset, BaseOperator, Context

from airflow_provider_dataeng.extract.job import ExtractJob, ExtractSpec, as_list, interval_bounds
from airflow_provider_dataeng.publish.assets import table_asset


def target_outlets(conn_id: str, target_table: str) -> list[Asset]:
    """The Asset outlet of the target table (the publish engine's URI scheme); none for a templated name."""
    if "{{" in target_table or "{%" in target_table:
        return []
    return [table_asset(conn_id, target_table)]


class IdempotentExtractOperator(BaseOperator):
    """Extract the run's data interval from a PostgreSQL source into the matching partition of a warehouse
    table: streaming COPY into staging, quality checks, partition swap, ledger row.

    Rerunning an interval replaces exactly that partition (also with 0 source rows).

    :param source_conn_id: Airflow connection of the source database.
    :param target_conn_id: Airflow connection of the warehouse.
    :param target_table: ``schema.table`` in the warehouse (range-partitioned on ``partition_column``).
    :param source_table: ``schema.table`` in the source (or give ``source_sql``).
    :param source_sql: a SELECT (templated; may use ``{{ data_interval_start }}``).
    :param mode: ``full_snapshot`` | ``incremental_timestamp`` | ``incremental_id``.
    :param partition_column: default ``_interval_start``: added to every row with the interval's start.
    :param timestamp_column: the modified-at column (``incremental_timestamp``).
    :param lag: how far before the interval start to look for late commits (e.g. ``"15m"``).
    :param key_columns: key of the ``<table>__latest`` view (``incremental_timestamp``).
    :param id_column: the id column (``incremental_id``).
    :param checks: quality checks on staging (publish engine config format).
    :param schema_drift: ``fail`` | ``add_columns`` | ``ignore_extra``.
    :param lock_timeout: lock timeout of the swap (and of added columns).
    :param progress_interval: how often the copy logs rows so far and the rate.
    """

    template_fields: Sequence[str] = ("source_sql", "source_table", "target_table")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"source_sql": "sql"}
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        source_conn_id: str,
        target_conn_id: str,
        target_table: str,
        source_table: str | None = None,
        source_sql: str | None = None,
        mode: str = "full_snapshot",
        partition_column: str = "_interval_start",
        timestamp_column: str = "updated_at",
        lag: str | float = "0s",
        key_columns: Sequence[str] | str | None = None,
        id_column: str = "id",
        checks: list[dict] | None = None,
        schema_drift: str = "fail",
        lock_timeout: str | float = "2s",
        progress_interval: str | float = "5s",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", target_outlets(target_conn_id, target_table))
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.target_table = target_table
        self.source_table = source_table
        self.source_sql = source_sql
        self.mode = mode
        self.partition_column = partition_column
        self.timestamp_column = timestamp_column
        self.lag = lag
        self.key_columns = as_list(key_columns)
        self.id_column = id_column
        self.checks = list(checks or [])
        self.schema_drift = schema_drift
        self.lock_timeout = lock_timeout
        self.progress_interval = progress_interval
        # Validate at parse time (no database access): bad config fails the DAG import with a clear error.
        self._spec()
        from airflow_provider_dataeng.publish.checks import build_checks

        build_checks(self.checks)

    def _spec(self) -> ExtractSpec:
        return ExtractSpec(
            source_conn_id=self.source_conn_id, target_conn_id=self.target_conn_id, target_table=self.target_table,
            source_table=self.source_table, source_sql=self.source_sql, mode=self.mode,
            partition_column=self.partition_column, timestamp_column=self.timestamp_column, lag=self.lag,
            key_columns=self.key_columns, id_column=self.id_column, checks=self.checks,
            schema_drift=self.schema_drift, lock_timeout=self.lock_timeout, progress_interval=self.progress_interval,
        )

    def execute(self, context: Context) -> dict:
        lower, upper = interval_bounds(context)  # type: ignore[arg-type]
        job = ExtractJob(self._spec(), logger=self.log)
        dag_run = context.get("dag_run")
        result = job.run(
            lower, upper, pipeline=self.dag_id if self.has_dag() else None, task_id=self.task_id,
            run_id=getattr(dag_run, "run_id", None) or context.get("run_id"),
        )
        return result.as_xcom()
