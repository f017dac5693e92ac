"""The demo's main loop: the example pipelines over daily intervals on a real Airflow, a rerun, dbt, checks.

Every DAG run happens in a real deployment (:mod:`devstack.airflow_stack`: scheduler, DAG processor,
triggerer, API server, LocalExecutor) and is driven through the REST API as a user or a script would:
the earlier intervals are triggered with their data interval (history), the last complete day is the
scheduler's own run once the DAGs are unpaused, the rerun of the middle interval is the UI's Clear, and
``dbt_marts`` (paused while the intervals load, so that it does not run once per interval) is started by
the scheduler from the asset events of that rerun, while the monitoring DAG runs its deferrable checks in
the triggerer.

Results are read where a user would look: the ledger ``dataeng.load_ledger`` in the warehouse (rows,
checks, publish status per partition), the REST API (DAG run and task states, XCom: dbt results,
freshness, health), and the warehouse partitions themselves (row counts and md5 checksums before and
after the rerun).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from demo.stack import CONN_MONITOR, CONN_SOURCE, CONN_WAREHOUSE, REPO_ROOT, Stack, child_env, data_dirs
from devstack.airflow_stack import AirflowStack

UTC = timezone.utc
CONFIG_DIR = REPO_ROOT / "dags" / "configs"
EXTRACT_TYPES = {"extract", "publish"}
CHECK_TYPES = {"freshness", "gap_check", "failover_health", "failover_health_sensor", "quality"}


# -- the example pipelines ---------------------------------------------------------------------------
@dataclass
class Pipeline:
    """One config of ``dags/configs``: its DAG id, task types and extract targets."""

    dag_id: str
    path: Path
    types: dict[str, str]  # task name -> type
    targets: list[str] = field(default_factory=list)  # extract/publish target tables
    schedule: Any = None
    modes: dict[str, str] = field(default_factory=dict)  # target -> extract mode
    incremental: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> incremental_timestamp task

    @property
    def kind(self) -> str:
        """``extract`` (run per interval), ``dbt`` (after the extracts) or ``checks`` (last)."""
        kinds = set(self.types.values())
        if kinds & EXTRACT_TYPES:
            return "extract"
        if "dbt" in kinds:
            return "dbt"
        return "checks"


def discover_pipelines(config_dir: Path = CONFIG_DIR) -> list[Pipeline]:
    """Read the pipeline configs (defaults.yaml and files starting with ``_`` or ``.`` are not pipelines)."""
    pipelines = []
    for path in sorted(config_dir.glob("*.y*ml")):
        if path.stem in ("defaults", "_defaults") or path.name.startswith(("_", ".")):
            continue
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
            continue
        types, targets, modes, incremental = {}, [], {}, {}
        for name, task in data["tasks"].items():
            task = task or {}
            kind = "operator" if "operator" in task and task.get("type") in (None, "operator") else task.get("type")
            types[name] = str(kind)
            if kind in EXTRACT_TYPES and task.get("target_table") and str(task["target_table"]) not in targets:
                targets.append(str(task["target_table"]))
                modes[str(task["target_table"])] = str(task.get("mode") or ("full_snapshot" if kind == "extract"
                                                                            else "publish"))
            if kind == "extract" and task.get("mode") == "incremental_timestamp" and task.get("source_table"):
                incremental[str(task["target_table"])] = task
        pipelines.append(Pipeline(str(data.get("dag_id") or path.stem), path, types, targets, data.get("schedule"),
                                  modes, incremental))
    return pipelines


# -- running DAGs ------------------------------------------------------------------------------------
@dataclass
class Job:
    """One DAG run: the DAG and the data interval it covers."""

    dag_id: str
    interval_start: datetime
    interval_end: datetime
    label: str = ""
    after: list[Job] = field(default_factory=list)


@dataclass
class RunResult:
    """What one run did, read back from the Airflow metadata DB."""

    job: Job
    rc: int
    seconds: float
    run_id: str | None = None
    state: str | None = None
    data_interval: tuple[str | None, str | None] = (None, None)
    tasks: dict[str, str | None] = field(default_factory=dict)
    xcom: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None
    error: str | None = None
    run_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.state == "success"


class ApiRunner:
    """Waits for DAG runs on the real Airflow and reads them back through the REST API."""

    def __init__(self, airflow: AirflowStack, log: Callable[[str], None] = print) -> None:
        self.airflow = airflow
        self.log = log

    def wait(self, runs: Sequence[tuple[Job, str]], timeout: float = 600) -> list[RunResult]:
        """Wait for every ``(job, run id)``; return their results in order (each reported as it ends)."""
        deadline = time.monotonic() + timeout
        results = []
        for job, run_id in runs:
            self.airflow.wait_run(job.dag_id, run_id, timeout=max(1.0, deadline - time.monotonic()))
            results.append(self.result(job, run_id))
        return results

    def result(self, job: Job, run_id: str) -> RunResult:
        run = self.airflow.run(job.dag_id, run_id)
        start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) if run.get(k) else None
                      for k in ("start_date", "end_date"))
        result = RunResult(job, 0, (end - start).total_seconds() if start and end else 0.0, run_id=run_id,
                           state=run["state"], data_interval=(run.get("data_interval_start"),
                                                               run.get("data_interval_end")),
                           tasks=self.airflow.task_states(job.dag_id, run_id), run_type=run.get("run_type"))
        result.xcom = self.airflow.xcoms(job.dag_id, run_id)
        if not result.ok:
            result.error = self.airflow.report(job.dag_id, run_id, lines=12)
        self._report(result)
        return result

    def _report(self, r: RunResult) -> None:
        interval = f"{r.job.interval_start:%Y-%m-%d}"
        failed = [t for t, s in r.tasks.items() if s not in ("success", "skipped")]
        status = "ok" if r.ok else f"FAILED ({', '.join(failed) or r.state})"
        self.log(f"    {r.job.dag_id:<14} {interval}{r.job.label:<8} {r.run_type or '':<16} {len(r.tasks):>3} tasks  "
                 f"{r.seconds:5.1f} s  {status}")
        if not r.ok and r.error:
            for line in r.error.splitlines()[-14:]:
                self.log(f"      | {line[:200]}")


# -- the warehouse side ------------------------------------------------------------------------------
@dataclass
class LedgerRow:
    pipeline: str | None
    task_id: str | None
    target: str
    partition_column: str | None
    partition_start: datetime | None
    partition_end: datetime | None
    run_id: str | None
    mode: str
    rows: int | None
    checks: list[dict[str, Any]]
    status: str
    error: str | None
    finished_at: datetime | None


def read_ledger(dsn: str) -> list[LedgerRow]:
    """Every ledger row, oldest first (empty when nothing was published yet)."""
    with psycopg.connect(dsn) as conn:
        if not conn.execute("select to_regclass('dataeng.load_ledger') is not null").fetchone()[0]:
            return []
        rows = conn.execute(
            "select pipeline, task_id, target_schema || '.' || target_table, partition_column, partition_start, "
            "partition_end, run_id, mode, rows, checks, status, error, finished_at "
            "from dataeng.load_ledger order by id"
        ).fetchall()
    return [LedgerRow(*r) for r in rows]


@dataclass
class PartitionState:
    target: str
    partition_column: str
    start: datetime
    end: datetime
    rows: int
    md5: str


def partition_state(dsn: str, target: str, partition_column: str, start: datetime, end: datetime) -> PartitionState:
    """Row count and md5 of one partition's rows (each row as text, in sorted order)."""
    schema, _, table = target.rpartition(".")
    query = sql.SQL(
        "select count(*), coalesce(md5(string_agg(t::text, E'\\n' order by t::text)), '') from {} t "
        "where {col} >= %s and {col} < %s"
    ).format(sql.Identifier(schema or "public", table), col=sql.Identifier(partition_column))
    with psycopg.connect(dsn) as conn:
        count, digest = conn.execute(query, (start, end)).fetchone()
    return PartitionState(target, partition_column, start, end, int(count), str(digest))


