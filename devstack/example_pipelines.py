"""The example pipelines (dags/configs) for one day under a real scheduler, driven through the REST API.

What a new deployment does: the DAGs are unpaused, the scheduler creates each daily extract DAG's run for
the last complete day (``catchup: false``), the extracts publish their tables, their asset events queue
``dbt_marts`` (scheduled on those assets) and the scheduler runs it. :func:`run_example_day` does exactly
that on an :class:`~devstack.airflow_stack.AirflowStack` whose ``shop_source`` holds the generated shop
(:mod:`devstack.shop`) and whose ``warehouse`` is empty, and reports what happened with timings.

Used by tests/test_example_pipelines.py, ``benchmarks/e2e.py`` and ``make demo``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from devstack.airflow_env import REPO_ROOT
from devstack.airflow_stack import FINAL_STATES, AirflowStack, AirflowStackError

CONFIG_DIR = REPO_ROOT / "dags" / "configs"
EXTRACT_TYPES = frozenset({"extract", "publish"})


@dataclass
class ExamplePipelines:
    """The example configs by role: extract DAGs, asset-scheduled dbt DAGs, the rest (monitoring)."""

    extract: list[str]
    dbt: list[str]
    other: list[str]


def discover(config_dir: Path = CONFIG_DIR) -> ExamplePipelines:
    """Read ``config_dir`` (defaults and files starting with ``_`` or ``.`` are not pipelines)."""
    extract, dbt, other = [], [], []
    for path in sorted(config_dir.glob("*.y*ml")):
        if path.stem in ("defaults", "_defaults") or path.name.startswith(("_", ".")):
            continue
        data = yaml.safe_load(path.read_text()) or {}
        tasks = data.get("tasks") if isinstance(data, dict) else None
        if not isinstance(tasks, dict):
            continue
        types = {str((task or {}).get("type")) for task in tasks.values()}
        dag_id = str(data.get("dag_id") or path.stem)
        (extract if types & EXTRACT_TYPES else dbt if "dbt" in types else other).append(dag_id)
    return ExamplePipelines(extract, dbt, other)


@dataclass
class RunOutcome:
    """One DAG run as the API reports it."""

    dag_id: str
    run_id: str
    run_type: str
    state: str
    data_interval: tuple[str | None, str | None]
    queued_at: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    tasks: dict[str, str | None] = field(default_factory=dict)
    last_task_end: datetime | None = None  # when its last task finished (the publish emits the asset event)

    @property
    def ok(self) -> bool:
        return self.state == "success"


@dataclass
class ExampleDay:
    """What :func:`run_example_day` saw: every run, and the timings the benchmark prints."""

    extract_runs: list[RunOutcome]
    dbt_runs: list[RunOutcome]
    extract_dags_s: float
    dbt_triggered_after_s: float | None
    total_s: float
    error: str | None = None

    @property
    def all_succeeded(self) -> bool:
        return (self.error is None and bool(self.extract_runs) and bool(self.dbt_runs)
                and all(r.ok for r in self.extract_runs + self.dbt_runs))

    def figures(self) -> dict[str, Any]:
        """The benchmark's JSON line."""
        return {"extract_dags_s": round(self.extract_dags_s, 1),
                "dbt_triggered_after_s": None if self.dbt_triggered_after_s is None
                else round(self.dbt_triggered_after_s, 1),
                "total_s": round(self.total_s, 1), "all_succeeded": self.all_succeeded}


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def outcome(stack: AirflowStack, dag_id: str, run: dict[str, Any]) -> RunOutcome:
    tis = stack.task_instances(dag_id, run["dag_run_id"])
    ends = [e for e in (_ts(ti.get("end_date")) for ti in tis) if e is not None]
    return RunOutcome(dag_id, run["dag_run_id"], run["run_type"], run["state"],
                      (run.get("data_interval_start"), run.get("data_interval_end")), _ts(run.get("queued_at")),
                      _ts(run.get("start_date")), _ts(run.get("end_date")),
                      stack.task_states(dag_id, run["dag_run_id"]), max(ends) if ends else None)


