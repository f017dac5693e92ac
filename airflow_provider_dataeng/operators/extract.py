"""IdempotentExtractOperator: one data interval of a source table or query into its warehouse partition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, BaseOperator, Context

from airflow_provider_dataeng.extract.interval import resolve_interval
from airflow_provider_dataeng.extract.spec import ExtractSpec
from airflow_provider_dataeng.publish.assets import (
    asset_databases,
    configured_databases,
    database_check,
    resolve_database,
    table_asset,
)
from airflow_provider_dataeng.specs import build_spec, spec_default
from airflow_provider_dataeng.values import as_list, is_templated

if TYPE_CHECKING:  # the engine (psycopg) is imported when the task runs, not when its DAG is parsed
    from airflow_provider_dataeng.extract.job import ExtractJob


def target_outlets(conn_id: str, target_table: str) -> list[Asset]:
    """The Asset outlet of the target table (the publish engine's URI scheme); none for a templated name."""
    if is_templated(conn_id, target_table):
        return []
    return [table_asset(conn_id, target_table)]


class IdempotentExtractOperator(BaseOperator):
    """Extract one data interval from a PostgreSQL source into the matching partition of a warehouse table:
    streaming COPY into staging, quality checks, partition swap, ledger row.

    Parameters are the fields of :class:`~airflow_provider_dataeng.extract.spec.ExtractSpec` (types, defaults
    and descriptions live there). The interval is the run's data interval; a run without one (the UI's Trigger
    button, the API without a logical date) takes ``interval_start``/``interval_end`` from the run's conf or
    params, else the DAG's last complete interval (see :mod:`airflow_provider_dataeng.extract.interval`).
    Rerunning an interval replaces exactly that partition (also with 0 source rows).
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
        source_table: str | None = spec_default(ExtractSpec, "source_table"),
        source_sql: str | None = spec_default(ExtractSpec, "source_sql"),
        mode: str = spec_default(ExtractSpec, "mode"),
        partition_column: str = spec_default(ExtractSpec, "partition_column"),
        timestamp_column: str = spec_default(ExtractSpec, "timestamp_column"),
        source_timezone: str | None = spec_default(ExtractSpec, "source_timezone"),
        lag: str | float = spec_default(ExtractSpec, "lag"),
        key_columns: Sequence[str] | str | None = spec_default(ExtractSpec, "key_columns"),
        id_column: str = spec_default(ExtractSpec, "id_column"),
        id_safety_window: int = spec_default(ExtractSpec, "id_safety_window"),
        detect_deletes: bool = spec_default(ExtractSpec, "detect_deletes"),
        checks: Sequence[dict] | None = spec_default(ExtractSpec, "checks"),
        schema_drift: str = spec_default(ExtractSpec, "schema_drift"),
        lock_timeout: str | float = spec_default(ExtractSpec, "lock_timeout"),
        swap_attempts: int = spec_default(ExtractSpec, "swap_attempts"),
        keep_previous: bool = spec_default(ExtractSpec, "keep_previous"),
        keep_failed_staging: bool = spec_default(ExtractSpec, "keep_failed_staging"),
        analyze: bool = spec_default(ExtractSpec, "analyze"),
        progress_interval: str | float = spec_default(ExtractSpec, "progress_interval"),
        copy_sessions: int = spec_default(ExtractSpec, "copy_sessions"),
        **kwargs: Any,
    ) -> None:
        databases = configured_databases(kwargs.get("dag"))
        with asset_databases(databases):
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
        self.source_timezone = source_timezone
        self.lag = lag
        self.key_columns = as_list(key_columns)
        self.id_column = id_column
        self.id_safety_window = id_safety_window
        self.detect_deletes = detect_deletes
        self.checks = checks
        self.schema_drift = schema_drift
        self.lock_timeout = lock_timeout
        self.swap_attempts = swap_attempts
        self.keep_previous = keep_previous
        self.keep_failed_staging = keep_failed_staging
        self.analyze = analyze
        self.progress_interval = progress_interval
        self.copy_sessions = copy_sessions
        self._job: ExtractJob | None = None
        # the Asset identity's databases (a pipeline's `databases:`), for the run-time check and lineage
        self.asset_databases = databases
        # Validate at parse time (no database access) when nothing is templated: a bad config fails the DAG
        # import with a clear error instead of every run.
        if not is_templated(*(getattr(self, f) for f in self.template_fields)):
            build_spec(self, ExtractSpec)

    def execute(self, context: Context) -> dict:
        from airflow_provider_dataeng.extract.job import ExtractJob

        spec = build_spec(self, ExtractSpec)
        interval = resolve_interval(context)  # type: ignore[arg-type]
        self.log.info("Interval [%s, %s): %s", interval.lower.isoformat(), interval.upper.isoformat(),
                      interval.origin)
        dag_id = self.dag_id if self.has_dag() else None
        with asset_databases(self.asset_databases):
            identity = resolve_database(spec.target_conn_id)
        self._job = ExtractJob(spec, logger=self.log, on_warehouse_connect=database_check(identity, self.log))
        dag_run = context.get("dag_run")
        result = self._job.run(
            interval.lower, interval.upper, pipeline=dag_id, task_id=self.task_id,
            run_id=getattr(dag_run, "run_id", None) or context.get("run_id"),
        )
        xcom = result.as_xcom()
        xcom["interval_origin"] = interval.origin
        return xcom

    def on_kill(self) -> None:
        """Cancel the running statements on the source and the warehouse (libpq cancel requests)."""
        if self._job is not None:
            self._job.cancel()

    def get_openlineage_facets_on_start(self) -> Any:
        """OpenLineage datasets known before the run (:mod:`airflow_provider_dataeng.lineage`)."""
        from airflow_provider_dataeng.lineage.tasks import extract_lineage

        return extract_lineage(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage datasets with schema, data-quality and row-count facets."""
        from airflow_provider_dataeng.lineage.tasks import extract_lineage

        return extract_lineage(self, task_instance)
