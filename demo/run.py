"""The demo's main loop: the example pipelines over three daily intervals, a rerun, dbt, checks, a summary.

Every DAG run is ``airflow dags test <dag_id> <logical_date>`` (Airflow's own CLI code) in a child
process: by default one long-lived worker (:mod:`demo.dag_worker`) that serves every run, so the ~10 s
start-up of a fresh ``airflow dags test`` is paid once, not once per run (a warm run takes ~1 s here);
with ``--one-process-per-run`` every run is its own ``airflow dags test`` subprocess. ``--parallel 2``
runs different DAGs two at a time (one DAG's intervals always go in order: incremental-by-id extracts
depend on it), but two processes writing the SQLite metadata DB at once corrupted it once here
("database disk image is malformed"), and a warm worker is fast enough alone.

Results are read where a user would look: the ledger ``dataeng.load_ledger`` in the warehouse (rows,
checks, publish status per partition), the Airflow metadata DB (DAG run and task states, XCom: dbt
results, freshness, health), and the warehouse partitions themselves (row counts and md5 checksums
before and after the rerun).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
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

from demo.stack import REPO_ROOT, Stack, airflow_bin, child_env, data_dirs, stop_process_group

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
    """One ``airflow dags test`` run: the DAG and the data interval it should cover."""

    dag_id: str
    interval_start: datetime
    interval_end: datetime
    label: str = ""
    after: list[Job] = field(default_factory=list)
    mark_success: str | None = None  # regex of task ids marked success without running

    @property
    def logical_date(self) -> str:
        # With cron data intervals, a manual run at T covers the interval that ends at T.
        return self.interval_end.isoformat()


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

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.state == "success"


class DagRunner:
    """Runs :class:`Job` s ``parallel`` at a time, in long-lived workers or one process per run."""

    def __init__(self, stack: Stack, parallel: int = 1, one_process_per_run: bool = False,
                 retries: int | None = 0, log: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.retries = retries
        self.parallel = max(1, parallel)
        self.one_process_per_run = one_process_per_run
        self.log = log
        self.logs_dir = stack.demo_dir / "logs"
        self.workers: list[_Worker] = []
        self.results: list[RunResult] = []

    def start(self) -> None:
        """Spawn the workers now (their imports overlap with whatever the caller does next)."""
        if self.one_process_per_run or self.workers:
            return
        for n in range(self.parallel):
            self.workers.append(_Worker(self.stack, self.logs_dir / f"worker-{n + 1}.log"))

    def run(self, jobs: Sequence[Job]) -> list[RunResult]:
        """Run ``jobs`` (respecting ``Job.after``) and return their results in job order."""
        self.start()
        pending = list(jobs)
        done: dict[int, RunResult] = {}
        lock = threading.Condition()
        errors: list[BaseException] = []

        def next_job() -> Job | None:
            with lock:
                while True:
                    if errors:
                        return None
                    for job in pending:
                        if all(id(dep) in done or dep not in jobs for dep in job.after):
                            pending.remove(job)
                            return job
                    if not pending:
                        return None
                    lock.wait(0.5)

        def loop(slot: int) -> None:
            try:
                while (job := next_job()) is not None:
                    result = self._run_one(slot, job)
                    self._report(result)
                    with lock:
                        done[id(job)] = result
                        lock.notify_all()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                with lock:
                    errors.append(exc)
                    lock.notify_all()

        threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(self.parallel)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)  # short waits: Ctrl-C is handled promptly in the main thread
        except BaseException as exc:  # Ctrl-C: hand out no more jobs (close() stops the running ones)
            with lock:
                errors.append(exc)
                lock.notify_all()
            raise
        if errors:
            raise errors[0]
        results = [done[id(j)] for j in jobs]
        self.results.extend(results)
        return results

    def close(self) -> None:
        """Stop the workers: end of input first, then SIGTERM / SIGKILL to their process groups."""
        for worker in self.workers:
            with contextlib.suppress(Exception):
                if worker.proc.stdin:
                    worker.proc.stdin.close()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and any(w.proc.poll() is None for w in self.workers):
            time.sleep(0.05)
        for worker in self.workers:
            stop_process_group(worker.proc, grace=3)
        self.workers.clear()

    # -- one run ---------------------------------------------------------------------------------
    def _run_one(self, slot: int, job: Job) -> RunResult:
        run_log = self.logs_dir / "runs" / f"{job.dag_id}__{job.interval_start:%Y%m%d}{job.label}.log"
        run_log.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        if self.one_process_per_run:
            cmd = [airflow_bin(), "dags", "test", job.dag_id, job.logical_date]
            if job.mark_success:
                cmd += ["--mark-success-pattern", job.mark_success]
            proc = self.stack.spawn(cmd, run_log)
            while proc.poll() is None:
                time.sleep(0.1)
            self.stack.children.remove(proc)
            rc, error = proc.returncode, None
        else:
            reply, text = self.workers[slot].run(
                {"dag_id": job.dag_id, "logical_date": job.logical_date, "mark_success": job.mark_success,
                 "retries": self.retries})
            run_log.write_text(text)
            rc, error = int(reply.get("rc") or 0), reply.get("error")
        result = RunResult(job, rc, time.monotonic() - start, log_path=run_log, error=error)
        read_run_state(self.stack.airflow_home / "airflow.db", result)
        return result

    def _report(self, r: RunResult) -> None:
        interval = f"{r.job.interval_start:%Y-%m-%d}"
        failed = [t for t, s in r.tasks.items() if s not in ("success", "skipped")]
        status = "ok" if r.ok else f"FAILED ({', '.join(failed) or r.error or f'rc={r.rc}'})"
        self.log(f"    {r.job.dag_id:<28} {interval}{r.job.label:<8} {len(r.tasks):>3} tasks  "
                 f"{r.seconds:5.1f} s  {status}")
        if not r.ok and r.log_path is not None:
            self.log(f"      log: {r.log_path}")
            for line in _error_lines(r.log_path):
                self.log(f"      | {line}")


class _Worker:
    """A :mod:`demo.dag_worker` child: JSON requests on stdin, JSON results on stdout."""

    def __init__(self, stack: Stack, log_path: Path) -> None:
        import sys

        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demo.dag_worker", str(log_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env=child_env(), cwd=REPO_ROOT, start_new_session=True,
        )
        stack.children.append(self.proc)
        self._ready = False

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"DAG worker exited (rc={self.proc.poll()}); last log lines:\n{tail}")
        return json.loads(line)

    def run(self, request: dict[str, Any]) -> tuple[dict[str, Any], str]:
        if not self._ready:
            self._read()  # {"ready": true}
            self._ready = True
        offset = self.log_path.stat().st_size
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        return reply, text


def _error_lines(path: Path, limit: int = 12) -> list[str]:
    lines = path.read_text(errors="replace").splitlines()
    picked = [ln for ln in lines if any(k in ln for k in ("ERROR", "Error", "error", "Traceback", "FAILED"))]
    return [ln[:200] for ln in (picked or lines)[-limit:]]


def read_run_state(db_path: Path, result: RunResult) -> None:
    """Fill ``result`` from the metadata DB: the DAG's latest run, its task states and XComs."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)) as db:
        row = db.execute(
            "select run_id, state, data_interval_start, data_interval_end from dag_run where dag_id = ? "
            "order by id desc limit 1", (result.job.dag_id,),
        ).fetchone()
        if row is None:
            return
        result.run_id, result.state = row[0], row[1]
        result.data_interval = (row[2], row[3])
        for task_id, state in db.execute(
            "select task_id, state from task_instance where dag_id = ? and run_id = ?", (result.job.dag_id, row[0])
        ):
            result.tasks[task_id] = state
        for task_id, key, value in db.execute(
            "select task_id, key, value from xcom where dag_id = ? and run_id = ?", (result.job.dag_id, row[0])
        ):
            with contextlib.suppress(TypeError, ValueError):
                value = json.loads(value)
            result.xcom[task_id if key == "return_value" else f"{task_id}:{key}"] = value


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


