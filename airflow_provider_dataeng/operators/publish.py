"""Operators that publish a table through the quality-gated staging swap, and roll it back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, Context

from airflow_provider_dataeng.durations import parse_seconds
from airflow_provider_dataeng.publish.assets import table_asset
from airflow_provider_dataeng.publish.checks import build_checks
from airflow_provider_dataeng.publish.table_ref import TableRef


def _is_templated(value: Any) -> bool:
    return "{{" in repr(value) or "{%" in repr(value)


def _target_outlets(conn_id: str, target_table: str, database: str | None, asset_uri: str | None) -> list:
    """The Asset outlet for the target table (none when the table name is a template and no asset_uri)."""
    if asset_uri is None and _is_templated(target_table):
        return []
    return [table_asset(conn_id, target_table, database=database, asset_uri=asset_uri)]


def _engine(conn_id: str, context: Context, **kwargs: Any) -> Any:
    from airflow_provider_dataeng.connections import connect
    from airflow_provider_dataeng.publish.engine import PublishEngine

    ti = context.get("ti")
    return PublishEngine(
        connect(conn_id, role="warehouse"),
        pipeline=getattr(ti, "dag_id", None), task_id=getattr(ti, "task_id", None),
        run_id=getattr(ti, "run_id", None), **kwargs,
    )


class StagingSwapOperator(BaseOperator):
    """Build ``<target>__staging`` from ``select_sql`` (or a ``loader``), run ``checks``, swap it in.

    With ``partition_column`` the target is range-partitioned and only the partition
    ``[partition_start, partition_end)`` is replaced (defaults: the run's data interval).

    :param conn_id: warehouse connection (FailoverPostgresHook).
    :param target_table: ``schema.table`` (templated).
    :param select_sql: the query whose rows become the new table / partition (templated, ``.sql`` files).
    :param checks: check configs (see ``publish.checks``), templated.
    :param lock_timeout: how long the swap may wait for its locks per attempt (``"2s"``, ``"500ms"``).
    :param swap_attempts: swap attempts on lock timeout before failing.
    :param keep_previous: keep the replaced table / partition as ``__previous`` for RollbackPublishOperator.
    :param keep_failed_staging: keep a rejected staging table for inspection.
    :param loader: ``callable(conn, staging: TableRef) -> LoadStats | int | None`` instead of select_sql.
    :param database, asset_uri: control the Asset outlet URI (see ``publish.assets.table_asset``).
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
        select_sql: str | None = None,
        checks: list[dict] | None = None,
        partition_column: str | None = None,
        partition_start: Any = None,
        partition_end: Any = None,
        lock_timeout: str | float = "2s",
        swap_attempts: int = 5,
        keep_previous: bool = True,
        keep_failed_staging: bool = False,
        loader: Callable[..., Any] | None = None,
        database: str | None = None,
        asset_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        if (select_sql is None) == (loader is None):
            raise ValueError("StagingSwapOperator: give exactly one of select_sql or loader")
        if not isinstance(target_table, str) or not target_table.strip():
            raise ValueError(f"target_table: expected 'schema.table', got {target_table!r}")
        if not _is_templated(target_table):
            TableRef.parse(target_table)
        if checks is not None and not _is_templated(checks):
            build_checks(checks)
        if not isinstance(swap_attempts, int) or isinstance(swap_attempts, bool) or swap_attempts < 1:
            raise ValueError(f"swap_attempts: expected an integer >= 1, got {swap_attempts!r}")
        if (partition_start is not None or partition_end is not None) and not partition_column:
            raise ValueError("partition_start/partition_end need partition_column")
        kwargs.setdefault("outlets", _target_outlets(conn_id, target_table, database, asset_uri))
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.target_table = target_table
        self.select_sql = select_sql
        self.checks = checks
        self.partition_column = partition_column
        self.partition_start = partition_start
        self.partition_end = partition_end
        self.lock_timeout = parse_seconds(lock_timeout, "lock_timeout")
        self.swap_attempts = swap_attempts
        self.keep_previous = keep_previous
        self.keep_failed_staging = keep_failed_staging
        self.loader = loader

    def execute(self, context: Context) -> dict:
        engine = _engine(self.conn_id, context, lock_timeout=self.lock_timeout, swap_attempts=self.swap_attempts)
        checks = build_checks(self.checks)
        target = TableRef.parse(self.target_table)
        if self.partition_column:
            lower = self.partition_start or context.get("data_interval_start")
            upper = self.partition_end or context.get("data_interval_end")
            if lower is None or upper is None or (lower == upper and not self.partition_start):
                raise ValueError(
                    f"partition_start/partition_end: this run's data interval is empty ({lower}, {upper}); give "
                    "them explicitly or use a timetable with data intervals (e.g. schedule=timedelta(days=1))")
            result = engine.publish_partition(
                target, partition_column=self.partition_column, lower=lower, upper=upper,
                loader=self.loader, select_sql=self.select_sql, checks=checks,
                keep_previous=self.keep_previous, keep_failed_staging=self.keep_failed_staging,
            )
        else:
            result = engine.publish_table(
                target, loader=self.loader, select_sql=self.select_sql, checks=checks,
                keep_previous=self.keep_previous, keep_failed_staging=self.keep_failed_staging,
            )
        return result.as_xcom()


class RollbackPublishOperator(BaseOperator):
    """Swap ``<target>__previous`` back in (for a partition: the one starting at ``partition_start``)."""

    template_fields: Sequence[str] = ("target_table", "partition_start")
    ui_color = "#fadbd8"

    def __init__(
        self,
        *,
        conn_id: str,
        target_table: str,
        partition_start: Any = None,
        lock_timeout: str | float = "2s",
        swap_attempts: int = 5,
        database: str | None = None,
        asset_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(target_table, str) or not target_table.strip():
            raise ValueError(f"target_table: expected 'schema.table', got {target_table!r}")
        if not _is_templated(target_table):
            TableRef.parse(target_table)
        kwargs.setdefault("outlets", _target_outlets(conn_id, target_table, database, asset_uri))
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.target_table = target_table
        self.partition_start = partition_start
        self.lock_timeout = parse_seconds(lock_timeout, "lock_timeout")
        self.swap_attempts = swap_attempts

    def execute(self, context: Context) -> dict:
        engine = _engine(self.conn_id, context, lock_timeout=self.lock_timeout, swap_attempts=self.swap_attempts)
        return engine.rollback(TableRef.parse(self.target_table), self.partition_start or None).as_xcom()
