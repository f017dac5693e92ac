"""Notifications: notifier class path + kwargs, on failure/success/retry and on SLA (deadline) breach."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from airflow_provider_dataeng.specs import DottedPath, Duration, StrictModel


def _as_list(value: Any) -> Any:
    """A single notifier mapping is a one-element list."""
    return value if isinstance(value, list) else [value]


class NotifierSpec(StrictModel):
    """An Airflow notifier (a ``BaseNotifier`` subclass) and its keyword arguments."""

    notifier: DottedPath = Field(
        description="Notifier class path, e.g. airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier"
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (connection ids, not secrets)")


class SlaBreachSpec(NotifierSpec):
    """Notify when a DAG run is not finished ``after`` its reference time (an Airflow Deadline Alert)."""

    after: Duration = Field(description="How long after the reference time the run must be done")
    reference: Literal["dagrun_queued_at", "dagrun_logical_date"] = Field(
        default="dagrun_queued_at", description="What 'after' counts from: the run being queued, or its logical date")


NotifierList = Annotated[list[NotifierSpec] | NotifierSpec, AfterValidator(_as_list)]


class TaskNotifications(StrictModel):
    """Task-level notifications (one notifier or a list for each event)."""

    on_failure: NotifierList | None = Field(default=None, description="Notifier(s) called when it fails")
    on_success: NotifierList | None = Field(default=None, description="Notifier(s) called when it succeeds")
    on_retry: NotifierList | None = Field(default=None, description="Notifier(s) called when a task is retried")


class Notifications(TaskNotifications):
    """Pipeline notifications: ``on_failure``/``on_success`` fire for the DAG run, ``on_retry`` for each task
    retry, ``sla_breach`` when a run misses its deadline."""

    sla_breach: Annotated[list[SlaBreachSpec] | SlaBreachSpec, AfterValidator(_as_list)] | None = Field(
        default=None, description="Deadline Alerts (Airflow 3.1+): notify when a run is not done in time")


def make_notifier(spec: NotifierSpec) -> Any:
    """Import the notifier class (only now) and instantiate it with its kwargs."""
    from airflow_provider_dataeng.factory.task_types import import_path

    cls = import_path(spec.notifier)
    return cls(**spec.kwargs)


def make_deadline(spec: SlaBreachSpec) -> Any:
    """An Airflow ``DeadlineAlert`` whose callback is the notifier (run by the triggerer)."""
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    reference = (
        DeadlineReference.DAGRUN_QUEUED_AT
        if spec.reference == "dagrun_queued_at"
        else DeadlineReference.DAGRUN_LOGICAL_DATE
    )
    return DeadlineAlert(
        reference=reference, interval=spec.after, callback=AsyncCallback(spec.notifier, kwargs=spec.kwargs)
    )