def published_partitions(ledger: Iterable[LedgerRow], start: datetime) -> list[LedgerRow]:
    """The latest published ledger row per target for the partition starting at ``start``."""
    latest: dict[str, LedgerRow] = {}
    for row in ledger:
        if row.status == "published" and row.partition_start is not None and row.partition_column \
                and row.partition_start == start:
            latest[row.target] = row
    return list(latest.values())


def extract_setting(task: dict[str, Any], name: str) -> Any:
    """An extract task's setting as the operator sees it: the config's value, else the spec's default
    (:class:`~airflow_provider_dataeng.extract.spec.ExtractSpec`; e.g. ``lag`` defaults to 15m, not 0s)."""
    from airflow_provider_dataeng.extract.spec import ExtractSpec
    from airflow_provider_dataeng.specs import spec_default

    value = task.get(name)
    return spec_default(ExtractSpec, name) if value is None else value


def parse_lag(value: Any) -> timedelta:
    """An extract's ``lag`` (``"15m"``, ``"2h"``, seconds, ...) as a timedelta; ``None`` is the spec's default."""
    from airflow_provider_dataeng.durations import require_duration

    return require_duration(extract_setting({"lag": value}, "lag"), "lag")


def late_rows(source_dsn: str, wh_dsn: str, pipeline: str, target: str, task: dict[str, Any],
              start: datetime, end: datetime) -> dict[str, Any]:
    """Source rows dated in [start, end) that the interval's run did not see (committed after it)."""
    column = str(extract_setting(task, "timestamp_column"))
    lag = parse_lag(task.get("lag"))
    source = str(task["source_table"])
    s_schema, _, s_table = source.rpartition(".")
    t_schema, _, t_table = target.rpartition(".")
    pick = "select id::text, {col} from {tbl} where {col} >= %s and {col} < %s"
    with psycopg.connect(source_dsn) as conn:
        in_source = set(conn.execute(sql.SQL(pick).format(
            col=sql.Identifier(column), tbl=sql.Identifier(s_schema or "public", s_table)), (start, end)).fetchall())
    with psycopg.connect(wh_dsn) as conn:
        loaded = set(conn.execute(sql.SQL(pick).format(
            col=sql.Identifier(column), tbl=sql.Identifier(t_schema or "public", t_table)), (start, end)).fetchall())
    late = sorted(in_source - loaded, key=lambda r: r[1])
    covered = [r for r in late if r[1] >= end - lag]
    return {"pipeline": pipeline, "target": target, "interval": start.date().isoformat(),
            "lag": str(extract_setting(task, "lag")),
            "late": len(late), "covered_by_lag": len(covered),
            "first": late[0][1].isoformat() if late else None, "last": late[-1][1].isoformat() if late else None,
            "next_window_from": (end - lag).isoformat()}


