"""FreshnessSensor: a data-ingestion SLA on ``max(timestamp_column)`` with dbt-source-freshness semantics.

- fresh (lag <= warn_after) -> success;
- past ``warn_after`` but not ``error_after`` -> success, a warning in the log and a ``warn`` notification;
- past ``error_after`` (or the table is empty) -> keep waiting (poke/reschedule, or deferred to
  :class:`~airflow_provider_dataeng.triggers.freshness.FreshnessTrigger`) until the sensor's ``timeout``,
  then fail with the observed lag, the threshold and the max timestamp, after an ``error`` notification.

XCom ``return_value``: ``{"max_loaded_at": iso | None, "lag_seconds": float | None, "status": str}``
(also pushed when the sensor fails on a breach).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseNotifier,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    conf,
)

from airflow_provider_dataeng.durations import DurationLike
from airflow_provider_dataeng.freshness import (
    FreshnessConfigError,
    FreshnessResult,
    FreshnessStatus,
    ProbeSession,
    format_duration,
)
from airflow_provider_dataeng.freshness.spec import FreshnessSpec, seconds
from airflow_provider_dataeng.notifications.spec import NotifierSpec
from airflow_provider_dataeng.specs import spec_default, task_spec
from airflow_provider_dataeng.values import is_templated

Notifier = BaseNotifier | Callable[[Context], Any]


class FreshnessSensor(BaseSensorOperator):
    """Wait until ``table`` is fresh enough; warn past ``warn_after``, fail past ``error_after`` at timeout.

    :param conn_id: Airflow connection to the warehouse (``FailoverPostgresHook``).
    :param table: ``schema.table`` or ``table`` (schema ``public``); templated.
    :param timestamp_column: the load-time column; a poke is ``select max(col)``, answered from an index on
        ``col`` when there is one. Templated.
    :param loaded_at_query: instead of ``timestamp_column``: SQL returning one row with one timestamp
        (like dbt's ``loaded_at_query``). Templated.
    :param filter: SQL boolean expression limiting the rows considered (with ``timestamp_column``). Templated.
    :param warn_after: lag that gives a warning (timedelta, seconds, or ``"30m"``, ``"6h"``, ``"2d"``).
    :param error_after: lag that is a breach (same forms). At least one of the two is required.
    :param deferrable: wait in the triggerer instead of a worker slot; default from
        ``[operators] default_deferrable``.
    :param notifier: a ``BaseNotifier`` (or a callable taking the context), or a list of them, called on a
        warning and on a breach; the context carries ``freshness`` (table, status, lag, sla, threshold,
        max_loaded_at, message).
    """

    # conn_id and the thresholds are template fields so the serialized DAG carries them: the ingestion
    # dashboard (API server, no DAG files) judges freshness with this sensor's own warn_after/error_after.
    template_fields: Sequence[str] = (
        "conn_id", "table", "timestamp_column", "loaded_at_query", "filter", "warn_after", "error_after")
    template_fields_renderers = {"loaded_at_query": "sql", "filter": "sql"}
    ui_color = "#d8f3dc"

    def __init__(
        self,
        *,
        conn_id: str = spec_default(FreshnessSpec, "conn_id"),
        table: str = spec_default(FreshnessSpec, "table"),
        timestamp_column: str | None = spec_default(FreshnessSpec, "timestamp_column"),
        loaded_at_query: str | None = spec_default(FreshnessSpec, "loaded_at_query"),
        filter: str | None = spec_default(FreshnessSpec, "filter"),
        warn_after: DurationLike | None = spec_default(FreshnessSpec, "warn_after"),
        error_after: DurationLike | None = spec_default(FreshnessSpec, "error_after"),
        deferrable: bool | None = spec_default(FreshnessSpec, "deferrable"),
        notifier: Notifier | Sequence[Notifier] | NotifierSpec | None = spec_default(FreshnessSpec, "notifier"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.timestamp_column = timestamp_column
        self.loaded_at_query = loaded_at_query
        self.filter = filter
        self.warn_after = warn_after
        self.error_after = error_after
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False) if deferrable is None else deferrable
        )
        self.notifier = notifier
        self._spec: FreshnessSpec | None = None
        if not is_templated(conn_id, table, timestamp_column, loaded_at_query, filter, warn_after, error_after):
            self.spec()  # a bad argument fails when the DAG is parsed, naming the task
        self._last_result: FreshnessResult | None = None
        self._session: ProbeSession | None = None

    def spec(self) -> FreshnessSpec:
        """The task's :class:`FreshnessSpec` (after templating when called in ``execute``)."""
        return task_spec(self, FreshnessSpec)

    # -- the check ---------------------------------------------------------------------------------
    def _check(self) -> FreshnessResult:
        """One poke: the one probe query, on a connection kept for the whole execute (poke mode)."""
        from airflow_provider_dataeng.connections import connect

        if self._spec is None:
            self._spec = self.spec()
        if self._session is None:
            self._session = ProbeSession(connect(self._spec.conn_id, role="warehouse"))
        result = self._session.run(self._spec.check())
        self._last_result = result
        return result

    def on_kill(self) -> None:
        """Cancel a running probe (poke mode), so a query waiting on a lock does not outlive the task."""
        session = self._session
        if session is not None:
            session.hook.cancel()

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def poke(self, context: Context) -> bool | PokeReturnValue:
        result = self._check()
        if result.status is FreshnessStatus.ERROR:
            self.log.info("%s; waiting (sensor timeout %s)", result.message(), format_duration(self.timeout))
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._succeed(context, result))

    def execute(self, context: Context) -> Any:
        self._last_result = None
        self._spec = self.spec()  # templates are rendered now
        try:
            if self.deferrable:
                return self._execute_deferrable(context)
            try:
                return super().execute(context)
            except (AirflowSensorTimeout, AirflowSkipException) as exc:
                last = self._last_result
                if (
                    last is None
                    or last.status is not FreshnessStatus.ERROR
                    or isinstance(exc.__cause__, AirflowFailException)
                ):
                    raise
                self._breach(context, last)
        finally:
            self._close_session()

    # -- deferrable path ---------------------------------------------------------------------------
    def _execute_deferrable(self, context: Context) -> Any:
        from airflow_provider_dataeng.triggers.freshness import FreshnessTrigger

        result = self._check()
        if result.status is not FreshnessStatus.ERROR:
            return self._succeed(context, result)
        if self.timeout <= 0:
            self._breach(context, result)
        spec = self._spec or self.spec()
        query = spec.check().query
        self.log.info(
            "%s; deferring: the triggerer polls every %s until the sensor timeout (%s)",
            result.message(), format_duration(self.poke_interval), format_duration(self.timeout),
        )
        self.defer(
            trigger=FreshnessTrigger(
                conn_id=self.conn_id,
                schema=query.schema,
                table=query.table,
                timestamp_column=query.timestamp_column,
                loaded_at_query=query.loaded_at_query,
                filter=query.filter,
                warn_after_seconds=seconds(spec.warn_after),
                error_after_seconds=seconds(spec.error_after),
                poke_interval=self.poke_interval,
                timeout_at=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            # A safety net only: the trigger itself ends at timeout_at with a detailed event.
            timeout=timedelta(seconds=self.timeout + max(60.0, 2 * self.poke_interval)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after :class:`FreshnessTrigger`: succeed, or fail with the breach / the error."""
        if not event:
            raise AirflowFailException(f"{self.task_id}: resumed without a trigger event")
        status = event.get("status")
        if status == "failed":
            raise FreshnessConfigError(str(event.get("message")))
        result = FreshnessResult.from_payload(event["result"]) if event.get("result") else None
        if status in (FreshnessStatus.FRESH.value, FreshnessStatus.WARN.value) and result is not None:
            return self._succeed(context, result)
        if result is not None:
            self._breach(context, result)
        message = (
            f"Freshness of {self.table} could not be checked before the sensor timeout "
            f"({format_duration(self.timeout)}): {event.get('last_error') or 'no successful probe'}"
        )
        if self.soft_fail:
            raise AirflowSkipException(message)
        raise AirflowSensorTimeout(message)

    # -- outcomes ----------------------------------------------------------------------------------
    def _succeed(self, context: Context, result: FreshnessResult) -> dict[str, Any]:
        if result.status is FreshnessStatus.WARN:
            self.log.warning("Freshness warning: %s", result.message())
            self._notify(context, result)
        else:
            self.log.info("%s", result.message())
        return result.as_xcom()

    def _breach(self, context: Context, result: FreshnessResult) -> None:
        """Push the XCom, notify, then fail (or skip with ``soft_fail``) with lag, threshold and max timestamp."""
        message = result.breach_message(self.timeout)
        self.log.error("%s", message)
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key="return_value", value=result.as_xcom())
        self._notify(context, result)
        if self.soft_fail:
            raise AirflowSkipException(message)
        raise AirflowSensorTimeout(message)

    def _notify(self, context: Context, result: FreshnessResult) -> None:
        notifiers = (self._spec or self.spec()).notifiers()
        if not notifiers:
            return
        ti = context.get("ti")
        info = result.breach_info()
        info.update(
            dag_id=getattr(ti, "dag_id", None), run_id=context.get("run_id") or getattr(ti, "run_id", None),
            task_id=self.task_id,
        )
        notify_context = dict(context)
        notify_context["freshness"] = info
        for notifier in notifiers:
            try:
                # Notifiers render their template fields in place: use a copy per call.
                (copy.copy(notifier) if isinstance(notifier, BaseNotifier) else notifier)(notify_context)
            except Exception:  # a broken webhook must not change the freshness outcome
                self.log.exception("Freshness notifier %s failed", type(notifier).__name__)
