"""Wall time of one dbt model's task: started from the shipped artifacts vs a full parse vs cosmos.

On a generated 200-model project (``dbt_render.generate_project``: 5 layers, a not_null test per model) and
on the example project, each variant runs one model's task (``dbt build`` of the model and its tests) as an
Airflow task (``dag.test()``) against a throwaway PostgreSQL, in a fresh process per run; the figure is the
task instance's duration (start to end of the task in Airflow, interpreter start-up and imports excluded),
median of ``--repeats`` after one warm-up. Each process first runs one empty task: ``dag.test()`` builds an
in-process Execution API whose first request, inside the measured task's start and end, pays its lazy
start-up (5-12 s here, the same for every variant); a deployed api-server is warm.

- ``task_s``: ``DbtOperator`` rendered by the factory, starting from the build-time artifacts
  (``parse_project``: manifest.json + partial_parse.msgpack + build info) in a per-try target dir, with the
  provider's defaults: the warm dbt worker (``dbt/warm_worker.py``; started by the warm-up run, as by a
  worker host's first dbt task) and, the artifacts being current, dbt handed the shipped Manifest;
- ``task_full_parse_s``: the same task without a shipped ``partial_parse.msgpack`` (dbt parses in full:
  checked in each run's dbt.log, ``Starting full parse``);
- ``task_no_worker_s`` / ``task_full_parse_no_worker_s``: both with ``DATAENG_DBT_WARM_WORKER=off`` (dbt
  imported by the task itself, as under the KubernetesExecutor);
- ``cosmos_task_s``: astronomer-cosmos 1.15 ``DbtDag`` with ``LoadMode.DBT_MANIFEST``,
  ``TestBehavior.BUILD`` (one build task per model, like ours) and ``partial_parse=True`` (its default), its
  ``partial_parse.msgpack`` made by ``dbt parse`` with the very profiles.yml the task uses (its best case).

Where one task's time went before the warm worker (in-process, 200 models, load 3-5): our own work
(profile, artifact checks, schema pre-creation) 0.35 s; ``import dbt`` (dbt.cli.main, postgres adapter)
3-5 s; profile/project/adapter load 0.5 s; loading the saved parse and dbt's checks 0.9 s; graph,
adapter cache and schemas 0.3 s; the model and its test 0.4 s; results and XCom 0.3 s. A full parse adds
about 3-4 s. dbt's import alone was more than half of a full-parse task, so no per-task trimming could reach
the 0.5 ratio; the warm worker pays it once per host (and its first-use JSON schemas and serializers,
another 1-2 s per process). See docs/dbt.md for the figures.

Cosmos lives in ``.venv-bench`` (``scripts/bootstrap.sh bench``). Run:
``.venv/bin/python benchmarks/dbt_task.py [--models 200] [--repeats 5]``.
Last line: ``{"models": 200, "task_s": .., "task_full_parse_s": .., "cosmos_task_s": .., "ratio_vs_full_parse": ..,
"task_no_worker_s": .., "task_full_parse_no_worker_s": .., "load_avg_1m": ..}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from dbt_render import BENCH_VENV, VENV, ensure_bench_venv, generate_project  # noqa: E402

from airflow_provider_dataeng.dbt.warm_worker import stop_daemons  # noqa: E402
from devstack.pg import PgCluster  # noqa: E402

CONN_ID = "bench_wh"
MODEL = "m_0_001"  # a first-layer model: builds without its parents

# Shared by both children: run a one-task DAG with dag.test(), print the task instance's duration.
RUN_DAG = r"""
import json, uuid
from datetime import datetime
def run_and_time(dag, state_dir=None):
    from pathlib import Path
    from airflow.models.taskinstance import TaskInstance
    from airflow.providers.common.compat.sdk import DAG
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.utils.session import create_session
    from devstack.airflow_env import run_dag
    # dag.test() builds an in-process Execution API and its first request (inside the task's start/end)
    # pays the API's lazy start-up; a deployed api-server is warm. One empty task first warms it.
    with DAG("bench_warm_" + uuid.uuid4().hex[:8], schedule=None, start_date=datetime(2024, 1, 1)) as warm:
        EmptyOperator(task_id="warm")
    run_dag(warm)
    states = run_dag(dag)
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag.dag_id).all()
        durations = [(ti.end_date - ti.start_date).total_seconds() for ti in tis]
    logs = sorted(Path(state_dir).glob(dag.dag_id + "/*/*/try-*/logs/dbt.log")) if state_dir else []
    text = logs[-1].read_text() if logs else ""
    parse = ("full" if "Starting full parse" in text else "partial" if "Partial parsing enabled" in text
             else "none" if logs else "unknown")
    print(json.dumps({"states": states, "seconds": sum(durations), "tasks": len(tis), "parse": parse}))