# -- intervals ---------------------------------------------------------------------------------------
def daily_intervals(days: int, today: date | None = None) -> list[tuple[datetime, datetime]]:
    """The last ``days`` complete UTC days before ``today``."""
    today = today or datetime.now(UTC).date()
    out = []
    for n in range(days, 0, -1):
        start = datetime.combine(today - timedelta(days=n), datetime.min.time(), tzinfo=UTC)
        out.append((start, start + timedelta(days=1)))
    return out


class Progress:
    """Timestamps for the demo's log lines (seconds since start)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.marks: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, name: str) -> None:
        self.marks[name] = self.elapsed()


# -- the demo ------------------------------------------------------------------------------------------
@dataclass
class DemoOptions:
    days: int = 3
    plain: bool = False
    seed: int = 42
    keep: bool = False


@dataclass
class DemoReport:
    """Everything the summary shows (also what the end-to-end test asserts on)."""

    intervals: list[tuple[datetime, datetime]]
    pipelines: list[Pipeline]
    runs: list[RunResult]
    ledger: list[LedgerRow]
    before: list[PartitionState]
    after: list[PartitionState]
    warehouse_kind: str
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    data_dirs: list[str] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)

    @property
    def idempotent(self) -> bool:
        pairs = {(p.target, p.start): p for p in self.before}
        return bool(self.before) and all(
            (a.target, a.start) in pairs and (pairs[a.target, a.start].rows, pairs[a.target, a.start].md5)
            == (a.rows, a.md5) for a in self.after
        ) and len(self.after) == len(self.before)

    @property
    def failed_runs(self) -> list[RunResult]:
        return [r for r in self.runs if not r.ok]


class Demo:
    """The whole demo: stack, shop, runs on the real Airflow, rerun, dbt, checks, summary."""

    def __init__(self, options: DemoOptions, log: Callable[[str], None] = print) -> None:
        self.options = options
        self.log = log
        self.stack = Stack(plain=options.plain, log=self._log)
        self.progress = Progress()
        self.airflow: AirflowStack | None = None
        self.runner: ApiRunner | None = None
        self.shop: Any = None
        self.cpu: dict[str, dict[str, float]] = {}

    def _log(self, text: str) -> None:
        self.log(f"[{self.progress.elapsed():6.1f}s] {text}" if text.startswith("==>") else text)

    def _mark(self, phase: str) -> None:
        """End of a phase: its time, and the CPU seconds each Airflow component has used so far."""
        self.progress.mark(phase)
        if self.airflow is not None:
            cpu = self.airflow.cpu_seconds()
            self.cpu[phase] = cpu
            self._log(f"    [{phase} done] Airflow CPU so far: "
                      + ", ".join(f"{c} {v:.0f} s" for c, v in cpu.items()))

    def run(self) -> DemoReport:
        opts = self.options
        intervals = daily_intervals(opts.days)
        pipelines = discover_pipelines()
        if not pipelines:
            raise RuntimeError(f"no pipeline configs in {CONFIG_DIR}")
        self._log(f"==> {len(pipelines)} pipelines in dags/configs: "
                  + ", ".join(f"{p.dag_id} ({p.kind})" for p in pipelines))
        self._log(f"    intervals: {', '.join(f'{s:%Y-%m-%d}' for s, _ in intervals)} (daily, UTC)")

        self._ensure_manifest()

        # Start-up, overlapped: Airflow starts (metadata DB on the source cluster, migration, the four
        # components) while the shop is generated and the formation starts.
        stack = self.stack
        stack.start_source()
        stack.plan_warehouse()
        stack.register_connections()
        self.airflow = airflow = self._airflow()
        starter = _Background(airflow.start)
        self._build_shop(intervals)
        stack.start_warehouse()
        starter.result()
        self.runner = runner = ApiRunner(airflow, log=self._log)
        self._mark("stack")

        extract = [p for p in pipelines if p.kind == "extract"]
        dbt = [p for p in pipelines if p.kind == "dbt"]
        checks = [p for p in pipelines if p.kind == "checks"]
        for p in pipelines:
            airflow.wait_dag(p.dag_id, timeout=180, unpause=False)

        # 1. History, then the scheduler's own run: the earlier intervals are triggered through the API
        #    with their data interval (run_after = the interval's end, so each DAG runs them in order, one
        #    at a time); unpausing the DAGs makes the scheduler create the run of the last complete day.
        #    The DAGs run side by side (LocalExecutor, parallelism 8). dbt_marts stays paused meanwhile: a
        #    paused DAG is not queued by asset events, so the loads do not start a dbt run per interval.
        *history, (last_start, last_end) = intervals
        self._log(f"==> {len(extract)} extract pipelines x {len(intervals)} daily intervals on the real scheduler: "
                  f"{len(history)} earlier interval(s) triggered through the REST API with their data interval, "
                  "then the DAGs are unpaused and the scheduler runs the last complete day itself ("
                  + ", ".join(p.dag_id for p in dbt) + " paused while they load)")
        pending: list[tuple[Job, str]] = []
        for start, end in history:
            for p in extract:
                pending.append((Job(p.dag_id, start, end),
                                airflow.trigger(p.dag_id, logical_date=start, data_interval=(start, end), run_after=end)))
        for p in extract:
            airflow.unpause(p.dag_id)
        for p in extract:
            pending.append((Job(p.dag_id, last_start, last_end), self._scheduled_run(p.dag_id, last_start)))
        runs = runner.wait(pending)
        self._mark("intervals")

        # 2. dbt_marts is unpaused, then the UI's Clear on the middle interval's runs: the scheduler runs them
        #    again (the partitions must come out identical) and their asset events queue dbt_marts, which
        #    builds the marts over every loaded interval.
        for p in dbt:
            airflow.unpause(p.dag_id)
        middle = intervals[len(intervals) // 2]
        wh_dsn = stack.warehouse.dsn()
        before = self._partition_states(wh_dsn, middle[0])
        self._log(f"==> clearing the middle interval {middle[0]:%Y-%m-%d} (the UI's Clear): the scheduler reruns it "
                  "(idempotency); the reruns' asset events queue " + ", ".join(p.dag_id for p in dbt))
        reruns = []
        for job, run_id in pending:
            if job.interval_start == middle[0]:
                airflow.clear(job.dag_id, run_id)
                reruns.append((Job(job.dag_id, *middle, label=" rerun"), run_id))
        runs += runner.wait(reruns)
        after = self._partition_states(wh_dsn, middle[0])
        self._mark("rerun")

        # 3. dbt (the run the scheduler started from those asset events) and, side by side, the monitoring
        #    checks (freshness, partition gaps, failover health; deferrable sensors wait in the triggerer),
        #    triggered through the API.
        dbt_runs = {p.dag_id: self._first_asset_triggered_run(p.dag_id) for p in dbt}
        check_runs: list[tuple[Job, str]] = []
        if checks:
            self._log("==> the checks: " + ", ".join(p.dag_id for p in checks) + " triggered through the API"
                      + (" (failover health marked success: --plain has no pg_auto_failover monitor)"
                         if stack.warehouse.kind == "plain" else ""))
            check_runs = self._trigger_checks(checks, stack.warehouse.kind == "plain")
        self._log("==> " + ", ".join(p.dag_id for p in dbt) + ": the run the scheduler started from the extracts' "
                  "asset events")
        for dag_id, run_id in dbt_runs.items():
            runs += runner.wait([(Job(dag_id, last_start, last_end), run_id)], timeout=1800)
            self._later_asset_triggered_runs(dag_id, run_id)
        self._mark("dbt")
        try:
            runs += runner.wait(check_runs)
        finally:
            for p in checks:
                airflow.unpause(p.dag_id, paused=True)
        self._mark("checks")
        late = self._advance_to_now(intervals, extract)

        return DemoReport(intervals, pipelines, runs, read_ledger(wh_dsn), before, after,
                          stack.warehouse.kind, self.progress.elapsed(), dict(self.progress.marks),
                          data_dirs(stack), late)

    def close(self) -> None:
        """Stop Airflow and the warehouse at the same time (each takes seconds), then the rest. Nothing the
        demo waits for runs any more: the components get a short grace before SIGKILL."""
        stopper = _Background(lambda: self.airflow.stop(grace=3)) if self.airflow is not None else None
        warehouse = self.stack.warehouse
        try:
            if warehouse is not None and warehouse.kind == "formation":
                warehouse.handle.teardown()  # idempotent: Stack.close() finds it done
        finally:
            try:
                if stopper is not None:
                    stopper.result()
            finally:
                self.stack.close()

    # -- steps -----------------------------------------------------------------------------------
    def _airflow(self) -> AirflowStack:
        """The real Airflow over dags/ with the demo's connections (metadata DB on the source cluster)."""
        from devstack.airflow_env import connection_env_name

        home = self.stack.airflow_home
        shutil.rmtree(home, ignore_errors=True)  # a fresh deployment every run
        connections = {c: os.environ[connection_env_name(c)] for c in (CONN_SOURCE, CONN_WAREHOUSE, CONN_MONITOR)
                       if connection_env_name(c) in os.environ}
        return AirflowStack(home, connections=connections, metadata_cluster=self.stack.source, log=self._log)

    def _scheduled_run(self, dag_id: str, interval_start: datetime, timeout: float = 120) -> str:
        """The run id of the scheduler's own run of ``dag_id`` for the interval starting at ``interval_start``."""
        assert self.airflow is not None
        deadline = time.monotonic() + timeout
        while True:
            for run in self.airflow.runs(dag_id):
                if run["run_type"] == "scheduled":
                    return run["dag_run_id"]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{dag_id}: the scheduler created no run for {interval_start:%Y-%m-%d} "
                                   f"in {timeout:.0f} s\n{self.airflow.log_tails(['scheduler'])}")
            time.sleep(0.5)

    def _first_asset_triggered_run(self, dag_id: str, timeout: float = 900) -> str:
        """The id of the first run the scheduler creates for ``dag_id`` from the extracts' asset events."""
        assert self.airflow is not None
        deadline = time.monotonic() + timeout
        while True:
            runs = [r for r in self.airflow.runs(dag_id) if r["run_type"] == "asset_triggered"]
            if runs:
                self._log(f"    {dag_id}: the scheduler queued {runs[0]['dag_run_id']} from the extracts' asset events")
                return runs[0]["dag_run_id"]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{dag_id}: no asset-triggered run after {timeout:.0f} s "
                                   f"(asset events not matching its schedule?)\n{self.airflow.log_tails(['scheduler'])}")
            time.sleep(1)

    def _later_asset_triggered_runs(self, dag_id: str, first: str) -> None:
        """Say which later runs the next events (the next interval, the rerun) queued; the demo does not wait."""
        assert self.airflow is not None
        later = [r for r in self.airflow.runs(dag_id) if r["run_type"] == "asset_triggered" and r["dag_run_id"] != first]
        for run in later:
            self._log(f"    {dag_id}: {run['dag_run_id']} ({run['state']}) queued by the later asset events "
                      "(next interval, rerun); not waited for")

    def _trigger_checks(self, checks: list[Pipeline], plain: bool) -> list[tuple[Job, str]]:
        """One run of each checks DAG for the latest full hour, triggered while paused (so the scheduler adds
        no run of its own meanwhile), then unpaused; health tasks are marked success first on a plain warehouse.
        The caller pauses them again once their runs are done."""
        assert self.airflow is not None
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        pending = []
        for p in checks:
            run_id = self.airflow.trigger(p.dag_id, logical_date=now - timedelta(hours=1),
                                          data_interval=(now - timedelta(hours=1), now), run_after=now)
            if plain:
                for task_id in _health_task_ids(p, self.airflow.task_states(p.dag_id, run_id)):
                    self.airflow.api("PATCH", f"dags/{p.dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
                                     json={"new_state": "success"}).raise_for_status()
            pending.append((Job(p.dag_id, now - timedelta(hours=1), now), run_id))
            self.airflow.unpause(p.dag_id)
        return pending

    def _ensure_manifest(self) -> None:
        """The dbt tasks render from dbt_project/target/manifest.json (`make manifest`); build it if missing."""
        import sys

        manifest = REPO_ROOT / "dbt_project" / "target" / "manifest.json"
        if manifest.exists() or not (REPO_ROOT / "dbt_project" / "dbt_project.yml").exists():
            return
        self._log("==> dbt_project/target/manifest.json is missing: building it (dbt parse)")
        proc = subprocess.run([sys.executable, "-m", "airflow_provider_dataeng.dbt.parse_project", "dbt_project"],
                              cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"building the dbt manifest failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    def _build_shop(self, intervals: list[tuple[datetime, datetime]]) -> None:
        """The shop's history, day by day, up to the end of the last interval (today comes later)."""
        from devstack.shop import Shop, describe

        assert self.stack.source is not None
        first = intervals[0][0].date()
        days = [first - timedelta(days=2), first - timedelta(days=1), *(s.date() for s, _ in intervals)]
        self._log(f"==> generating the shop (seed {self.options.seed}), day by day: {days[0]} .. {days[-1]}")
        self.shop = Shop(self.stack.source.dsn("shop"), seed=self.options.seed)
        self._log(describe(self.shop.build(days)))

    def _advance_to_now(self, intervals: list[tuple[datetime, datetime]], pipelines: list[Pipeline]) -> list[dict]:
        """Today's activity so far: it commits the last interval's late rows, after that interval ran."""
        from devstack.shop import describe

        now = datetime.now(UTC)
        self._log(f"==> advancing the shop to now ({now:%Y-%m-%d %H:%M} UTC): today's batch commits the "
                  f"late rows of {intervals[-1][0]:%Y-%m-%d}")
        self._log(describe([self.shop.generate_day(now.date(), until=now)]))
        assert self.stack.source is not None and self.stack.warehouse is not None
        out = []
        for p in pipelines:
            for target, spec in p.incremental.items():
                try:
                    out.append(late_rows(self.stack.source.dsn("shop"), self.stack.warehouse.dsn(), p.dag_id,
                                         target, spec, *intervals[-1]))
                except psycopg.Error as exc:  # e.g. the extract never ran: the run table says why
                    self._log(f"    late rows of {target}: not measured ({str(exc).splitlines()[0]})")
        return out

    def _partition_states(self, dsn: str, start: datetime) -> list[PartitionState]:
        rows = published_partitions(read_ledger(dsn), start)
        return [partition_state(dsn, r.target, r.partition_column or "_interval_start", r.partition_start,
                                r.partition_end) for r in sorted(rows, key=lambda r: r.target)]


def _health_task_ids(pipeline: Pipeline, task_ids: Iterable[str]) -> list[str]:
    """The run's failover-health task ids (marked success without running on a plain warehouse)."""
    names = {n for n, t in pipeline.types.items() if t in ("failover_health", "failover_health_sensor")}
    return [t for t in task_ids if t.split(".")[-1] in names]


class _Background:
    """``fn()`` in a thread; :meth:`result` joins it (in short waits: Ctrl-C stays prompt) and re-raises."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._error: BaseException | None = None
        self._value: Any = None

        def target() -> None:
            try:
                self._value = fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised by result()
                self._error = exc

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        while self._thread.is_alive():
            self._thread.join(0.2)
        if self._error is not None:
            raise self._error
        return self._value


# -- the summary's content ---------------------------------------------------------------------------
def summarize(report: DemoReport) -> dict[str, Any]:
    """Rows of the summary tables (rendered by :func:`demo.summary.render_report`)."""
    from demo.summary import duration, short_md5

    middle = report.intervals[len(report.intervals) // 2][0]
    runs_by_dag: dict[str, list[RunResult]] = {}
    for r in report.runs:
        runs_by_dag.setdefault(r.job.dag_id, []).append(r)
    identical = {a.target for a in report.after
                 if any(b.target == a.target and (b.rows, b.md5) == (a.rows, a.md5) for b in report.before)}

    rows: list[list[Any]] = []
    for p in report.pipelines:
        if p.kind != "extract":
            continue
        for start, _ in report.intervals:
            for target in p.targets:
                entries = [e for e in report.ledger if e.target == target and e.partition_start == start]
                run = next((r for r in runs_by_dag.get(p.dag_id, []) if r.job.interval_start == start
                            and not r.job.label), None)
                if not entries:
                    rows.append([p.dag_id, f"{start:%Y-%m-%d}", target, None, None,
                                 _run_status(run) if run else "not run", None, None, None])
                    continue
                last = entries[-1]
                passed = sum(1 for c in last.checks if c.get("passed"))
                publish = last.status
                if len(entries) > 1:
                    publish += "; rerun" + (f" x{len(entries) - 1}" if len(entries) > 2 else "")
                    if start == middle and target in identical:
                        publish += " identical"
                extra = [t for t, st in (run.tasks.items() if run else []) if st != "success"]
                if extra:
                    publish += f" ({', '.join(extra)} {run.tasks[extra[0]]})"
                rows.append([p.dag_id, f"{start:%Y-%m-%d}", target, last.rows,
                             f"{passed}/{len(last.checks)} passed", publish, None, None, None])
    for p in report.pipelines:
        if p.kind == "dbt":
            for run in runs_by_dag.get(p.dag_id, []):
                models, tests, failed = _dbt_counts(run)
                rows.append([p.dag_id, f"{run.job.interval_start:%Y-%m-%d}", "analytics (dbt)", None,
                             f"{tests} tests passed", _run_status(run),
                             f"{models} built" + (f", {failed} failed" if failed else ""), None, None])
    checks: list[list[str]] = []
    for p in report.pipelines:
        if p.kind == "checks":
            for run in runs_by_dag.get(p.dag_id, []):
                fresh, health, details = _monitoring(run, report)
                rows.append([p.dag_id, f"{run.job.interval_start:%Y-%m-%d %H:%M}", "raw.*", None,
                             None, _run_status(run), None, fresh, health])
                checks.extend(details)

    idem = []
    after = {a.target: a for a in report.after}
    for b in report.before:
        a = after.get(b.target)
        idem.append([b.target, f"{b.start:%Y-%m-%d}", b.rows, a.rows if a else None, short_md5(b.md5),
                     short_md5(a.md5) if a else None, "yes" if a and (a.rows, a.md5) == (b.rows, b.md5) else "NO"])

    ok = not report.failed_runs and report.idempotent
    modes = {m for p in report.pipelines for m in p.modes.values()}
    notes = []
    if "incremental_id" in modes:
        notes.append("incremental_id (payments): ids not yet in the warehouse; the first run of this backfill "
                     "loads every existing id, later intervals only ids that are new since.")
    if "full_snapshot" in modes:
        notes.append("full_snapshot (customers, products): each interval's partition is the whole source table as "
                     "of its run.")
    if "incremental_timestamp" in modes:
        notes.append("incremental_timestamp (orders): rows whose updated_at falls in the interval (minus the "
                     "lag); an order that changed later sits in a later partition, dbt keeps the latest row.")
    for late in report.late:
        if late["late"]:
            notes.append(
                f"late rows: {late['late']} rows of {late['target']} dated {late['interval']} "
                f"({late['first'][11:19]}..{late['last'][11:19]} UTC) were committed after that interval ran; "
                f"{late['covered_by_lag']} fall within the {late['pipeline']} lag ({late['lag']}), so the next "
                f"interval's run (window from {late['next_window_from'][:16].replace('T', ' ')}) loads them.")
        else:
            notes.append(f"late rows: none for {late['target']} {late['interval']}.")
    footer = [*(f"note: {n}" for n in notes), "",
        f"{len(report.runs)} DAG runs on the real scheduler (LocalExecutor), {len(report.failed_runs)} failed; "
        "warehouse: "
        + ("pg_auto_failover formation (monitor + 2 nodes)" if report.warehouse_kind == "formation"
           else "one plain PostgreSQL cluster (--plain)"),
        "phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in report.phases.items()),
        f"{'DEMO OK' if ok else 'DEMO FAILED'} in {duration(report.seconds)}"
        + ("" if report.idempotent else " (rerun partitions differ)"),
    ]
    return {"rows": rows, "idempotency": idem, "middle": f"{middle:%Y-%m-%d}", "checks": checks,
            "footer": footer}


def _run_status(run: RunResult) -> str:
    if run.ok:
        return "success"
    bad = [f"{t}={s}" for t, s in run.tasks.items() if s not in ("success", "skipped")]
    return "FAILED " + (", ".join(bad) or (run.error or f"rc={run.rc}"))


def _dbt_counts(run: RunResult) -> tuple[int, int, int]:
    models = tests = failed = 0
    for value in run.xcom.values():
        if isinstance(value, dict) and isinstance(value.get("nodes"), list):
            for node in value["nodes"]:
                kind = str(node.get("node", "")).split(".", 1)[0]
                status = node.get("status")
                if kind == "model" and status == "success":
                    models += 1
                elif kind == "test" and status == "pass":
                    tests += 1
                elif status in ("error", "fail"):
                    failed += 1
    return models, tests, failed


def _monitoring(run: RunResult, report: DemoReport) -> tuple[str, str, list[list[str]]]:
    """(freshness column, health column, detail rows) from the monitoring run's XComs."""
    fresh: list[str] = []
    health = "-"
    details: list[list[str]] = []
    first, last = report.intervals[0][0], report.intervals[-1][1]
    for key, value in sorted(run.xcom.items()):
        if ":" in key:  # extra XCom keys repeat the return value
            continue
        name = key.split(".")[-1]
        if isinstance(value, dict) and "lag_seconds" in value:
            lag = float(value["lag_seconds"]) / 3600
            fresh.append(f"{name.removesuffix('_fresh')} {value.get('status')} {lag:.1f}h")
            details.append([key, f"{value.get('status')}: newest row {value.get('max_loaded_at')}, lag {lag:.1f} h"])
        elif isinstance(value, list) and all(isinstance(h, dict) and "start" in h for h in value):
            starts = [datetime.fromisoformat(h["start"]) for h in value]
            inside = sum(1 for st in starts if first <= st < last)
            kinds = sorted({str(h.get("kind")) for h in value})
            if value:
                text = (f"{len(value)} holes ({', '.join(kinds)}) {min(starts):%Y-%m-%d} .. {max(starts):%Y-%m-%d}: "
                        f"days before the demo's first interval (DAG start_date); {inside} in the demo window")
            else:
                text = "no holes"
            details.append([key, text])
        elif isinstance(value, dict) and "healthy" in value:
            nodes = ", ".join(
                f"{n.get('name')} {n.get('state')}" + (f" (lag {n['lag_bytes']} B)" if n.get("lag_bytes") is not None
                                                       else "")
                for n in value.get("nodes") or []
            )
            roles = ", ".join(f"{n.get('name')} {n.get('state')}" for n in value.get("nodes") or [])
            health = f"{value.get('status')} ({roles})" if roles else str(value.get("status"))
            reasons = "; ".join(map(str, value.get("reasons") or []))
            details.append([key, f"{value.get('status')} (from the {value.get('source')}): {nodes}"
                            + (f"; {reasons}" if reasons else "")])
    if report.warehouse_kind == "plain":
        health = "skipped (--plain)"
    return ", ".join(fresh) or "-", health, details


def _compact(value: Any, limit: int = 110) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_json(report: DemoReport) -> dict[str, Any]:
    """A machine-readable report (``<demo dir>/report.json``; the end-to-end test reads it)."""
    s = summarize(report)
    runs = []
    for r in report.runs:
        models, tests, failed = _dbt_counts(r)
        runs.append({"dag_id": r.job.dag_id, "interval_start": r.job.interval_start.isoformat(),
                     "label": r.job.label.strip(), "ok": r.ok, "state": r.state, "tasks": r.tasks,
                     "run_id": r.run_id, "run_type": r.run_type, "data_interval": list(r.data_interval),
                     "seconds": round(r.seconds, 2), "dbt_models": models, "dbt_tests": tests,
                     "dbt_failed": failed, "xcom": r.xcom})
    return {
        "ok": not report.failed_runs and report.idempotent,
        "idempotent": report.idempotent,
        "warehouse": report.warehouse_kind,
        "intervals": [[a.isoformat(), b.isoformat()] for a, b in report.intervals],
        "middle": s["middle"],
        "pipelines": [{"dag_id": p.dag_id, "kind": p.kind, "targets": p.targets, "modes": p.modes}
                      for p in report.pipelines],
        "runs": runs,
        "ledger": [{"pipeline": e.pipeline, "target": e.target, "partition_start":
                    e.partition_start.isoformat() if e.partition_start else None, "rows": e.rows,
                    "status": e.status, "checks": e.checks} for e in report.ledger],
        "idempotency": [{"target": b.target, "start": b.start.isoformat(), "before": [b.rows, b.md5],
                         "after": next(([a.rows, a.md5] for a in report.after if a.target == b.target), None)}
                        for b in report.before],
        "seconds": round(report.seconds, 1),
        "phases": report.phases,
        "data_dirs": report.data_dirs,
        "late_rows": report.late,
    }
