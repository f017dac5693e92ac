"""Add a freshness SLA to a DAG as an Airflow Deadline Alert (Airflow 3.1+), else as a watcher task.

The SLA "a run publishes ``table`` within ``error_after``" becomes a Deadline Alert built by
:func:`airflow_provider_dataeng.notifications.deadline.deadline_alert` (the same builder configs use):
when a run is still not finished at the deadline, the scheduler queues the callback, which runs in the
triggerer (``async_notify``). Before Airflow 3.1 the same SLA becomes the ``sla_deadline_watch`` task
(:mod:`airflow_provider_dataeng.notifications.deadline_watch`), which calls the same notifier the same way.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow_provider_dataeng.durations import DurationLike, format_duration, parse_duration
from airflow_provider_dataeng.notifications.deadline import deadline_alert, deadline_alerts_supported
from airflow_provider_dataeng.notifications.deadline_watch import add_deadline_watch
from airflow_provider_dataeng.notifications.spec import DEADLINE_REFERENCES, SlaBreachSpec

__all__ = ["DEFAULT_NOTIFIER", "add_freshness_deadline", "deadline_alerts_supported"]

log = logging.getLogger(__name__)

DEFAULT_NOTIFIER = "airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier"


def add_freshness_deadline(
    dag: Any,
    *,
    table: str,
    error_after: DurationLike,
    notifier: type | str = DEFAULT_NOTIFIER,
    notifier_kwargs: dict[str, Any] | None = None,
    reference: str = "dagrun_queued_at",
    name: str | None = None,
) -> Any | None:
    """Append a Deadline Alert for ``table``'s freshness SLA to ``dag``; return it.

    Before Airflow 3.1 the SLA is watched by the ``sla_deadline_watch`` task instead, which is returned.

    :param dag: the DAG (call before it is serialized, e.g. inside its ``with DAG(...)`` block).
    :param table: the table the DAG publishes (used in the message).
    :param error_after: how long after the reference a run must have finished ("6h", timedelta, ...).
    :param notifier: a ``BaseNotifier`` subclass (or its import path) implementing ``async_notify``;
        default :class:`~airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier`.
    :param notifier_kwargs: constructor kwargs of the notifier (JSON-able; e.g. ``{"webhook_url": ...}``).
    :param reference: ``"dagrun_queued_at"`` (when the run was queued) or ``"dagrun_logical_date"``.
    :param name: the alert's name (default ``freshness:<table>``).
    """
    interval = parse_duration(error_after, field="error_after")
    if interval is None or interval <= timedelta(0):
        raise ValueError(f"error_after={error_after!r}: expected a positive duration like '6h'")
    if reference not in DEADLINE_REFERENCES:
        raise ValueError(f"reference={reference!r}: expected one of {', '.join(DEADLINE_REFERENCES)}")
    path = notifier if isinstance(notifier, str) else f"{notifier.__module__}.{notifier.__qualname__}"
    sla = f"finished within {format_duration(interval)} of {reference.removeprefix('dagrun_')}"
    # Our notifier takes the table and SLA for its message; other notifiers get exactly notifier_kwargs.
    kwargs: dict[str, Any] = {"table": table, "sla": sla} if path == DEFAULT_NOTIFIER else {}
    kwargs.update(notifier_kwargs or {})
    if not deadline_alerts_supported():
        spec = SlaBreachSpec(notifier=path, kwargs=kwargs, after=interval, reference=reference)
        watcher = add_deadline_watch(dag, [spec], name=name or f"freshness:{table}")
        log.info("Airflow before 3.1 has no Deadline Alerts: freshness SLA for %s on DAG %s watched by task %s "
                 "(%s, notifier %s)", table, getattr(dag, "dag_id", dag), watcher.task_id, sla, path)
        return watcher
    alert = deadline_alert(
        reference=reference, interval=interval, notifier=notifier, kwargs=kwargs, name=name or f"freshness:{table}"
    )
    dag.deadline = [*(dag.deadline or []), alert]
    log.info("Added Deadline Alert %s to DAG %s (%s, notifier %s)", alert.name, dag.dag_id, sla, path)
    return alert
