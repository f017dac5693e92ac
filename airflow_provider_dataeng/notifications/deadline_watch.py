"""Deadline Alerts for Airflow < 3.1: a deferrable watcher task per DAG (the engine side, no Airflow operator).

Airflow 3.1+ has native Deadline Alerts (:mod:`.deadline`). Airflow 3.0 has none, so the same config
(``notifications.sla_breach``, :func:`~airflow_provider_dataeng.freshness.deadline.add_freshness_deadline`)
adds one task instead, ``sla_deadline_watch`` (no upstream, no downstream), run by
:class:`~airflow_provider_dataeng.operators.deadline_watch.DeadlineWatchOperator`:

1. it starts with the run, computes each deadline like the native reference (:func:`deadline_time`) and
   defers at once (no worker slot is held while it waits);
2. :class:`~airflow_provider_dataeng.triggers.deadline_watch.DeadlineWatchTrigger` polls the states of the
   run's other tasks in the triggerer; when all are finished first, the watcher ends quietly (success);
3. when a deadline passes first, the trigger calls that deadline's notifier exactly once, in the triggerer as
   the native alert does, with a context naming the DAG, the run, the deadline and the unfinished tasks
   (:func:`alert_context`), then the watcher succeeds: an alert, never a failure of the run;
4. when the run ends failed (a leaf task failed) before its deadline, it cannot succeed by then: the notifiers
   are called at once, with ``failed_tasks``. Airflow 3.1+ alerts such a run too (it prunes the deadlines of
   successful runs only), at the deadline instant; the watcher cannot wait that long without holding the
   run open, so it alerts when the run fails.

This module holds the parts without Airflow's runtime: the deadline arithmetic, which tasks are unfinished,
the alert context and calling a notifier.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_dataeng.notifications.spec import DEADLINE_REFERENCES, SlaBreachSpec
from airflow_provider_dataeng.values import import_path

log = logging.getLogger(__name__)

WATCH_TASK_ID = "sla_deadline_watch"
WATCH_OPERATOR = "airflow_provider_dataeng.operators.deadline_watch.DeadlineWatchOperator"
POLL_INTERVAL_SETTING = "deadline_watch_poll_interval"
"""``[dataeng] deadline_watch_poll_interval``: seconds between two reads of the run's task states (default 5;
the run ends at most this long after its last task)."""

# Task instance states after which a task will not run again in this run (retries are not terminal).
TERMINAL_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


def _aware(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def reference_time(reference: str, dag_run: Mapping[str, Any]) -> datetime:
    """The instant a deadline counts from, as the native ``DeadlineReference`` of that name.

    :param reference: ``dagrun_logical_date`` or ``dagrun_queued_at``.
    :param dag_run: the run's ``logical_date``, ``run_after``, ``queued_at`` and ``start_date`` (datetimes or
        ISO strings; missing ones are ``None``).

    ``dagrun_logical_date`` is the logical date; a run without one (the UI's Trigger button, the API without
    a logical date) counts from ``run_after``, the time it was triggered. ``dagrun_queued_at`` is when the run
    was queued; Airflow 3.0's task context does not carry ``queued_at``, so there it is the run's start (the
    two differ only while a run waits behind ``max_active_runs``), else ``run_after``.
    """
    if reference not in DEADLINE_REFERENCES:
        raise ValueError(f"reference={reference!r}: expected one of {', '.join(DEADLINE_REFERENCES)}")
    keys = ("logical_date", "run_after") if reference == "dagrun_logical_date" else (
        "queued_at", "start_date", "run_after")
    for key in keys:
        value = _aware(dag_run.get(key))
        if value is not None:
            return value
    raise ValueError(f"the run has none of {', '.join(keys)}: cannot compute a {reference} deadline")


def deadline_time(spec: SlaBreachSpec, dag_run: Mapping[str, Any]) -> datetime:
    """When a run must be finished: its reference time plus ``spec.after``."""
    if spec.after <= timedelta(0):
        raise ValueError(f"after={spec.after!r}: expected a positive duration")
    return reference_time(spec.reference, dag_run) + spec.after


def unfinished_tasks(states: Mapping[str, str | None], exclude: Iterable[str] = ()) -> list[str]:
    """The tasks (``task_id`` or ``task_id_<map_index>`` as the execution API names them) not yet finished.

    A task waiting for a retry, deferred, queued or not yet scheduled (state ``None``) is unfinished.
    """
    skip = set(exclude)
    return sorted(key for key, state in states.items()
                  if key not in skip and str(getattr(state, "value", state)) not in TERMINAL_STATES)


FAILED_STATES = frozenset({"failed", "upstream_failed"})


def _is_task(key: str, task_id: str) -> bool:
    """``key`` is ``task_id`` or one of its mapped instances (``task_id_<map_index>``)."""
    return key == task_id or (key.startswith(f"{task_id}_") and key[len(task_id) + 1:].isdigit())


def failed_tasks(states: Mapping[str, str | None], leaves: Iterable[str]) -> list[str]:
    """Every failed or upstream-failed task when one of them is a leaf (then the finished run is ``failed``,
    Airflow's rule for a run), else ``[]``."""
    failed = sorted(key for key, state in states.items() if str(getattr(state, "value", state)) in FAILED_STATES)
    leaves = list(leaves)
    return failed if any(_is_task(key, t) for key in failed for t in leaves) else []


def alert_context(*, dag_run: Mapping[str, Any], deadline: Mapping[str, Any],
                  unfinished: list[str], failed: list[str] | None = None) -> dict[str, Any]:
    """The context a notifier gets when a watched deadline is missed.

    The same keys as Airflow 3.1+'s Deadline Alert callback (``dag_run`` with ``dag_id`` and ``dag_run_id``,
    ``deadline`` with ``deadline_time``), so one notifier works on every version, plus ``unfinished_tasks``
    and, for a run that failed before its deadline, ``failed_tasks``.
    """
    run = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dag_run.items()}
    run.setdefault("dag_run_id", run.get("run_id"))
    return {
        "dag_run": run,
        "deadline": dict(deadline),
        "unfinished_tasks": list(unfinished),
        **({"failed_tasks": list(failed)} if failed else {}),
        "dag": None,  # no DAG object in the triggerer (Airflow 3.0's notifiers read context["dag"] to render)
        "dag_id": run.get("dag_id"),
        "run_id": run.get("run_id") or run.get("dag_run_id"),
    }


