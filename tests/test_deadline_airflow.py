"""SLA deadlines (``notifications.sla_breach``) under the real scheduler, DAG processor, triggerer and API server
(issue 13 item 6), driven through the REST API, on every supported Airflow (.ci/run runs it on 3.0.6 too).

- Airflow 3.1+: the config becomes a native Deadline Alert; the scheduler queues the notifier in the triggerer.
- Airflow < 3.1: the same config adds the ``sla_deadline_watch`` task, which defers at once and calls the
  notifier from the triggerer when the deadline passes first.

Either way: a missed deadline POSTs exactly one ``deadline_missed`` payload naming the DAG and run to the
webhook receiver and the run goes on to its own state; a run that succeeds in time gets no alert; a run that
fails in time is alerted once (it did not deliver) and stays ``failed``: the state is that of its real tasks.
"""

from __future__ import annotations

import ast
import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dataeng.notifications.deadline import deadline_alerts_supported
from devstack.webhook_receiver import WebhookReceiver, webhook_receiver
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.airflow

NATIVE = deadline_alerts_supported()  # the components run in this interpreter's environment
WATCHER = "sla_deadline_watch"
NOTIFIER = "airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier"
BASH = "airflow.providers.standard.operators.bash.BashOperator"


def _config_dags(stack: Any, name: str, configs: dict[str, dict[str, Any]]) -> None:
    """Pipeline configs (one per DAG id) in a folder the components read, loaded by a factory DAG file."""
    folder = Path(stack.home) / "deadline_configs" / name
    folder.mkdir(parents=True)
    for dag_id, config in configs.items():
        (folder / f"{dag_id}.yaml").write_text(json.dumps(config))
    stack.add_dag_file(f"{name}.py", f'''
from airflow_provider_dataeng.factory.folder import build_dags

globals().update({{f"dag__{{k}}": v for k, v in build_dags({str(folder)!r}).dags.items()}})
''')
    for dag_id in configs:
        stack.wait_dag(dag_id)


def _sla(rx: WebhookReceiver, after: str) -> dict[str, Any]:
    return {"sla_breach": {"notifier": NOTIFIER, "after": after,
                           "kwargs": {"webhook_url": rx.url + "/sla", "table": "raw.orders",
                                      "sla": f"published within {after}"}}}


def _mine(rx: WebhookReceiver, dag_id: str) -> list[dict[str, Any]]:
    return [p for p in rx.payloads() if p.get("dag_id") == dag_id]


def test_missed_sla_deadline_calls_the_configured_notifier_once(airflow_stack: Any):
    dag_id = f"sla_missed_{uuid.uuid4().hex[:6]}"
    with webhook_receiver() as rx:
        _config_dags(airflow_stack, dag_id, {dag_id: {
            "description": "a run that cannot meet its 5 s SLA",
            "schedule": None, "start_date": "2024-01-01",
            "notifications": _sla(rx, "5s"),
            "tasks": {"slow": {"operator": BASH, "kwargs": {"bash_command": "sleep 40"}}},  # outlives the deadline
        }})
        run_id = airflow_stack.trigger(dag_id)
        if not NATIVE:  # the watcher waits in the triggerer, not in a worker slot, while the real task runs
            airflow_stack.wait_task_state(dag_id, run_id, WATCHER, ["deferred"], timeout=120)
            assert airflow_stack.task_states(dag_id, run_id)["slow"] in ("queued", "running")
        (body,) = wait_until(lambda: _mine(rx, dag_id), 120, "the deadline notifier's POST")
        assert body["event"] == "deadline_missed" and body["run_id"] == run_id
        assert body["table"] == "raw.orders" and body["sla"] == "published within 5s"
        assert "[deadline missed] raw.orders" in body["text"] and run_id in body["text"]
        if not NATIVE:
            assert body["unfinished_tasks"] == ["slow"]
            assert airflow_stack.task_states(dag_id, run_id)["slow"] == "running"  # alerted, not killed
        state = airflow_stack.wait_run(dag_id, run_id, timeout=180)
        assert state == "success", airflow_stack.report(dag_id, run_id)  # a deadline alerts, never fails a run
        assert len(_mine(rx, dag_id)) == 1
    if not NATIVE:
        watcher = next(ti for ti in airflow_stack.task_instances(dag_id, run_id) if ti["task_id"] == WATCHER)
        assert watcher["state"] == "success" and watcher["try_number"] == 1
        assert _watch_result(airflow_stack, dag_id, run_id)["notified"] == ["sla_breach[0]"]


