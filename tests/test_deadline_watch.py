"""Deadline Alerts before Airflow 3.1: the deadline arithmetic, the watcher task the factory adds, and the
trigger's decisions (alert once when a deadline passes first, quiet when the run finishes first), with the
real SlaWebhookNotifier POSTing to a real HTTP endpoint.

The trigger's one Airflow call (``RuntimeTaskInstance.get_task_states``, answered by the triggerer) is
replaced here by a scripted sequence of states; tests/test_deadline_airflow.py runs the real thing under the
real scheduler and triggerer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dataeng.factory import builder as builder_mod
from airflow_provider_dataeng.factory.folder import build_dags
from airflow_provider_dataeng.freshness import deadline as freshness_deadline
from airflow_provider_dataeng.notifications import deadline_watch
from airflow_provider_dataeng.notifications.deadline import deadline_alerts_supported
from airflow_provider_dataeng.notifications.deadline_watch import (
    WATCH_TASK_ID,
    alert_context,
    deadline_time,
    reference_time,
    send_alert,
    unfinished_tasks,
)
from airflow_provider_dataeng.notifications.spec import SlaBreachSpec
from airflow_provider_dataeng.triggers.deadline_watch import DeadlineWatchTrigger
from devstack.webhook_receiver import webhook_receiver

T0 = datetime(2024, 3, 1, 0, 0, tzinfo=timezone.utc)
WEBHOOK = "airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier"


# -- the deadline instant ---------------------------------------------------------------------------------------
def test_logical_date_reference_is_the_logical_date_or_run_after_for_a_manual_run():
    scheduled = {"logical_date": T0, "run_after": T0 + timedelta(days=1), "start_date": T0 + timedelta(days=1, minutes=3)}
    assert reference_time("dagrun_logical_date", scheduled) == T0
    manual = {"logical_date": None, "run_after": "2024-03-05T10:00:00+00:00", "start_date": "2024-03-05T10:00:02+00:00"}
    assert reference_time("dagrun_logical_date", manual) == datetime(2024, 3, 5, 10, tzinfo=timezone.utc)


def test_queued_at_reference_uses_queued_at_else_the_run_start():
    run = {"logical_date": T0, "run_after": T0, "start_date": "2024-03-01T00:07:00+00:00"}
    assert reference_time("dagrun_queued_at", run) == T0 + timedelta(minutes=7)  # Airflow 3.0's context
    assert reference_time("dagrun_queued_at", {**run, "queued_at": T0 + timedelta(minutes=5)}) == T0 + timedelta(minutes=5)
    naive = reference_time("dagrun_queued_at", {"start_date": "2024-03-01T00:07:00"})
    assert naive.tzinfo is not None and naive == T0 + timedelta(minutes=7)


def test_deadline_is_reference_plus_after_and_bad_input_is_refused():
    spec = SlaBreachSpec(notifier=WEBHOOK, after="6h", reference="dagrun_logical_date")
    assert deadline_time(spec, {"logical_date": T0, "run_after": T0}) == T0 + timedelta(hours=6)
    with pytest.raises(ValueError, match="reference='start'"):
        reference_time("start", {"logical_date": T0})
    with pytest.raises(ValueError, match="has none of queued_at, start_date, run_after"):
        reference_time("dagrun_queued_at", {"logical_date": T0})


def test_unfinished_tasks_are_those_that_can_still_run():
    states = {"extract": "success", "check": "up_for_retry", "publish": None, "dbt_0": "running", "dbt_1": "skipped",
              "late": "deferred", "gone": "removed", "down": "upstream_failed", "bad": "failed", WATCH_TASK_ID: "deferred"}
    assert unfinished_tasks(states, exclude=[WATCH_TASK_ID]) == ["check", "dbt_0", "late", "publish"]
    assert unfinished_tasks({"a": "success", WATCH_TASK_ID: "running"}, exclude=[WATCH_TASK_ID]) == []


# -- the notifier call ------------------------------------------------------------------------------------------
def _context(unfinished: list[str]) -> dict[str, Any]:
    return alert_context(
        dag_run={"dag_id": "shop_daily", "run_id": "manual__2024-03-01T00:00:00+00:00", "logical_date": None,
                 "run_after": T0},
        deadline={"id": "sla_breach[0]", "name": "sla_breach[0]", "deadline_time": "2024-03-01T06:00:00+00:00"},
        unfinished=unfinished)


def test_send_alert_posts_the_dag_run_deadline_and_unfinished_tasks():
    with webhook_receiver() as rx:
        asyncio.run(send_alert(WEBHOOK, {"webhook_url": rx.url + "/sla", "table": "raw.orders",
                                         "sla": "published within 6h"}, _context(["publish", "dbt"])))
        (body,) = rx.payloads()
    assert body["event"] == "deadline_missed" and body["dag_id"] == "shop_daily"
    assert body["run_id"] == "manual__2024-03-01T00:00:00+00:00"
    assert body["deadline_time"] == "2024-03-01T06:00:00+00:00" and body["unfinished_tasks"] == ["publish", "dbt"]
    assert body["text"].endswith("unfinished: publish, dbt") and "[deadline missed] raw.orders" in body["text"]


def test_send_alert_renders_templates_and_runs_a_sync_notifier():
    """A notifier with only ``notify`` (no ``async_notify``) runs in a thread; its templates see the context."""
    with webhook_receiver() as rx:
        asyncio.run(send_alert(f"{__name__}.SyncOnlyNotifier",
                               {"url": rx.url, "text": "{{ dag_run.dag_id }} late: {{ unfinished_tasks | join(',') }}"},
                               _context(["publish"])))
        assert rx.payloads() == [{"text": "shop_daily late: publish"}]


class SyncOnlyNotifier(__import__("airflow.providers.common.compat.sdk", fromlist=["BaseNotifier"]).BaseNotifier):
    """A third-party style notifier: blocking ``notify`` only."""

    template_fields = ("text",)

    def __init__(self, url: str, text: str) -> None:
        super().__init__()
        self.url, self.text = url, text

    def notify(self, context: Any) -> None:
        import urllib.request

        request = urllib.request.Request(self.url, data=json.dumps({"text": self.text}).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()


# -- the trigger's decisions ------------------------------------------------------------------------------------
class ScriptedTrigger(DeadlineWatchTrigger):
    """The trigger with a scripted clock and scripted task states (the triggerer answers these for real)."""

    script: list[Any]
    clock: datetime

    async def task_states(self) -> dict[str, Any]:
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step

    def now(self) -> datetime:
        return self.clock


def _trigger(rx_url: str, script: list[Any], *, deadlines: list[datetime], clock: datetime) -> ScriptedTrigger:
    trigger = ScriptedTrigger(
        dag_id="shop_daily", run_id="manual__1", watch_task_id=WATCH_TASK_ID,
        dag_run={"dag_id": "shop_daily", "run_id": "manual__1", "run_after": T0.isoformat()},
        alerts=[{"name": f"sla_breach[{i}]", "deadline_time": d.isoformat(), "reference": "dagrun_queued_at",
                 "interval": "1h", "notifier": WEBHOOK, "kwargs": {"webhook_url": f"{rx_url}/{i}"}}
                for i, d in enumerate(deadlines)],
        poll_interval=0.01, leaf_task_ids=["cleanup"])
    trigger.script, trigger.clock = script, clock
    return trigger


async def _events(trigger: ScriptedTrigger, advance: timedelta) -> list[Any]:
    """Run the trigger, moving its clock by ``advance`` at every poll."""
    events = []

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.005)
            trigger.clock += advance

    ticker = asyncio.create_task(tick())
    try:
        async for event in trigger.run():
            events.append(event)
    finally:
        ticker.cancel()
    return events


RUNNING = {"slow": "running", WATCH_TASK_ID: "deferred"}
DONE = {"slow": "success", "cleanup": "success", WATCH_TASK_ID: "deferred"}
FAILED = {"slow": "failed", "cleanup": "upstream_failed", WATCH_TASK_ID: "deferred"}


def test_a_deadline_that_passes_first_is_notified_once_and_the_watcher_succeeds():
    with webhook_receiver() as rx:
        trigger = _trigger(rx.url, [RUNNING], deadlines=[T0 + timedelta(hours=1)], clock=T0)
        (event,) = asyncio.run(_events(trigger, timedelta(minutes=7)))
        (request,) = rx.requests
    assert type(event).__name__ == "TaskSuccessEvent"  # ends in the triggerer: no worker slot to finish
    assert event.xcoms == {"return_value": {"missed": ["sla_breach[0]"], "notified": ["sla_breach[0]"],
                                            "errors": [], "unfinished": ["slow"], "failed_tasks": []}}
    assert request["path"] == "/0" and request["json"]["unfinished_tasks"] == ["slow"]
    assert request["json"]["dag_id"] == "shop_daily" and request["json"]["run_id"] == "manual__1"


def test_a_run_that_finishes_first_gets_no_alert():
    with webhook_receiver() as rx:
        trigger = _trigger(rx.url, [RUNNING, RUNNING, DONE], deadlines=[T0 + timedelta(hours=1)], clock=T0)
        (event,) = asyncio.run(_events(trigger, timedelta(seconds=1)))
        assert rx.requests == []
    assert event.xcoms["return_value"]["missed"] == [] and event.xcoms["return_value"]["unfinished"] == []


def test_a_run_that_fails_first_is_alerted_at_once_for_every_pending_deadline():
    """It cannot succeed by its deadline (Airflow 3.1+ alerts such a run too, at the deadline instant)."""
    with webhook_receiver() as rx:
        trigger = _trigger(rx.url, [RUNNING, FAILED], deadlines=[T0 + timedelta(hours=1), T0 + timedelta(hours=2)],
                           clock=T0)
        (event,) = asyncio.run(_events(trigger, timedelta(seconds=1)))
        bodies = rx.payloads()
    assert [b["failed_tasks"] for b in bodies] == [["cleanup", "slow"], ["cleanup", "slow"]]
    assert all(b["unfinished_tasks"] == [] and "the run failed: cleanup, slow" in b["text"] for b in bodies)
    assert event.xcoms["return_value"]["failed_tasks"] == ["cleanup", "slow"]


def test_a_failed_task_that_is_not_a_leaf_does_not_make_an_alert():
    """``cleanup`` (trigger_rule all_done) succeeded after ``slow`` failed: the run succeeds, no alert."""
    with webhook_receiver() as rx:
        trigger = _trigger(rx.url, [{**FAILED, "cleanup": "success"}], deadlines=[T0 + timedelta(hours=1)], clock=T0)
        (event,) = asyncio.run(_events(trigger, timedelta(seconds=1)))
        assert rx.requests == []
    assert event.xcoms["return_value"]["missed"] == []


def test_mapped_leaf_instances_count_as_the_leaf():
    assert deadline_watch.failed_tasks({"load_0": "success", "load_1": "failed"}, ["load"]) == ["load_1"]
    assert deadline_watch.failed_tasks({"load_x_1": "failed"}, ["load"]) == []


def test_each_deadline_fires_once_in_order_and_unreadable_states_never_alert():
    with webhook_receiver() as rx:
        script = [RuntimeError("API restarting"), {"other_dag_task": "running"}, RUNNING, RUNNING, RUNNING, DONE]
        trigger = _trigger(rx.url, script, deadlines=[T0 + timedelta(minutes=30), T0 + timedelta(minutes=1)],
                           clock=T0 + timedelta(minutes=2))  # the first read is already past the 1 min deadline
        (event,) = asyncio.run(_events(trigger, timedelta(minutes=20)))
        paths = [r["path"] for r in rx.requests]
    assert paths == ["/1", "/0"]
    assert event.xcoms["return_value"]["missed"] == ["sla_breach[1]", "sla_breach[0]"]


def test_a_failing_notifier_is_reported_and_the_watcher_still_succeeds():
    with webhook_receiver(status=500) as rx:
        trigger = _trigger(rx.url, [RUNNING], deadlines=[T0], clock=T0)
        (event,) = asyncio.run(_events(trigger, timedelta(minutes=1)))
        assert len(rx.requests) == 1
    assert event.xcoms["return_value"]["errors"] == ["sla_breach[0]"]
    assert event.xcoms["return_value"]["notified"] == []


def test_trigger_serializes_to_an_importable_path_and_its_own_arguments():
    """What the triggerer does with it: import the class path, build it from the (JSON-stored) kwargs."""
    from airflow_provider_dataeng.values import import_path

    trigger = DeadlineWatchTrigger(dag_id="d", run_id="r", watch_task_id=WATCH_TASK_ID, dag_run={"dag_id": "d"},
                                   alerts=[{"name": "n", "deadline_time": T0.isoformat(), "notifier": WEBHOOK}],
                                   poll_interval=2, leaf_task_ids=["a"])
    path, kwargs = trigger.serialize()
    assert import_path(path) is DeadlineWatchTrigger
    assert import_path(path)(**json.loads(json.dumps(kwargs))).serialize() == (path, kwargs)


def test_the_poll_interval_comes_from_the_dataeng_setting(monkeypatch: pytest.MonkeyPatch):
    from airflow.sdk import DAG

    with DAG("poll_probe", schedule=None, start_date=T0) as dag:
        watcher = deadline_watch.add_deadline_watch(dag, [SlaBreachSpec(notifier=WEBHOOK, after="1h")])
    monkeypatch.setenv("AIRFLOW__DATAENG__DEADLINE_WATCH_POLL_INTERVAL", "15")
    assert watcher.poll_seconds() == 15.0
    monkeypatch.setenv("AIRFLOW__DATAENG__DEADLINE_WATCH_POLL_INTERVAL", "0")
    with pytest.raises(ValueError, match="deadline_watch_poll_interval must be positive"):
        watcher.poll_seconds()


# -- the factory and the Python helper --------------------------------------------------------------------------
@pytest.fixture
def without_native_deadlines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on Airflow 3.0 (no-op there, where it is already so)."""
    monkeypatch.setattr(builder_mod, "deadline_alerts_supported", lambda: False)
    monkeypatch.setattr(freshness_deadline, "deadline_alerts_supported", lambda: False)
    yield


