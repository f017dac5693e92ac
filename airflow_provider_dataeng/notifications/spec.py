"""A notifier as a config names it (class path + kwargs), an SLA breach (a Deadline Alert), and building them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from airflow_provider_dataeng.specs import DottedPath, Duration, SharedModel
from airflow_provider_dataeng.values import import_path

DEADLINE_REFERENCES = ("dagrun_queued_at", "dagrun_logical_date")
DeadlineReferenceName = Literal["dagrun_queued_at", "dagrun_logical_date"]


class NotifierSpec(SharedModel):
    """An Airflow notifier (a ``BaseNotifier`` subclass) and its keyword arguments."""

    notifier: DottedPath = Field(
        description="Notifier class path, e.g. airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier"
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (connection ids, not secrets)")


class SlaBreachSpec(NotifierSpec):
    """Notify when a DAG run is not finished ``after`` its reference time (an Airflow Deadline Alert)."""

    after: Duration = Field(description="How long after the reference time the run must be done")
    reference: DeadlineReferenceName = Field(
        default="dagrun_queued_at", description="dagrun_queued_at (when the run was queued) or dagrun_logical_date"
    )


def make_notifier(spec: NotifierSpec | list[NotifierSpec]) -> Any:
    """Import the notifier class (only now) and instantiate it with its kwargs (a list gives a list)."""
    if isinstance(spec, list):
        return [make_notifier(item) for item in spec]
    return import_path(spec.notifier)(**spec.kwargs)
