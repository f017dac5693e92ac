"""Notifications in configs: notifiers on failure/success/retry and on SLA (deadline) breach."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from airflow_provider_dataeng.notifications.deadline import deadline_alert
from airflow_provider_dataeng.notifications.spec import NotifierSpec, SlaBreachSpec, make_notifier
from airflow_provider_dataeng.specs import SharedModel

__all__ = ["NotifierSpec", "Notifications", "SlaBreachSpec", "TaskNotifications", "make_deadline", "make_notifier"]


def _one_or_many(value: Any) -> Any:
    """A single notifier (a mapping, not a list of strings like ``values.as_list`` takes) is a one-element list."""
    return value if isinstance(value, list) else [value]


NotifierList = Annotated[list[NotifierSpec] | NotifierSpec, AfterValidator(_one_or_many)]


class TaskNotifications(SharedModel):
    """Task-level notifications (one notifier or a list for each event)."""

    on_failure: NotifierList | None = Field(default=None, description="Notifier(s) called when it fails")
    on_success: NotifierList | None = Field(default=None, description="Notifier(s) called when it succeeds")
    on_retry: NotifierList | None = Field(default=None, description="Notifier(s) called when a task is retried")


class Notifications(TaskNotifications):
    """Pipeline notifications: ``on_failure``/``on_success`` fire for the DAG run, ``on_retry`` for each task
    retry, ``sla_breach`` when a run misses its deadline."""

    sla_breach: Annotated[list[SlaBreachSpec] | SlaBreachSpec, AfterValidator(_one_or_many)] | None = Field(
        default=None,
        description="Notify when a run is not done in time (a Deadline Alert on Airflow 3.1+, the sla_deadline_watch "
                    "task before)")


def make_deadline(spec: SlaBreachSpec) -> Any:
    """The Deadline Alert of an ``sla_breach`` entry (the notifier runs in the triggerer)."""
    return deadline_alert(reference=spec.reference, interval=spec.after, notifier=spec.notifier, kwargs=spec.kwargs)