def _config(tmp_path: Path, tasks: dict[str, Any]) -> Path:
    (tmp_path / "shop_daily.yaml").write_text(json.dumps({
        "schedule": "@daily", "start_date": "2024-01-01",
        "notifications": {"sla_breach": [
            {"notifier": WEBHOOK, "kwargs": {"table": "raw.orders"}, "after": "6h", "reference": "dagrun_logical_date"},
            {"notifier": WEBHOOK, "after": "90m"},
        ]},
        "tasks": tasks,
    }))
    return tmp_path


BASH = "airflow.providers.standard.operators.bash.BashOperator"


def test_factory_adds_one_watcher_without_upstream_or_downstream(tmp_path: Path, without_native_deadlines: None):
    folder = _config(tmp_path, {"a": {"operator": BASH, "kwargs": {"bash_command": "true"}},
                                "b": {"operator": BASH, "kwargs": {"bash_command": "true"}, "depends_on": ["a"]}})
    dag = build_dags(str(folder)).dags["shop_daily"]
    watcher = dag.task_dict[WATCH_TASK_ID]
    assert not watcher.upstream_task_ids and not watcher.downstream_task_ids
    assert watcher.retries == 0 and watcher.priority_weight == 1000
    resources = watcher.executor_config["pod_override"].spec.containers[0].resources  # the pipeline's pod
    assert resources.requests == resources.limits and {"cpu", "memory"} <= set(resources.requests)
    assert not getattr(dag, "deadline", None)
    dag_run = {"dag_id": "shop_daily", "run_id": "scheduled__2024-03-01T00:00:00+00:00", "logical_date": T0,
               "run_after": T0 + timedelta(days=1), "start_date": T0 + timedelta(days=1, seconds=3)}
    alerts = watcher.alerts(dag_run)
    assert [(a["name"], a["deadline_time"]) for a in alerts] == [
        ("sla_breach[0]", "2024-03-01T06:00:00+00:00"), ("sla_breach[1]", "2024-03-02T01:30:03+00:00")]
    assert alerts[0]["kwargs"] == {"table": "raw.orders"} and alerts[0]["notifier"] == WEBHOOK


