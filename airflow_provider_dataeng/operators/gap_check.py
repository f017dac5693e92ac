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
from airflow_provider_dataeng.gaps import resolve_timetable, to_utc
from airflow_provider_dataeng.gaps.spec import GapCheckSpec
from airflow_provider_dataeng.specs import spec_default, task_spec
from airflow_provider_dataeng.values import is_templated

MAX_COMMANDS_IN_ERROR = 5


class PartitionGapCheckOperator(BaseOperator):
    """Compare a schedule's expected intervals with the ledger and the partitions of ``target_table``.

    :param conn_id: Airflow connection to the warehouse.
    :param target_table: ``schema.table`` (templated).
    :param schedule: cron expression/preset, ``timedelta`` or timetable; default: the DAG's timetable.
    :param start: first interval start (datetime or ISO string, templated); default: the DAG's start_date.
    :param end: intervals must end by this time (templated); default: this run's ``data_interval_start`` (a run
        without a data interval: the start of the DAG's last complete interval, as the extract takes).
    :param on_holes: ``"fail"`` (default) or ``"warn"``.
    :param pipeline: only ledger rows of this pipeline (dag_id); also the DAG named in the backfill
        commands (default: this DAG).
    """

    template_fields: Sequence[str] = ("target_table", "start", "end", "pipeline")
    ui_color = "#fde2e4"

    def __init__(
        self,
        *,
        conn_id: str = spec_default(GapCheckSpec, "conn_id"),
        target_table: str = spec_default(GapCheckSpec, "target_table"),
        schedule: str | timedelta | Any | None = spec_default(GapCheckSpec, "schedule"),
        start: datetime | str | None = spec_default(GapCheckSpec, "start"),
        end: datetime | str | None = spec_default(GapCheckSpec, "end"),
        on_holes: str = spec_default(GapCheckSpec, "on_holes"),
        pipeline: str | None = spec_default(GapCheckSpec, "pipeline"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.target_table = target_table
        self.schedule = schedule
        self.start = start
        self.end = end
        self.on_holes = on_holes
        self.pipeline = pipeline
        self._hook: Any = None  # the running check's hook, for on_kill
        if not is_templated(conn_id, target_table, start, end, pipeline):
            self.spec()  # a bad argument (or cron) fails when the DAG is parsed, naming the task

    def spec(self) -> GapCheckSpec:
        """The task's :class:`GapCheckSpec` (after templating when called in ``execute``)."""
        return task_spec(self, GapCheckSpec)

    def on_kill(self) -> None:
        """Cancel the running catalog/ledger read (a libpq cancel), so nothing keeps running server-side."""
        if self._hook is not None:
            self._hook.cancel()

    def _window(self, spec: GapCheckSpec, context: Context) -> tuple[datetime, datetime]:
        dag = context.get("dag")
        start = spec.start or getattr(dag, "start_date", None)
        if not start:
            raise AirflowFailException(f"{self.task_id}: no start given and the DAG has no start_date")
        end = spec.end or context.get("data_interval_start") or context.get("logical_date")
        if not end:
            # A run without a data interval (the UI's Trigger button, the REST API without logical_date):
            # up to the start of the DAG's last complete interval (or the conf's interval), as the extract takes.
            from airflow_provider_dataeng.extract.interval import resolve_interval

            interval = resolve_interval(context)
            self.log.info("Window end %s: the start of %s", interval.lower.isoformat(), interval.origin)
            end = interval.lower
        try:
            return to_utc(start, field="start"), to_utc(end, field="end")
        except ValueError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_provider_dataeng.connections import connect
        from airflow_provider_dataeng.gaps.check import find_gaps  # the engine (psycopg): at run time

        dag = context.get("dag")
        try:
            spec = self.spec()
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        schema, table = split_table_name(spec.target_table, field=f"{self.task_id}: target_table")
        try:
            timetable = resolve_timetable(
                spec.schedule, dag_timetable=getattr(dag, "timetable", None), tz=getattr(dag, "timezone", "UTC")
            )
        except ValueError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None
        start, end = self._window(spec, context)
        hook = self._hook = connect(spec.conn_id, role="warehouse")
        report = find_gaps(
            hook, schema=schema, table=table, timetable=timetable, start=start, end=end, pipeline=spec.pipeline
        )
        for note in report.notes:
            self.log.info("Note: %s", note)
        holes = report.as_xcom()
        if not report.holes:
            self.log.info("No holes: %s", report.summary())
            return holes
        dag_id = spec.pipeline or getattr(dag, "dag_id", None) or "<dag_id>"
        commands = report.backfill_commands(dag_id)
        self.log.warning("%s\n%s", report.summary(), report.table())
        self.log.warning("Fill the holes (and only them) with:\n%s", "\n".join(commands))
        if spec.on_holes == "fail":
            ti = context.get("ti")
            if ti is not None:
                ti.xcom_push(key="return_value", value=holes)
            shown = commands[:MAX_COMMANDS_IN_ERROR]
            more = f"\n(... {len(commands) - len(shown)} more commands in the log)" if len(commands) > len(shown) else ""
            raise AirflowFailException(f"{report.summary()}. Backfill:\n" + "\n".join(shown) + more)
        return holes
