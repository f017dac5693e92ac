"""Operators that publish a table through the quality-gated staging swap, and roll it back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import Asset, BaseOperator, Context

from airflow_provider_dataeng.publish.assets import (
    asset_databases,
    configured_databases,
    database_check,
    resolve_database,
    table_asset,
)
from airflow_provider_dataeng.publish.spec import PublishSpec, RollbackSpec
from airflow_provider_dataeng.specs import TaskSpec, build_spec, spec_default, spec_values
from airflow_provider_dataeng.values import is_templated


def target_outlets(conn_id: str, target_table: str, dag: Any = None) -> list[Asset]:
    """The Asset outlet of the target table; none while the table name is a template."""
    if is_templated(conn_id, target_table):
        return []
    with asset_databases(configured_databases(dag)):
        return [table_asset(conn_id, target_table)]


def validate_untemplated(operator: BaseOperator, spec: type[TaskSpec]) -> None:
    """Validate the operator's arguments with its spec at DAG parse time, unless one is a template."""
    if not is_templated(*spec_values(operator, spec).values()):
        build_spec(operator, spec)


def engine_context(operator: BaseOperator, context: Context) -> dict[str, Any]:
    """``pipeline``, ``task_id``, ``run_id`` and ``data_interval`` for the ledger, and the connection's
    ``application_name``."""
    ti = context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or (operator.dag_id if operator.has_dag() else None)
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    return {"pipeline": dag_id, "task_id": operator.task_id, "run_id": getattr(ti, "run_id", None)
            or context.get("run_id"), "data_interval": (start, end) if start and end else None,
            "application_name": f"{dag_id}.{operator.task_id}" if dag_id else operator.task_id}


def report_event(operator: BaseOperator, context: Context, result: Any) -> None:
    """Attach the publish's facts (partition bounds, rows, ledger id, run id) to the outlet Asset event."""
    events = context.get("outlet_events")
    if events is None:
        return
    for outlet in operator.outlets or []:
        if isinstance(outlet, Asset):
            events[outlet].extra.update(result.event_extra())


class EngineTask(BaseOperator):
    """The publish engine behind an operator: built in execute, cancelled by ``on_kill``. Each connection
    it opens is checked against the database its Assets name (:func:`~airflow_provider_dataeng.publish.
    assets.database_check`)."""

    _engine: Any = None

    def __init__(self, **kwargs: Any) -> None:
        databases = configured_databases(kwargs.get("dag"))
        super().__init__(**kwargs)
        # the Asset identity's databases (a pipeline's `databases:`), for the run-time check and lineage
        self.asset_databases = databases

    def _run(self, context: Context, spec: Any, action: Callable[[Any], Any]) -> Any:
        from airflow_provider_dataeng.connections import connect
        from airflow_provider_dataeng.publish.tasks import engine_for

        ids = engine_context(self, context)
        hook = connect(spec.conn_id, role="warehouse", application_name=ids.pop("application_name"))
        with asset_databases(self.asset_databases):
            identity = resolve_database(spec.conn_id)
        self._engine = engine_for(spec, hook, on_connect=database_check(identity, self.log), **ids)
        try:
            return action(self._engine)
        finally:
            self._engine = None

    def on_kill(self) -> None:
        engine = self._engine
        if engine is not None:
            engine.cancel()