def parse_lag(text: str | None) -> timedelta:
    """``"15m"`` / ``"2h"`` / ``"30s"`` / ``"1d"`` (the extract's ``lag`` format) as a timedelta."""
    text = (text or "0s").strip()
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].replace(".", "", 1).isdigit():
        raise ValueError(f"lag={text!r}: expected a number and a unit s, m, h or d (e.g. '15m')")
    return timedelta(**{units[text[-1]]: float(text[:-1])})


def late_rows(source_dsn: str, wh_dsn: str, pipeline: str, target: str, task: dict[str, Any],
              start: datetime, end: datetime) -> dict[str, Any]:
    """Source rows dated in [start, end) that the interval's run did not see (committed after it)."""
    column = str(task.get("timestamp_column") or "updated_at")
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
            "lag": str(task.get("lag") or "0s"),
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
    parallel: int = 1
    one_process_per_run: bool = False
    keep_retries: bool = False
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
    """The whole demo: stack, shop, runs, rerun, dbt, checks, summary."""

    def __init__(self, options: DemoOptions, log: Callable[[str], None] = print) -> None:
        self.options = options
        self.log = log
        self.stack = Stack(plain=options.plain, log=self._log)
        self.progress = Progress()
        self.runner: DagRunner | None = None
        self.shop: Any = None

    def _log(self, text: str) -> None:
        self.log(f"[{self.progress.elapsed():6.1f}s] {text}" if text.startswith("==>") else text)

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

        # Start-up, overlapped: Airflow's migration and the DAG workers' imports run while the
        # shop is generated and the formation starts.
        stack = self.stack
        stack.start_source()
        stack.plan_warehouse()
        stack.register_connections()
        stack.prepare_airflow_home(wait=False)
        self.runner = DagRunner(stack, opts.parallel, opts.one_process_per_run,
                                retries=None if opts.keep_retries else 0, log=self._log)
        starter = threading.Thread(target=self._start_workers, daemon=True)
        starter.start()
        self._build_shop(intervals)
        stack.start_warehouse()
        while starter.is_alive():
            starter.join(0.2)
        stack.wait_airflow_home()
        self.progress.mark("stack")

        extract = [p for p in pipelines if p.kind == "extract"]
        dbt = [p for p in pipelines if p.kind == "dbt"]
        checks = [p for p in pipelines if p.kind == "checks"]

        # 1. The extract pipelines for each interval (a backfill; each DAG's intervals in order).
        self._log(f"==> running {len(extract)} extract pipelines for {len(intervals)} daily intervals "
                  f"(airflow dags test, {self.runner.parallel} at a time)")
        jobs: list[Job] = []
        previous: dict[str, Job] = {}
        for start, end in intervals:
            for p in extract:
                job = Job(p.dag_id, start, end, after=[previous[p.dag_id]] if p.dag_id in previous else [])
                previous[p.dag_id] = job
                jobs.append(job)
        runs = self.runner.run(jobs)
        self.progress.mark("intervals")

        # 2. Rerun the middle interval (the partitions must come out identical); then dbt builds the
        #    marts while the checks run (freshness, partition gaps, failover health): the monitoring DAG
        #    is hourly, so its run covers the latest full hour.
        middle = intervals[len(intervals) // 2]
        wh_dsn = stack.warehouse.dsn()
        before = self._partition_states(wh_dsn, middle[0])
        self._log(f"==> rerunning the middle interval {middle[0]:%Y-%m-%d} (idempotency), then dbt and the "
                  "checks (freshness, partition gaps, failover health)")
        reruns = [Job(p.dag_id, *middle, label=" rerun") for p in extract]
        last_start, last_end = intervals[-1]
        dbt_jobs = [Job(p.dag_id, last_start, last_end, after=list(reruns)) for p in dbt]
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        check_jobs = [Job(p.dag_id, now - timedelta(hours=1), now, after=list(reruns)) for p in checks]
        if stack.warehouse.kind == "plain":
            for job in check_jobs:
                job.mark_success = _health_tasks(next(p for p in checks if p.dag_id == job.dag_id))
        runs += self.runner.run(reruns + dbt_jobs + check_jobs)
        after = self._partition_states(wh_dsn, middle[0])
        self.progress.mark("rerun, dbt, checks")
        late = self._advance_to_now(intervals, extract)

        return DemoReport(intervals, pipelines, runs, read_ledger(wh_dsn), before, after,
                          stack.warehouse.kind, self.progress.elapsed(), dict(self.progress.marks),
                          data_dirs(stack), late)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        self.stack.close()

    # -- steps -----------------------------------------------------------------------------------
    def _start_workers(self) -> None:
        """Wait for the metadata DB, then spawn the DAG workers (they import Airflow and warm up)."""
        with contextlib.suppress(Exception):  # errors surface in wait_airflow_home / the first run
            proc = getattr(self.stack, "_migrate", None)
            while proc is not None and proc.poll() is None:
                time.sleep(0.1)
            if proc is None or proc.returncode == 0:
                assert self.runner is not None
                self.runner.start()

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
        from demo.shop import Shop, describe

        assert self.stack.source is not None
        first = intervals[0][0].date()
        days = [first - timedelta(days=2), first - timedelta(days=1), *(s.date() for s, _ in intervals)]
        self._log(f"==> generating the shop (seed {self.options.seed}), day by day: {days[0]} .. {days[-1]}")
        self.shop = Shop(self.stack.source.dsn("shop"), seed=self.options.seed)
        self._log(describe(self.shop.build(days)))

    def _advance_to_now(self, intervals: list[tuple[datetime, datetime]], pipelines: list[Pipeline]) -> list[dict]:
        """Today's activity so far: it commits the last interval's late rows, after that interval ran."""
        from demo.shop import describe

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


def _health_tasks(pipeline: Pipeline) -> str | None:
    """Regex of the failover-health tasks (marked success without running on a plain warehouse)."""
    names = [n for n, t in pipeline.types.items() if t in ("failover_health", "failover_health_sensor")]
    return "|".join(rf"(.*\.)?{n}" for n in names) if names else None


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
        f"{len(report.runs)} DAG runs (airflow dags test), {len(report.failed_runs)} failed; warehouse: "
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
