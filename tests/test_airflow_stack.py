"""The real-Airflow test tier itself: DAG files added to the running deployment are parsed, runs triggered
through the REST API as the UI's Trigger button does run under the scheduler (LocalExecutor), and a
deferred task is resumed by the real triggerer."""

from __future__ import annotations

import textwrap
import time
import uuid
from datetime import datetime

from devstack.airflow_stack import AirflowStack


def _dag_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_a_dag_file_added_to_the_folder_runs_when_triggered_without_a_logical_date(airflow_stack: AirflowStack):
    dag_id = _dag_id("stack_smoke")
    marker = uuid.uuid4().hex
    airflow_stack.add_dag_file(dag_id, textwrap.dedent(f"""
        from datetime import datetime

        from airflow.sdk import DAG, task

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

            @task
            def produce() -> dict:
                print("marker {marker}")
                return {{"n": 21}}

            @task
            def double(value: dict) -> int:
                return value["n"] * 2

            double(produce())
    """))
    airflow_stack.wait_dag(dag_id)

    run_id = airflow_stack.trigger(dag_id)

    assert airflow_stack.wait_run(dag_id, run_id) == "success", airflow_stack.report(dag_id, run_id)
    run = airflow_stack.run(dag_id, run_id)
    assert run["logical_date"] is None and run["run_type"] == "manual"
    assert airflow_stack.task_states(dag_id, run_id) == {"produce": "success", "double": "success"}
    xcom = airflow_stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/double/xcomEntries/return_value")
    assert xcom.status_code == 200 and xcom.json()["value"] in (42, "42"), xcom.text
    assert f"marker {marker}" in airflow_stack.task_log(dag_id, run_id, "produce")


def test_a_deferrable_sensor_is_deferred_to_the_triggerer_and_completes(airflow_stack: AirflowStack):
    dag_id = _dag_id("stack_deferral")
    airflow_stack.add_dag_file(dag_id, textwrap.dedent(f"""
        from datetime import datetime

        from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
        from airflow.sdk import DAG

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
            DateTimeSensorAsync(
                task_id="wait",
                target_time="{{{{ (macros.datetime.utcnow() + macros.timedelta(seconds=15)).isoformat() }}}}",
                poke_interval=1,
            )
    """))
    airflow_stack.wait_dag(dag_id)
    run_id = airflow_stack.trigger(dag_id)

    assert airflow_stack.wait_task_state(dag_id, run_id, "wait", {"deferred", "success", "failed"}) == "deferred"
    ti = _wait_claimed_by_triggerer(airflow_stack, dag_id, run_id, "wait")
    assert "DateTimeTrigger" in ti["trigger"]["classpath"], ti
    assert ti["triggerer_job"]["job_type"] == "TriggererJob", ti
    assert airflow_stack.wait_run(dag_id, run_id) == "success", airflow_stack.report(dag_id, run_id)

    ti = next(t for t in airflow_stack.task_instances(dag_id, run_id) if t["task_id"] == "wait")
    started, ended = (datetime.fromisoformat(ti[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    assert (ended - started).total_seconds() >= 14, ti  # it waited for the trigger's moment


def _wait_claimed_by_triggerer(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> dict:
    """The deferred task instance once a triggerer process has taken its trigger."""
    deadline = time.monotonic() + 30
    while True:
        ti = next(t for t in stack.task_instances(dag_id, run_id) if t["task_id"] == task_id)
        if ti["state"] != "deferred" or ti.get("triggerer_job") or time.monotonic() > deadline:
            return ti
        time.sleep(0.3)