class StagingSwapOperator(EngineTask):
    """Build ``<target>__staging`` from ``select_sql`` (or a ``loader``), run ``checks``, swap it in.

    With ``partition_column`` the target is range-partitioned and only the partition
    ``[partition_start, partition_end)`` is replaced (defaults: the run's data interval). Parameters:
    :class:`airflow_provider_dataeng.publish.spec.PublishSpec`. The outlet is the target's Asset
    (:func:`airflow_provider_dataeng.publish.assets.table_asset`); its event carries the partition
    bounds, rows, ledger id and run id.
    """

    template_fields: Sequence[str] = ("target_table", "select_sql", "checks", "partition_start", "partition_end")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"select_sql": "sql", "checks": "json"}
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        conn_id: str,
        target_table: str,
        select_sql: str | None = spec_default(PublishSpec, "select_sql"),
        loader: Callable[..., Any] | None = spec_default(PublishSpec, "loader"),
        checks: list[dict] | None = spec_default(PublishSpec, "checks"),
        partition_column: str | None = spec_default(PublishSpec, "partition_column"),
        partition_start: Any = spec_default(PublishSpec, "partition_start"),
        partition_end: Any = spec_default(PublishSpec, "partition_end"),
        lock_timeout: str | float = spec_default(PublishSpec, "lock_timeout"),
        swap_attempts: int = spec_default(PublishSpec, "swap_attempts"),
        lock_wait: str | float = spec_default(PublishSpec, "lock_wait"),
        keep_previous: bool = spec_default(PublishSpec, "keep_previous"),
        keep_failed_staging: bool = spec_default(PublishSpec, "keep_failed_staging"),
        analyze: bool = spec_default(PublishSpec, "analyze"),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", target_outlets(conn_id, target_table, kwargs.get("dag")))
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.target_table = target_table
        self.select_sql = select_sql
        self.loader = loader
        self.checks = checks
        self.partition_column = partition_column
        self.partition_start = partition_start
        self.partition_end = partition_end
        self.lock_timeout = lock_timeout
        self.swap_attempts = swap_attempts
        self.lock_wait = lock_wait
        self.keep_previous = keep_previous
        self.keep_failed_staging = keep_failed_staging
        self.analyze = analyze
        if checks is not None and not is_templated(checks):
            from airflow_provider_dataeng.publish.checks import build_checks

            build_checks(checks)  # names the item and key of a bad check
        validate_untemplated(self, PublishSpec)

    def execute(self, context: Context) -> dict:
        from airflow_provider_dataeng.publish import tasks

        spec = build_spec(self, PublishSpec)
        interval = (context.get("data_interval_start"), context.get("data_interval_end"))
        result = self._run(context, spec, lambda engine: tasks.publish(engine, spec, interval))
        report_event(self, context, result)
        return result.as_xcom()

    def get_openlineage_facets_on_start(self) -> Any:
        """OpenLineage datasets known before the run (:mod:`airflow_provider_dataeng.lineage`)."""
        from airflow_provider_dataeng.lineage.tasks import publish_lineage

        return publish_lineage(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage datasets with schema, data-quality and row-count facets."""
        from airflow_provider_dataeng.lineage.tasks import publish_lineage

        return publish_lineage(self, task_instance)


class RollbackPublishOperator(EngineTask):
    """Swap ``<target>__previous`` back in (for a partition: the one starting at ``partition_start``).

    Parameters: :class:`airflow_provider_dataeng.publish.spec.RollbackSpec`.
    """

    template_fields: Sequence[str] = ("target_table", "partition_start")
    ui_color = "#fadbd8"

    def __init__(
        self,
        *,
        conn_id: str,
        target_table: str,
        partition_start: Any = spec_default(RollbackSpec, "partition_start"),
        lock_timeout: str | float = spec_default(RollbackSpec, "lock_timeout"),
        swap_attempts: int = spec_default(RollbackSpec, "swap_attempts"),
        lock_wait: str | float = spec_default(RollbackSpec, "lock_wait"),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", target_outlets(conn_id, target_table, kwargs.get("dag")))
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.target_table = target_table
        self.partition_start = partition_start
        self.lock_timeout = lock_timeout
        self.swap_attempts = swap_attempts
        self.lock_wait = lock_wait
        validate_untemplated(self, RollbackSpec)

    def execute(self, context: Context) -> dict:
        from airflow_provider_dataeng.publish import tasks

        spec = build_spec(self, RollbackSpec)
        result = self._run(context, spec, lambda engine: tasks.rollback(engine, spec))
        report_event(self, context, result)
        return result.as_xcom()

    def get_openlineage_facets_on_start(self) -> Any:
        """OpenLineage datasets known before the run (:mod:`airflow_provider_dataeng.lineage`)."""
        from airflow_provider_dataeng.lineage.tasks import rollback_lineage

        return rollback_lineage(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage datasets with schema, data-quality and row-count facets."""
        from airflow_provider_dataeng.lineage.tasks import rollback_lineage

        return rollback_lineage(self, task_instance)
