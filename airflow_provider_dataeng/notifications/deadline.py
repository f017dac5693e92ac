"""The one Deadline Alert builder: "a run must be done ``interval`` after its reference, else notify".

Used by pipeline configs (``notifications: {sla_breach: ...}``) and by
:func:`airflow_provider_dataeng.freshness.deadline.add_freshness_deadline`. When a run is not finished at
its deadline, the scheduler queues the callback, which runs the notifier's ``async_notify`` in the
triggerer. Needs Airflow 3.1+ (``airflow.sdk.DeadlineAlert``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow_provider_dataeng.notifications.spec import DEADLINE_REFERENCES


def deadline_alerts_supported() -> bool:
    """True when the installed Airflow has ``airflow.sdk.DeadlineAlert`` (3.1+)."""
    try:
        from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference  # noqa: F401
    except ImportError:
        return False
    return True


def deadline_alert(
    *,
    reference: str,
    interval: timedelta,
    notifier: type | str,
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
) -> Any:
    """An ``airflow.sdk.DeadlineAlert`` calling ``notifier(**kwargs)`` when a run misses its deadline.

    :param reference: ``dagrun_queued_at`` or ``dagrun_logical_date`` (Airflow's ``DeadlineReference``).
    :param interval: how long after the reference the run must be done (positive).
    :param notifier: a ``BaseNotifier`` subclass implementing ``async_notify``, or its import path.
    :param kwargs: the notifier's constructor kwargs (JSON-able: they are serialized with the DAG).
    :param name: the alert's name.
    """
    if reference not in DEADLINE_REFERENCES:
        raise ValueError(f"reference={reference!r}: expected one of {', '.join(DEADLINE_REFERENCES)}")
    if not isinstance(interval, timedelta) or interval <= timedelta(0):
        raise ValueError(f"interval={interval!r}: expected a positive duration")
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    alert_kwargs: dict[str, Any] = {
        "reference": getattr(DeadlineReference, reference.upper()),
        "interval": interval,
        "callback": AsyncCallback(notifier, kwargs=dict(kwargs or {})),
    }
    if name is not None:
        alert_kwargs["name"] = name
    return DeadlineAlert(**alert_kwargs)
