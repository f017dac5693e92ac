"""PartitionGapCheckOperator: find intervals of a schedule with no published data (missing/failed/rejected).

Thin operator over :mod:`airflow_provider_dataeng.gaps`: it resolves the schedule (default: the DAG's
timetable), the window (default: DAG start_date .. this run's data_interval_start), logs the holes as a
table plus the ``airflow backfill create`` commands that fill exactly them, then fails or warns.
Returns (XCom ``return_value``, also pushed when failing) the holes: ``[{start, end, logical_date, kind,
detail, ledger_id, run_id}, ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, Context

from airflow_provider_dataeng.freshness import split_table_name
from airflow_provider_dataeng.gaps import find_gaps, resolve_timetable, to_utc

ON_HOLES = ("fail", "warn")
MAX_COMMANDS_IN_ERROR = 5


class PartitionGapCheckOperator(BaseOperator):
    """Compare a schedule's expected intervals with the ledger and the partitions of ``target_table``.

    :param conn_id: Airflow connection to the warehouse.
    :param target_table: ``schema.table`` (templated).
    :param schedule: cron expression/preset, ``timedelta`` or timetable; default: the DAG's timetable.
    :param start: first interval start (datetime or ISO string, templated); default: the DAG's start_date.
    :param end: intervals must end by this time (templated); default: this run's ``data_interval_start``.
    :param on_holes: ``"fail"`` (default) or ``"warn"``.
    :param pipeline: only ledger rows of this pipeline (dag_id); also the DAG named in the backfill
        commands (default: this DAG).
    """

    template_fields: Sequence[str] = ("target_table", "start", "end", "pipeline")
    ui_color = "#fde2e4"

    def __init__(
        self,
        *,
        conn_id: str,
        target_table: str,
        schedule: str | timedelta | Any | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        on_holes: str = "fail",
        pipeline: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(conn_id, str) or not conn_id:
            raise ValueError(f"{self.task_id}: conn_id={conn_id!r}: expected an Airflow connection id")
        if not isinstance(target_table, str) or not target_table.strip():
            raise ValueError(f"{self.task_id}: target_table={target_table!r}: expected 'schema.table'")
        if "{{" not in target_table:
            split_table_name(target_table, field=f"{self.task_id}: target_table")
        if on_holes not in ON_HOLES:
            raise ValueError(f"{self.task_id}: on_holes={on_holes!r}: expected one of {', '.join(ON_HOLES)}")
        if isinstance(schedule, str):
            resolve_timetable(schedule)  # a bad cron fails at parse time, naming the field
        self.conn_id = conn_id
        self.target_table = target_table
        self.schedule = schedule
        self.start = start
        self.end = end
        self.on_holes = on_holes
        self.pipeline = pipeline

    def _window(self, context: Context) -> tuple[datetime, datetime]:
        dag = context.get("dag")
        start = self.start or getattr(dag, "start_date", None)
        if not start:
            raise AirflowFailException(f"{self.task_id}: no start given and the DAG has no start_date")
        end = self.end or context.get("data_interval_start") or context.get("logical_date")
        if not end:
            raise AirflowFailException(f"{self.task_id}: no end given and this run has no data interval")
        try:
            return to_utc(start, field="start"), to_utc(end, field="end")
        except ValueError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

        dag = context.get("dag")
        schema, table = split_table_name(self.target_table, field=f"{self.task_id}: target_table")
        try:
            timetable = resolve_timetable(
                self.schedule, dag_timetable=getattr(dag, "timetable", None), tz=getattr(dag, "timezone", "UTC")
            )
        except ValueError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None
        start, end = self._window(context)
        hook = FailoverPostgresHook(postgres_conn_id=self.conn_id, driver="psycopg")
        report = find_gaps(
            hook, schema=schema, table=table, timetable=timetable, start=start, end=end, pipeline=self.pipeline
        )
        for note in report.notes:
            self.log.info("Note: %s", note)
        holes = report.as_xcom()
        if not report.holes:
            self.log.info("No holes: %s", report.summary())
            return holes
        dag_id = self.pipeline or getattr(dag, "dag_id", None) or "<dag_id>"
        commands = report.backfill_commands(dag_id)
        self.log.warning("%s\n%s", report.summary(), report.table())
        self.log.warning("Fill the holes (and only them) with:\n%s", "\n".join(commands))
        if self.on_holes == "fail":
            ti = context.get("ti")
            if ti is not None:
                ti.xcom_push(key="return_value", value=holes)
            shown = commands[:MAX_COMMANDS_IN_ERROR]
            more = f"\n(... {len(commands) - len(shown)} more commands in the log)" if len(commands) > len(shown) else ""
            raise AirflowFailException(f"{report.summary()}. Backfill:\n" + "\n".join(shown) + more)
        return holes