def test_a_task_named_like_the_watcher_keeps_its_name(tmp_path: Path, without_native_deadlines: None):
    folder = _config(tmp_path, {WATCH_TASK_ID: {"operator": BASH, "kwargs": {"bash_command": "true"}}})
    dag = build_dags(str(folder)).dags["shop_daily"]
    assert type(dag.task_dict[WATCH_TASK_ID]).__name__ == "BashOperator"
    assert type(dag.task_dict[f"{WATCH_TASK_ID}_2"]).__name__ == "DeadlineWatchOperator"


@pytest.mark.skipif(not deadline_alerts_supported(), reason="native Deadline Alerts need Airflow 3.1+")
def test_with_native_deadline_alerts_no_watcher_is_added(tmp_path: Path):
    dag = build_dags(str(_config(tmp_path, {"a": {"operator": BASH, "kwargs": {"bash_command": "true"}}}))).dags[
        "shop_daily"]
    assert WATCH_TASK_ID not in dag.task_dict and len(dag.deadline) == 2


def test_add_freshness_deadline_falls_back_to_one_watcher(without_native_deadlines: None):
    from airflow.sdk import DAG

    with DAG("fresh_probe", schedule="@daily", start_date=T0) as dag:
        first = freshness_deadline.add_freshness_deadline(dag, table="raw.orders", error_after="6h",
                                                         notifier_kwargs={"webhook_url": "http://hooks.example/x"})
        second = freshness_deadline.add_freshness_deadline(dag, table="raw.customers", error_after="1h")
    assert first is second and [t.task_id for t in dag.tasks] == [WATCH_TASK_ID]
    alerts = first.alerts({"dag_id": "fresh_probe", "run_id": "r", "logical_date": T0, "run_after": T0,
                           "start_date": T0 + timedelta(seconds=5)})
    assert [a["name"] for a in alerts] == ["freshness:raw.orders", "freshness:raw.customers"]
    assert alerts[0]["kwargs"] == {"table": "raw.orders", "sla": "finished within 6h of queued_at",
                                   "webhook_url": "http://hooks.example/x"}
    assert alerts[1]["deadline_time"] == "2024-03-01T01:00:05+00:00"


def test_the_watcher_refuses_bad_deadlines():
    from airflow.sdk import DAG

    with DAG("bad_watch", schedule=None, start_date=T0) as dag, pytest.raises(ValueError):
        deadline_watch.add_deadline_watch(dag, [])
