"""DeadlineWatchTrigger: Deadline Alerts on Airflow < 3.1, in the triggerer.

Started by :class:`~airflow_provider_dataeng.operators.deadline_watch.DeadlineWatchOperator` (the
``sla_deadline_watch`` task the factory adds when native Deadline Alerts are missing). It reads the states
of the run's other tasks every ``poll_interval`` seconds through the Task SDK
(``RuntimeTaskInstance.get_task_states``, as the standard provider's ``WorkflowTrigger`` does) and sleeps
no longer than until the next deadline:

- every other task finished (success, failed, skipped, upstream_failed, removed) first: the watcher task
  ends successfully without going back to a worker (``TaskSuccessEvent``), no alert;
- a deadline passed while tasks are unfinished: that deadline's notifier is called once, here in the
  triggerer as a native Deadline Alert callback is, with the DAG, the run, the deadline and the unfinished
  tasks in its context; when no deadline is left the task ends successfully. A missed deadline is an
  alert, never a failure: the run's state is decided by its real tasks;
- every other task finished but a leaf failed (the run will be ``failed``): the run cannot succeed by its
  deadlines, so each one still pending is notified now, with ``failed_tasks`` in the context (Airflow 3.1+
  alerts a failed run too, at the deadline instant).

The XCom ``return_value`` of the watcher: ``{"missed": [deadline names], "notified": [names], "errors":
[names whose notifier raised], "unfinished": [task keys at the last read], "failed_tasks": [...]}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_dataeng.notifications.deadline_watch import (
    alert_context,
    failed_tasks,
    send_alert,
    unfinished_tasks,
)


class DeadlineWatchTrigger(BaseTrigger):
    """Wait for a run's other tasks to finish or its deadlines to pass; notify each missed deadline once.

    :param dag_id: the DAG.
    :param run_id: the run watched.
    :param watch_task_id: the watcher's own task id (not waited for).
    :param dag_run: the run's facts given to notifiers (``dag_id``, ``run_id``, ``logical_date``,
        ``run_after``, ``start_date``, ``run_type``: JSON-able values).
    :param alerts: one mapping per deadline: ``name``, ``deadline_time`` (ISO, aware), ``notifier`` (import
        path), ``kwargs`` (the notifier's), ``reference`` and ``interval`` (for the message).
    :param poll_interval: seconds between two reads of the task states.
    :param leaf_task_ids: the DAG's leaves other than the watcher (a failed one fails the run).
    """

    def __init__(
        self,
        *,
        dag_id: str,
        run_id: str,
        watch_task_id: str,
        dag_run: dict[str, Any],
        alerts: list[dict[str, Any]],
        poll_interval: float,
        leaf_task_ids: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.dag_id = dag_id
        self.run_id = run_id
        self.watch_task_id = watch_task_id
        self.dag_run = dict(dag_run)
        self.alerts = [dict(a) for a in alerts]
        self.poll_interval = float(poll_interval)
        self.leaf_task_ids = list(leaf_task_ids or [])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"dag_id": self.dag_id, "run_id": self.run_id, "watch_task_id": self.watch_task_id,
             "dag_run": self.dag_run, "alerts": self.alerts, "poll_interval": self.poll_interval,
             "leaf_task_ids": self.leaf_task_ids},
        )

    async def task_states(self) -> dict[str, Any]:
        """``{task key: state}`` of this run, read through the triggerer's Task SDK channel."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from asgiref.sync import sync_to_async

        by_run = await sync_to_async(RuntimeTaskInstance.get_task_states)(dag_id=self.dag_id, run_ids=[self.run_id])
        return dict((by_run or {}).get(self.run_id) or {})

    @staticmethod
    def now() -> datetime:
        return datetime.now(timezone.utc)

    async def _read_states(self) -> dict[str, Any] | None:
        """The run's task states, or ``None`` when they could not be read (tried again next poll)."""
        try:
            states = await self.task_states()
        except Exception as exc:  # the API busy or restarting: never alert on a read we do not trust
            self.log.warning("Could not read the task states of %s / %s: %s", self.dag_id, self.run_id, exc)
            return None
        if self.watch_task_id not in states:  # our own task is always there: this read is not the run's
            self.log.warning("The task states of %s / %s do not list %s; reading again", self.dag_id,
                             self.run_id, self.watch_task_id)
            return None
        return states

    async def _notify(self, alert: dict[str, Any], unfinished: list[str], failed: list[str]) -> bool:
        deadline = {k: alert.get(k) for k in ("name", "deadline_time", "reference", "interval")}
        deadline["id"] = alert.get("name")
        context = alert_context(dag_run=self.dag_run, deadline=deadline, unfinished=unfinished, failed=failed)
        if failed:
            self.log.warning("Deadline %s cannot be met: %s / %s failed before %s (failed: %s); calling %s",
                             alert["name"], self.dag_id, self.run_id, alert["deadline_time"], ", ".join(failed),
                             alert["notifier"])
        else:
            self.log.warning("Deadline %s missed: %s / %s not finished by %s; unfinished tasks: %s; calling %s",
                             alert["name"], self.dag_id, self.run_id, alert["deadline_time"],
                             ", ".join(unfinished), alert["notifier"])
        try:
            await send_alert(alert["notifier"], alert.get("kwargs") or {}, context)
        except Exception:
            self.log.exception("The notifier %s of deadline %s failed", alert["notifier"], alert["name"])
            return False
        return True

    async def run(self) -> AsyncIterator[TriggerEvent]:
        pending = sorted(self.alerts, key=lambda a: datetime.fromisoformat(a["deadline_time"]))
        missed: list[str] = []
        errors: list[str] = []  # deadlines whose notifier raised
        unfinished: list[str] | None = None
        run_failed: list[str] = []
        while True:
            states = await self._read_states()
            now = self.now()
            if states is not None:
                unfinished = unfinished_tasks(states, exclude=[self.watch_task_id])
                run_failed = [] if unfinished else failed_tasks(states, self.leaf_task_ids)
                if not unfinished and not run_failed:
                    self.log.info("Every task of %s / %s finished%s", self.dag_id, self.run_id,
                                  f"; missed: {', '.join(missed)}" if missed else " before its deadline(s)")
                    break
                while pending and (run_failed or datetime.fromisoformat(pending[0]["deadline_time"]) <= now):
                    alert = pending.pop(0)
                    missed.append(alert["name"])
                    if not await self._notify(alert, unfinished, run_failed):
                        errors.append(alert["name"])
                if not pending or run_failed:
                    break
            wait = self.poll_interval
            if pending and states is not None:  # an unread state waits a full poll, even past a deadline
                until = (datetime.fromisoformat(pending[0]["deadline_time"]) - now).total_seconds()
                wait = max(0.0, min(wait, until))
            await asyncio.sleep(wait)
        result = {"missed": missed, "notified": [m for m in missed if m not in errors], "errors": errors,
                  "unfinished": unfinished or [], "failed_tasks": run_failed}
        yield TaskSuccessEvent(xcoms={"return_value": result})
