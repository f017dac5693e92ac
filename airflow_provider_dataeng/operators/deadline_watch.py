"""DeadlineWatchOperator: the ``sla_deadline_watch`` task that gives Airflow < 3.1 Deadline Alerts.

Added by the factory (``notifications.sla_breach``) and by
:func:`~airflow_provider_dataeng.freshness.deadline.add_freshness_deadline` only when the installed Airflow
has no native Deadline Alerts; see :mod:`airflow_provider_dataeng.notifications.deadline_watch`. It has no
upstream and no downstream: it starts with the run, computes the deadlines, and defers at once to
:class:`~airflow_provider_dataeng.triggers.deadline_watch.DeadlineWatchTrigger`, which ends the task in the
triggerer (no worker slot is held while it waits, none is needed to finish).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_dataeng.durations import format_duration
from airflow_provider_dataeng.notifications.deadline_watch import (
    POLL_INTERVAL_SETTING,
    deadline_time,
    read_watched,
)

# Run before the pipeline's own tasks when slots are short: a late start delays nothing but the alert.
WATCH_PRIORITY = 1000


def _run_facts(dag_run: Any) -> dict[str, Any]:
    """The run's identity and reference times (JSON-able) from the task context's ``dag_run``."""
    facts: dict[str, Any] = {}
    for key in ("dag_id", "run_id", "run_type", "logical_date", "run_after", "queued_at", "start_date",
                "data_interval_start", "data_interval_end"):
        value = dag_run.get(key) if isinstance(dag_run, Mapping) else getattr(dag_run, key, None)
        value = getattr(value, "value", value)  # enums (run_type)
        facts[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return facts


class DeadlineWatchOperator(BaseOperator):
    """Notify when this run is not finished by its deadline(s) (Airflow < 3.1; an alert, never a failure).

    :param deadlines: the deadlines as stored by
        :func:`~airflow_provider_dataeng.notifications.deadline_watch.watched` (an ``sla_breach`` entry:
        ``notifier``, ``kwargs``, ``after`` in seconds, ``reference``, and a ``name``).
    :param poll_interval: seconds between two reads of the run's task states in the triggerer (the run ends
        at most this long after its last real task); ``None``: ``[dataeng] deadline_watch_poll_interval``
        (default 5), read when the task runs.
    """

    template_fields: Sequence[str] = ()  # notifier kwargs are rendered by the notifier, with the alert context
    ui_color = "#fff3e0"
    is_deadline_watch = True

    def __init__(self, *, deadlines: list[dict[str, Any]], poll_interval: float | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        kwargs.setdefault("priority_weight", WATCH_PRIORITY)
        kwargs.setdefault("weight_rule", "absolute")
        kwargs.setdefault("doc_md", "Deadline Alerts for this Airflow (before 3.1): notifies when the run is not "
                                    "finished in time; never fails the run.")
        super().__init__(**kwargs)
        if not deadlines:
            raise ValueError(f"{self.task_id}: deadlines: expected at least one")
        if poll_interval is not None and poll_interval <= 0:
            raise ValueError(f"{self.task_id}: poll_interval={poll_interval!r}: expected a positive number")
        for i, entry in enumerate(deadlines):
            read_watched(entry, i)  # validate at parse time
        self.deadlines = [dict(d) for d in deadlines]
        self.poll_interval = poll_interval

    def poll_seconds(self) -> float:
        """``poll_interval``, else the ``[dataeng]`` setting (a positive number)."""
        if self.poll_interval is not None:
            return float(self.poll_interval)
        from airflow_provider_dataeng import settings

        value = settings.get(POLL_INTERVAL_SETTING)
        if value <= 0:
            raise ValueError(f"[dataeng] {POLL_INTERVAL_SETTING} must be positive, found {value!r}")
        return float(value)

    def alerts(self, dag_run: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Each deadline of this run: name, instant, notifier and its kwargs (what the trigger needs)."""
        out = []
        for i, entry in enumerate(self.deadlines):
            name, spec = read_watched(entry, i)
            out.append({
                "name": name,
                "deadline_time": deadline_time(spec, dag_run).isoformat(),
                "reference": spec.reference,
                "interval": format_duration(spec.after),
                "notifier": spec.notifier,
                "kwargs": dict(spec.kwargs),
            })
        return out

    def leaf_task_ids(self) -> list[str]:
        """The DAG's leaves other than this task (Airflow fails a run when one of them failed)."""
        leaves = getattr(self.dag, "leaves", None) or []
        return sorted(t.task_id for t in leaves if t.task_id != self.task_id)

    def execute(self, context: Any) -> None:
        from airflow_provider_dataeng.triggers.deadline_watch import DeadlineWatchTrigger

        run = _run_facts(context["dag_run"])
        alerts = self.alerts(run)
        for alert in alerts:
            self.log.info("Deadline %s: %s / %s must be finished by %s (%s after %s); notifier %s", alert["name"],
                          run["dag_id"], run["run_id"], alert["deadline_time"], alert["interval"],
                          alert["reference"].removeprefix("dagrun_"), alert["notifier"])
        self.defer(
            trigger=DeadlineWatchTrigger(dag_id=run["dag_id"], run_id=run["run_id"], watch_task_id=self.task_id,
                                         dag_run=run, alerts=alerts, poll_interval=self.poll_seconds(),
                                         leaf_task_ids=self.leaf_task_ids()),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Only reached when a trigger event resumes the task (the trigger normally ends it itself)."""
        self.log.info("Deadline watch finished: %s", event)
        return event


__all__ = ["DeadlineWatchOperator"]