def wait_first_run(stack: AirflowStack, dag_id: str, timeout: float, run_type: str | None = None) -> dict[str, Any]:
    """The first run of ``dag_id`` (of ``run_type`` when given) once it is finished."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [r for r in stack.runs(dag_id) if run_type is None or r["run_type"] == run_type]
        if runs and runs[0]["state"] in FINAL_STATES:
            return runs[0]
        if time.monotonic() > deadline:
            states = {r["dag_run_id"]: r["state"] for r in runs}
            raise AirflowStackError(f"{dag_id}: no finished {run_type or ''} run after {timeout:.0f} s "
                                    f"(runs: {states or 'none'})")
        time.sleep(1)


def run_example_day(stack: AirflowStack, pipelines: ExamplePipelines | None = None, *, timeout: float = 600,
                    log: Callable[[str], None] = lambda _line: None) -> ExampleDay:
    """Unpause the example extract and dbt DAGs, wait for the extracts' scheduled runs (the last complete
    day), then for the ``dbt_marts`` run their asset events trigger; return what happened."""
    pipelines = pipelines or discover()
    deadline = time.monotonic() + timeout
    for dag_id in pipelines.extract + pipelines.dbt:
        stack.wait_dag(dag_id, timeout=120, unpause=False)
    # dbt first: it must be listening before the extracts publish.
    for dag_id in pipelines.dbt + pipelines.extract:
        stack.api("PATCH", f"dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    t0 = time.monotonic()
    log(f"==> unpaused {', '.join(pipelines.extract)} and {', '.join(pipelines.dbt)}: the scheduler runs each "
        "extract for the last complete day; their asset events trigger " + ", ".join(pipelines.dbt))
    extract_runs: list[RunOutcome] = []
    dbt_runs: list[RunOutcome] = []
    error = None
    dbt_after = None
    extract_s = 0.0
    try:
        for dag_id in pipelines.extract:
            run = outcome(stack, dag_id, wait_first_run(stack, dag_id, max(1.0, deadline - time.monotonic())))
            extract_runs.append(run)
            log(f"    {dag_id:<12} {run.run_type:<10} {run.data_interval[0]} .. {run.data_interval[1]}  {run.state}"
                + ("" if run.ok else f"  tasks: {run.tasks}"))
        extract_s = time.monotonic() - t0
        if not all(r.ok for r in extract_runs):
            raise AirflowStackError("an extract run failed: " + "; ".join(
                stack.report(r.dag_id, r.run_id) for r in extract_runs if not r.ok))
        # From the last extract task's end (its publish emitted the last asset event), not its DAG run's end:
        # the scheduler may queue dbt_marts before it marks that extract run finished.
        last_extract_end = max(r.last_task_end or r.end_date for r in extract_runs)
        for dag_id in pipelines.dbt:
            run = outcome(stack, dag_id, wait_first_run(stack, dag_id, max(1.0, deadline - time.monotonic()),
                                                        run_type="asset_triggered"))
            dbt_runs.append(run)
            if run.queued_at is not None:
                # From the newest asset event this run consumed (what queued it), else the last extract task.
                events = stack.api("GET", f"dags/{dag_id}/dagRuns/{run.run_id}/upstreamAssetEvents")
                stamps = [_ts(e.get("timestamp")) for e in (events.json().get("asset_events", [])
                                                            if events.status_code == 200 else [])]
                reference = max([t for t in stamps if t is not None], default=last_extract_end)
                after = (run.queued_at - reference).total_seconds()
                dbt_after = after if dbt_after is None else max(dbt_after, after)
            failed = {t: s for t, s in run.tasks.items() if s not in ("success", "skipped")}
            log(f"    {dag_id:<12} {run.run_type:<10} queued {dbt_after if dbt_after is None else round(dbt_after, 1)} s "
                "after the last extract task  "
                f"{len(run.tasks)} tasks  {run.state}" + (f"  not ok: {failed}" if failed else ""))
            if not run.ok:
                raise AirflowStackError(stack.report(dag_id, run.run_id))
    except AirflowStackError as exc:
        error = str(exc)
    return ExampleDay(extract_runs, dbt_runs, extract_s, dbt_after, time.monotonic() - t0, error)