def _overrides_async_notify(notifier: Any) -> bool:
    method = getattr(type(notifier), "async_notify", None)
    if method is None:
        return False
    for klass in type(notifier).__mro__:
        if "async_notify" in vars(klass):
            # BaseNotifier's own async_notify only raises NotImplementedError
            return klass.__name__ != "BaseNotifier"
    return False


async def send_alert(notifier: str | type, kwargs: Mapping[str, Any], context: dict[str, Any]) -> None:
    """Build the notifier (``notifier(**kwargs)``) and send ``context`` the way the native callback does.

    A ``BaseNotifier`` renders its template fields with the context, then ``async_notify`` runs when it has
    one (the recommended triggerer path), else its blocking ``notify`` runs in a thread. Any other callable
    is called with ``context=`` (awaited when it returns an awaitable). Errors propagate to the caller.
    """
    target = import_path(notifier) if isinstance(notifier, str) else notifier
    if inspect.isclass(target) and hasattr(target, "notify"):
        instance = target(**kwargs)
        instance._update_context(context)
        instance.render_template_fields(context)
        if _overrides_async_notify(instance):
            await instance.async_notify(context)
        else:
            await asyncio.to_thread(instance.notify, context)
        return
    result = target(**kwargs, context=context)
    if inspect.isawaitable(result):
        await result


def watched(spec: SlaBreachSpec, name: str | None = None) -> dict[str, Any]:
    """``spec`` as the watcher stores it: JSON-able, ``after`` in seconds, plus the alert's ``name``
    (read back with :func:`read_watched`)."""
    return {**spec.model_dump(mode="json", exclude={"after"}), "after": spec.after.total_seconds(), "name": name}


def read_watched(entry: Mapping[str, Any], index: int) -> tuple[str, SlaBreachSpec]:
    """The name (default ``sla_breach[<index>]``) and spec of a stored deadline."""
    fields = {k: v for k, v in entry.items() if k != "name"}
    return str(entry.get("name") or f"sla_breach[{index}]"), SlaBreachSpec.model_validate(fields)


def add_deadline_watch(dag: Any, specs: list[SlaBreachSpec], *, name: str | None = None,
                       poll_interval: float | None = None, **task_kwargs: Any) -> Any:
    """Add the watcher task for ``specs`` to ``dag`` (or extend the one already there); return it.

    ``name`` names the alerts (numbered when there are several; default ``sla_breach[i]``); ``poll_interval``
    ``None`` reads ``[dataeng] deadline_watch_poll_interval`` when the task runs; ``task_kwargs`` go to the
    operator (e.g. the factory's ``executor_config`` pod).

    The task id is ``sla_deadline_watch`` unless a task of the DAG already has it (then ``..._2`` and so on).
    The operator is reached by its import path: engines import no operator module.
    """
    def names() -> list[str | None]:
        if name is None:
            return [None] * len(specs)
        return [name if len(specs) == 1 else f"{name}[{i}]" for i in range(len(specs))]

    existing = [t for t in dag.tasks if getattr(t, "is_deadline_watch", False)]
    if existing:
        watcher = existing[0]
        watcher.deadlines = [*watcher.deadlines, *map(watched, specs, names())]
        return watcher
    task_id, n = WATCH_TASK_ID, 1
    while task_id in dag.task_dict:
        n += 1
        task_id = f"{WATCH_TASK_ID}_{n}"
    operator = import_path(WATCH_OPERATOR)
    return operator(task_id=task_id, dag=dag, deadlines=list(map(watched, specs, names())),
                    poll_interval=poll_interval, **task_kwargs)