def _watch_result(stack: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    """The watcher's XCom (Airflow 3.0's API returns it as the str() of the dict)."""
    value = stack.xcoms(dag_id, run_id)[WATCHER]
    return ast.literal_eval(value) if isinstance(value, str) else value


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_run_done_in_time_gets_no_alert_and_a_failed_run_cannot_meet_its_deadline(airflow_stack: Any):
    """Two runs with a 60 s deadline, both done well within it: the successful one gets no alert; the failed one
    (a real task exits 1) keeps its ``failed`` state and gets exactly one alert, since a failed run has not
    delivered (Airflow 3.1+ alerts it at the deadline; the watcher as soon as the run has failed, naming the
    failed tasks). ``max_active_tasks: 1``: a watcher that held its slot while deferred would stall the real
    tasks past the deadline."""
    suffix = uuid.uuid4().hex[:6]
    ok_id, failed_id = f"sla_met_ok_{suffix}", f"sla_met_failed_{suffix}"
    after = 60

    def config(rx: WebhookReceiver, tasks: dict[str, Any]) -> dict[str, Any]:
        return {"schedule": None, "start_date": "2024-01-01", "max_active_tasks": 1,
                "notifications": _sla(rx, f"{after}s"), "tasks": tasks}

    quick = {"operator": BASH, "kwargs": {"bash_command": "echo done"}, "retries": 0}
    with webhook_receiver() as rx:
        _config_dags(airflow_stack, f"sla_met_{suffix}", {
            ok_id: config(rx, {"quick": quick}),
            failed_id: config(rx, {"broken": {"operator": BASH, "kwargs": {"bash_command": "exit 1"}, "retries": 0},
                                   "after_broken": {**quick, "depends_on": ["broken"]}}),
        })
        runs = {dag_id: airflow_stack.trigger(dag_id) for dag_id in (ok_id, failed_id)}
        finals = {dag_id: airflow_stack.wait_run(dag_id, run_id, timeout=180) for dag_id, run_id in runs.items()}
        assert finals == {ok_id: "success", failed_id: "failed"}, [airflow_stack.report(d, r) for d, r in runs.items()]
        assert airflow_stack.task_states(failed_id, runs[failed_id])["after_broken"] == "upstream_failed"
        deadlines = {}
        for dag_id, run_id in runs.items():
            run = airflow_stack.run(dag_id, run_id)
            took = (_iso(run["end_date"]) - _iso(run["queued_at"])).total_seconds()
            assert took < after - 5, f"{dag_id} took {took:.0f}s: too slow for this test to mean anything"
            deadlines[dag_id] = _iso(run["queued_at"]).timestamp() + after
        if not NATIVE:
            assert _watch_result(airflow_stack, ok_id, runs[ok_id])["missed"] == []
            failed_result = _watch_result(airflow_stack, failed_id, runs[failed_id])
            assert failed_result["failed_tasks"] == ["after_broken", "broken"]
            assert failed_result["notified"] == ["sla_breach[0]"]
            assert _mine(rx, failed_id) and time.time() < deadlines[failed_id]  # alerted when it failed
        # Nothing more may arrive after the deadlines (a native alert left behind would fire then).
        time.sleep(max(0.0, max(deadlines.values()) - time.time()) + 10)
        assert _mine(rx, ok_id) == []
        (body,) = wait_until(lambda: _mine(rx, failed_id), 30, "the failed run's deadline alert")
        assert body["event"] == "deadline_missed" and body["run_id"] == runs[failed_id]
        if not NATIVE:
            assert body["failed_tasks"] == ["after_broken", "broken"] and body["unfinished_tasks"] == []