"""

OURS = r"""
import json, uuid
from datetime import datetime
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_dataeng.dbt.render import render_dbt
from airflow_provider_dataeng.dbt.spec import DbtRenderSpec
from airflow_provider_dataeng.factory.builder import build_rendered
spec = DbtRenderSpec(project_dir={project!r}, manifest_path={manifest!r}, conn_id={conn!r}, select=[{model!r}],
                     state_dir={state!r})
with DAG("bench_task_" + uuid.uuid4().hex[:8], schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    build_rendered(render_dbt("dbt", spec))
run_and_time(dag, {state!r})
"""

COSMOS = r"""
import json, uuid
from datetime import datetime
from cosmos import DbtDag, ExecutionConfig, LoadMode, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import TestBehavior
dag = DbtDag(
    dag_id="bench_cosmos_" + uuid.uuid4().hex[:8], schedule=None, start_date=datetime(2024, 1, 1),
    project_config=ProjectConfig(dbt_project_path={project!r}, manifest_path={manifest!r}, partial_parse=True,
                                 install_dbt_deps=False),
    profile_config=ProfileConfig(profile_name="dataeng", target_name="airflow", profiles_yml_filepath={profiles!r}),
    render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, select=[{model!r}],
                               test_behavior=TestBehavior.BUILD),
    execution_config=ExecutionConfig(),
)
run_and_time(dag)
"""


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 1)[0]


def log(msg: str) -> None:
    print(f"[dbt_task] {msg}", flush=True)


def child_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"), "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": "(airflow|airflow_provider_dataeng|cosmos)\\..*",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "PYTHONPATH": str(REPO), **extra,
    })
    return env


def time_runs(python: Path, code: str, env: dict[str, str], repeats: int, label: str,
              parse: str | None = None) -> float:
    """Median task seconds over ``repeats`` fresh processes after one warm-up; ``parse``: what dbt's log of
    each run must show (``full``: dbt parsed the whole project; ``none``: dbt parsed nothing)."""
    samples: list[float] = []
    for i in range(repeats + 1):
        proc = subprocess.run([str(python), "-c", RUN_DAG + code], env=env, capture_output=True, text=True, timeout=900)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{label} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        result = json.loads(lines[-1])
        if set(result["states"].values()) != {"success"} or result["tasks"] != 1:
            raise RuntimeError(f"{label}: expected one successful task, got {result['states']}")
        if parse is not None and result["parse"] != parse:
            raise RuntimeError(f"{label}: dbt's log shows parse={result['parse']!r}, expected {parse!r}")
        if i == 0:
            log(f"{label}: warm-up {result['seconds']:.2f}s")
            continue
        samples.append(result["seconds"])
        log(f"{label}: run {i}/{repeats} {result['seconds']:.2f}s (parse: {result['parse']}, load {load()})")
    return statistics.median(samples)


def profiles_yml(cluster: PgCluster, dbname: str) -> str:
    return (f"dataeng:\n  target: airflow\n  outputs:\n    airflow:\n      type: postgres\n      host: {cluster.host}\n"
            f"      port: {cluster.port}\n      user: postgres\n      password: ''\n      dbname: {dbname}\n"
            f"      schema: analytics\n      threads: 1\n")


def measure(work: Path, project_src: Path, cluster: PgCluster, dbname: str, model: str, repeats: int,
            with_cosmos: bool, label: str) -> dict[str, float]:
    from airflow_provider_dataeng.dbt.parse_project import parse_project
    from airflow_provider_dataeng.dbt.workspace import copy_project

    ours = copy_project(project_src, work / f"{label}-ours")
    os.environ["DATAENG_DBT_DBNAME"] = dbname  # the build step, with production's database name
    manifest = parse_project(ours, quiet=True)
    bare = work / f"{label}-bare-target"
    bare.mkdir()
    shutil.copy(manifest, bare / "manifest.json")  # the same manifest, no shipped parse
    home = work / "airflow-home"
    conn = json.dumps({"conn_type": "postgres", "host": cluster.host, "port": cluster.port, "login": "postgres",
                       "schema": dbname})
    # the warm dbt worker (default): its own directory here, stopped at the end
    env = child_env(home, {f"AIRFLOW_CONN_{CONN_ID.upper()}": conn, "DATAENG_DBT_WORKER_DIR": str(work / "workers"),
                           "DATAENG_DBT_WORKER_IDLE_S": "300"})
    out: dict[str, float] = {}
    fmt = {"project": str(ours), "conn": CONN_ID, "model": model, "state": str(work / "state")}
    out["task_s"] = time_runs(VENV / "bin/python", OURS.format(manifest=str(manifest), **fmt), env, repeats,
                              f"{label}: ours, shipped artifacts", parse="none")
    out["task_full_parse_s"] = time_runs(VENV / "bin/python", OURS.format(manifest=str(bare / "manifest.json"), **fmt),
                                         env, repeats, f"{label}: ours, full parse", parse="full")
    cold = {**env, "DATAENG_DBT_WARM_WORKER": "off"}  # dbt imported by the task itself
    out["task_no_worker_s"] = time_runs(VENV / "bin/python", OURS.format(manifest=str(manifest), **fmt), cold,
                                        repeats, f"{label}: ours, shipped artifacts, no warm worker", parse="none")
    out["task_full_parse_no_worker_s"] = time_runs(
        VENV / "bin/python", OURS.format(manifest=str(bare / "manifest.json"), **fmt), cold, repeats,
        f"{label}: ours, full parse, no warm worker", parse="full")
    if with_cosmos:
        theirs = copy_project(project_src, work / f"{label}-cosmos")
        profiles = work / f"{label}-profiles"
        profiles.mkdir()
        (profiles / "profiles.yml").write_text(profiles_yml(cluster, dbname))
        subprocess.run([str(VENV / "bin/dbt"), "parse", "--project-dir", str(theirs), "--profiles-dir", str(profiles),
                        "--quiet", "--no-version-check"], env=env, check=True, cwd=str(theirs))
        bench_env = {**env, "PATH": f"{BENCH_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
        out["cosmos_task_s"] = time_runs(
            BENCH_VENV / "bin/python",
            COSMOS.format(project=str(theirs), manifest=str(theirs / "target" / "manifest.json"),
                          profiles=str(profiles / "profiles.yml"), model=model),
            bench_env, repeats, f"{label}: cosmos DBT_MANIFEST, partial parse",
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-example", action="store_true", help="only the generated project")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still runs the cleanup below
    log("ensuring .venv-bench (astronomer-cosmos)")
    ensure_bench_venv()
    work = Path(tempfile.mkdtemp(prefix="dataeng-bench-dbt-task-"))
    cluster = PgCluster.create("bench-dbt-task")
    try:
        home = work / "airflow-home"
        (home / "dags").mkdir(parents=True)
        subprocess.run([str(VENV / "bin/airflow"), "db", "migrate"], env=child_env(home, {}), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not args.skip_example:
            from tests.fixtures import dbt_shop

            cluster.create_database("shop")
            dbt_shop.create_raw_tables(cluster, "shop")
            ex = measure(work, dbt_shop.PROJECT_DIR, cluster, "shop", "stg_products", max(1, args.repeats // 2),
                         False, "example")
            log(f"example project (stg_products): task {ex['task_s']:.2f}s, full parse {ex['task_full_parse_s']:.2f}s, "
                f"ratio {ex['task_s'] / ex['task_full_parse_s']:.2f}")
        cluster.create_database("bench")
        project = generate_project(work, args.models)
        res = measure(work, project, cluster, "bench", MODEL, args.repeats, True, "generated")
    finally:
        stop_daemons(work / "workers")
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    log(f"ours {res['task_s']:.2f}s vs full parse {res['task_full_parse_s']:.2f}s vs cosmos {res['cosmos_task_s']:.2f}s")
    print(json.dumps({
        "models": args.models,
        "task_s": round(res["task_s"], 3),
        "task_full_parse_s": round(res["task_full_parse_s"], 3),
        "cosmos_task_s": round(res["cosmos_task_s"], 3),
        "ratio_vs_full_parse": round(res["task_s"] / res["task_full_parse_s"], 3),
        "task_no_worker_s": round(res["task_no_worker_s"], 3),
        "task_full_parse_no_worker_s": round(res["task_full_parse_no_worker_s"], 3),
        "load_avg_1m": float(load()),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
