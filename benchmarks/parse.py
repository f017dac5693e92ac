"""DAG parse-time benchmark: our YAML factory vs the same DAGs as plain Python vs dag-factory 1.1.

Generates 100 pipelines x 20 tasks (EmptyOperator tasks, each with the same
``executor_config={"pod_override": V1Pod}``: container ``base``, requests == limits; a 2-edge dependency
pattern; daily schedule; retries in default_args), in three equivalent forms:

* ours: ``dags/dataeng_dags.py`` + ``configs/*.yaml`` (``operator:`` tasks) + ``defaults.yaml``, with the
  shipped ``dags/.airflowignore`` (so the DagBag does not itself walk and zip-check the YAML files);
* plain Python: one ``.py`` file per DAG, V1Pod models sharing one kubernetes ``Configuration`` (as the
  factory does; a fresh ``Configuration`` per model is the client's default and much slower);
* dag-factory 1.1: ``load_yaml_dags`` over equivalent YAML; the pod comes from dag-factory's ``__type__``
  syntax calling a small helper that builds the same V1Pod the same way (shared ``Configuration``).
  Nested ``__type__: kubernetes.client.models.V1Pod`` mappings work too but are ~3x slower still
  (``--k8s-types`` measures that form). dag-factory 1.1 YAML-dumps every DAG's config, pod objects
  included, into its ``doc_md``: most of its time goes there and into its pure-Python YAML loading.

Each figure is the median of 5 fresh processes timing ``DagBag(folder)`` alone (after ``import airflow``
and importing ``DagBag``), in CPU seconds of the process (``time.process_time()``): this machine is shared
(2 cores, other test suites running), where wall-clock medians swing 3x between runs; CPU time does not
count time spent waiting for a core. Wall-clock medians are printed alongside. All variants run in the same interpreter and site-packages (``.venv-bench``,
created here if missing from the ``bench`` extra), with the venv byte-compiled and
``PYTHONDONTWRITEBYTECODE`` unset. ``single_dag_s``: our loader under a parsing context naming one DAG
(``_AIRFLOW_PARSING_CONTEXT_DAG_ID``, what a KubernetesExecutor task pod sets).

Issue 15 adds three figures, each against our loader only:

* ``hostile_overhead_s``: the 100 good pipelines plus the 20 hostile files of ``tests/fixtures/hostile_configs.py``
  (encodings, alias bomb, huge file, deep nesting, FIFO, device, symlink loop, ...), minus the good files
  alone (target < 2 s): what a broken folder costs on top. Every good DAG must still load (checked).
* ``ours_1000_s``: 1,000 pipelines x 20 tasks (target < 30 s, Airflow's default ``dagbag_import_timeout``).
* ``single_dag_1000_s``: one DAG under a parsing context with those 1,000 files present (target < 0.1 s: a
  task pod's parse must not grow with the number of files).

Run: ``.venv/bin/python benchmarks/parse.py``. Last line: one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from devstack.airflow_env import configure_airflow_home
from tests.fixtures.hostile_configs import write_hostile

REPO = Path(__file__).resolve().parents[1]


PIPELINES = 100
TASKS = 20
RUNS = 5
SINGLE_DAG = "pipeline_050"
BENCH_VENV = REPO / ".venv-bench"
EMPTY = "airflow.providers.standard.operators.empty.EmptyOperator"
CHILD_PATH = Path("bench_child.py")  # set in main()


def log(msg: str) -> None:
    print(msg, flush=True)


# --- environment ---------------------------------------------------------------------------------------------
def ensure_bench_venv() -> Path:
    """``.venv-bench`` with dag-factory 1.1 (and cosmos) from the bench extra; idempotent."""
    python = BENCH_VENV / "bin" / "python"
    ok = python.exists() and subprocess.run(
        [str(python), "-c", "import dagfactory, airflow_provider_dataeng"], capture_output=True).returncode == 0
    if not ok:
        log(f"creating {BENCH_VENV} (bench extra: dag-factory 1.1, astronomer-cosmos 1.15) ...")
        subprocess.run(["python3.11", "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "uv"], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "uv"), "pip", "install", "-q", "-p", str(python), "-c",
                        str(REPO / "constraints.txt"), "-e", f"{REPO}[bench]"], check=True, cwd=REPO)
    return python


def byte_compile(python: Path, *dirs: Path) -> None:
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([str(python), "-m", "compileall", "-q", site, *map(str, dirs)], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- generated pipelines -------------------------------------------------------------------------------------
def deps_of(i: int) -> list[int]:
    """Two edges per task: a chain plus a skip link."""
    return [d for d in (i - 1, i - 3) if d >= 0] if i % 2 == 0 else ([i - 1] if i else [])


def memory_of(i: int) -> str:
    return "1Gi" if i % 5 == 4 else "512Mi"


def write_ours(root: Path, pipelines: int = PIPELINES) -> None:
    configs = root / "configs"
    configs.mkdir(parents=True)
    shutil.copy(REPO / "dags" / "dataeng_dags.py", root / "dataeng_dags.py")
    shutil.copy(REPO / "dags" / ".airflowignore", root / ".airflowignore")  # as shipped: DagBag skips configs/
    (configs / "defaults.yaml").write_text(textwrap.dedent("""\
        owner: bench
        start_date: 2026-01-01
        catchup: false
        schedule: "@daily"
        retries: 2
        retry_delay: 5m
        resources: {cpu: 500m, memory: 512Mi}
    """))
    for p in range(pipelines):
        lines = [f"description: generated pipeline {p}", "tags: [bench, generated]", "tasks:"]
        for i in range(TASKS):
            lines.append(f"  task_{i:02d}:")
            lines.append(f"    operator: {EMPTY}")
            if deps_of(i):
                lines.append(f"    depends_on: [{', '.join(f'task_{d:02d}' for d in deps_of(i))}]")
            if memory_of(i) != "512Mi":
                lines.append(f"    resources: {{memory: {memory_of(i)}}}")
        (configs / f"pipeline_{p:03d}.yaml").write_text("\n".join(lines) + "\n")


def write_plain(root: Path) -> None:
    root.mkdir(parents=True)
    for p in range(PIPELINES):
        body = [
            "from datetime import datetime, timedelta",
            "",
            "from airflow.providers.common.compat.sdk import DAG",
            f"from {EMPTY.rsplit('.', 1)[0]} import EmptyOperator",
            "from kubernetes.client import models as k8s",
            "from kubernetes.client.configuration import Configuration",
            "",
            "_CFG = Configuration()",
            "",
            "",
            "def pod(cpu, memory):",
            "    res = {'cpu': cpu, 'memory': memory}",
            "    return k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name='base', resources="
            "k8s.V1ResourceRequirements(requests=dict(res), limits=dict(res), local_vars_configuration=_CFG), "
            "local_vars_configuration=_CFG)], local_vars_configuration=_CFG), local_vars_configuration=_CFG)",
            "",
            "",
            f"with DAG('pipeline_{p:03d}', description='generated pipeline {p}', schedule='@daily', "
            "start_date=datetime(2026, 1, 1), catchup=False, tags=['bench', 'generated'], "
            "default_args={'owner': 'bench', 'retries': 2, 'retry_delay': timedelta(minutes=5)}):",
            "    t = {}",
        ]
        for i in range(TASKS):
            body.append(f"    t['task_{i:02d}'] = EmptyOperator(task_id='task_{i:02d}', "
                        f"executor_config={{'pod_override': pod('500m', '{memory_of(i)}')}})")
        for i in range(TASKS):
            for d in deps_of(i):
                body.append(f"    t['task_{d:02d}'] >> t['task_{i:02d}']")
        (root / f"pipeline_{p:03d}.py").write_text("\n".join(body) + "\n")


POD_HELPER = """\
# V1Pod for a task pod, built like the factory and the plain-Python variant do (one shared client
# Configuration); referenced from the YAML with dag-factory's `__type__` syntax.
from kubernetes.client import models as k8s
from kubernetes.client.configuration import Configuration

_CFG = Configuration()


def pod(cpu, memory):
    res = {"cpu": cpu, "memory": memory}
    return k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", resources=k8s.V1ResourceRequirements(
        requests=dict(res), limits=dict(res), local_vars_configuration=_CFG), local_vars_configuration=_CFG)],
        local_vars_configuration=_CFG), local_vars_configuration=_CFG)
"""


def write_dag_factory(root: Path, k8s_types: bool = False) -> None:
    """dag-factory YAML. The pod comes from ``bench_pods.pod`` (shared Configuration, equivalent to the other
    variants), or with ``k8s_types`` from nested ``__type__: kubernetes.client.models.V1...`` mappings."""
    root.mkdir(parents=True)
    (root / "dag_factory_dags.py").write_text(textwrap.dedent("""\
        # airflow DAG file: dag-factory over the YAML next to it
        import sys
        from pathlib import Path

        from dagfactory import load_yaml_dags

        sys.path.insert(0, str(Path(__file__).parent / "lib"))
        load_yaml_dags(globals_dict=globals(), dags_folder=str(Path(__file__).parent / "configs"))
    """))
    (root / "lib").mkdir()
    (root / "lib" / "bench_pods.py").write_text(POD_HELPER)
    configs = root / "configs"
    configs.mkdir()
    for p in range(PIPELINES):
        lines = [
            f"pipeline_{p:03d}:",
            "  default_args:",
            "    owner: bench",
            "    start_date: 2026-01-01",
            "    retries: 2",
            "    retry_delay_sec: 300",
            "  schedule: '@daily'",
            "  catchup: false",
            f"  description: generated pipeline {p}",
            "  tags: [bench, generated]",
            "  tasks:",
        ]
        for i in range(TASKS):
            lines += [f"    task_{i:02d}:", f"      operator: {EMPTY}", "      executor_config:", "        pod_override:"]
            if k8s_types:
                lines += [
                    "          __type__: kubernetes.client.models.V1Pod",
                    "          spec:",
                    "            __type__: kubernetes.client.models.V1PodSpec",
                    "            containers:",
                    "              - __type__: kubernetes.client.models.V1Container",
                    "                name: base",
                    "                resources:",
                    "                  __type__: kubernetes.client.models.V1ResourceRequirements",
                    f"                  requests: {{cpu: 500m, memory: {memory_of(i)}}}",
                    f"                  limits: {{cpu: 500m, memory: {memory_of(i)}}}",
                ]
            else:
                lines += ["          __type__: bench_pods.pod", "          cpu: 500m", f"          memory: {memory_of(i)}"]
            if deps_of(i):
                lines.append(f"      dependencies: [{', '.join(f'task_{d:02d}' for d in deps_of(i))}]")
        (configs / f"pipeline_{p:03d}.yaml").write_text("\n".join(lines) + "\n")


CHILD = textwrap.dedent("""\
    import json, sys, time
    import airflow  # noqa: F401  (the import costs every variant the same; not timed)
    from airflow.dag_processing.dagbag import DagBag

    start, cpu_start = time.perf_counter(), time.process_time()
    bag = DagBag(dag_folder=sys.argv[1])
    cpu = time.process_time() - cpu_start
    wall = time.perf_counter() - start
    dags = [d for d in bag.dags.values() if "config-error" not in d.tags]  # hostile files: placeholders
    print(json.dumps({"seconds": cpu, "wall": wall, "dags": len(dags), "tasks": sum(len(d.tasks) for d in dags),
                      "pods": sum(1 for d in dags for t in d.tasks if "pod_override" in (t.executor_config or {})),
                      "import_errors": {k: v[-300:] for k, v in bag.import_errors.items()}}))
""")


def run_child(python: Path, child: Path, folder: Path, env: dict[str, str], label: str,
              expect_dags: int) -> dict:
    """One fresh process timing ``DagBag(folder)``; checks it built what it should."""
    proc = subprocess.run([str(python), str(child), str(folder)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label}: child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["import_errors"] or result["dags"] != expect_dags:
        raise SystemExit(f"{label}: expected {expect_dags} DAGs, got {result['dags']}; "
                         f"errors: {result['import_errors']}")
    if expect_dags > 1 and (result["tasks"] != expect_dags * TASKS or result["pods"] != result["tasks"]):
        raise SystemExit(f"{label}: expected {expect_dags * TASKS} tasks with pod_override, got {result}")
    return result


def measure_interleaved(variants: list[tuple[str, Path, Path, dict[str, str], int]], runs: int = RUNS) -> dict[str, float]:
    """Median CPU seconds per variant over RUNS rounds; each round runs every variant once, so a change
    in the machine's load hits all variants alike. One untimed warm-up each (writes bytecode)."""
    for label, python, folder, env, expect in variants:
        run_child(python, CHILD_PATH, folder, env, label, expect)
    cpu: dict[str, list[float]] = {v[0]: [] for v in variants}
    wall: dict[str, list[float]] = {v[0]: [] for v in variants}
    for round_no in range(runs):
        for label, python, folder, env, expect in variants:
            result = run_child(python, CHILD_PATH, folder, env, label, expect)
            cpu[label].append(result["seconds"])
            wall[label].append(result["wall"])
        log(f"  round {round_no + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in cpu.items()))
    out = {}
    for label in cpu:
        out[label] = statistics.median(cpu[label])
        log(f"  {label:<28} CPU median {out[label]:.3f} s (runs {', '.join(f'{t:.2f}' for t in cpu[label])}); "
            f"wall median {statistics.median(wall[label]):.3f} s")
    return out


def main() -> None:
    bench_python = ensure_bench_venv()
    work = Path(tempfile.mkdtemp(prefix="dataeng-bench-parse-"))
    global CHILD_PATH
    CHILD_PATH = work / "bench_child.py"
    try:
        home_env = configure_airflow_home(work / "airflow_home", dags_folder=work / "empty")
        (work / "empty").mkdir()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(home_env)
        env.update({"DO_NOT_TRACK": "1", "SCARF_NO_ANALYTICS": "true",
                    "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False", "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
                    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600"})
        env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
        env.pop("DATAENG_CONFIG_DIR", None)

        log(f"generating {PIPELINES} pipelines x {TASKS} tasks in {work} ...")
        write_ours(work / "ours")
        write_ours(work / "hostile")
        hostile = write_hostile(work / "hostile" / "configs")
        log(f"  + {len(hostile)} hostile files in {work / 'hostile'}")
        write_ours(work / "ours_1000", pipelines=1000)
        write_plain(work / "plain")
        write_dag_factory(work / "dag_factory", k8s_types="--k8s-types" in sys.argv)
        CHILD_PATH.write_text(CHILD)

        log("byte-compiling the bench venv and the package ...")
        byte_compile(bench_python, REPO / "airflow_provider_dataeng")

        single_env = dict(env, _AIRFLOW_PARSING_CONTEXT_DAG_ID=SINGLE_DAG)
        log(f"timing DagBag collection: {RUNS} rounds of fresh processes ({bench_python}):")
        medians = measure_interleaved([
            ("ours", bench_python, work / "ours", env, PIPELINES),
            ("plain_python", bench_python, work / "plain", env, PIPELINES),
            ("dag_factory", bench_python, work / "dag_factory", env, PIPELINES),
            ("ours_single_dag", bench_python, work / "ours", single_env, 1),
        ])
        log(f"timing our loader over 100 good + {len(hostile)} hostile files, and over 1,000 pipelines:")
        extra = measure_interleaved([
            ("ours_good", bench_python, work / "ours", env, PIPELINES),
            ("ours_hostile", bench_python, work / "hostile", env, PIPELINES),
            ("ours_1000", bench_python, work / "ours_1000", env, 1000),
            ("ours_single_dag_1000", bench_python, work / "ours_1000",
             dict(env, _AIRFLOW_PARSING_CONTEXT_DAG_ID="pipeline_500"), 1),
        ], runs=3)
        ours, plain, dag_factory = medians["ours"], medians["plain_python"], medians["dag_factory"]
        single = medians["ours_single_dag"]
        log("note: plain Python and dag-factory import the whole kubernetes client (~0.35 s CPU here) for their "
            "V1Pods; the factory imports only the model modules it builds (factory/kubernetes.py)")

        print(json.dumps({
            "ours_s": round(ours, 3),
            "plain_python_s": round(plain, 3),
            "dag_factory_s": round(dag_factory, 3),
            "ratio_vs_plain": round(ours / plain, 3),
            "ratio_vs_dag_factory": round(ours / dag_factory, 3),
            "single_dag_s": round(single, 3),
            "hostile_overhead_s": round(extra["ours_hostile"] - extra["ours_good"], 3),
            "ours_1000_s": round(extra["ours_1000"], 3),
            "single_dag_1000_s": round(extra["ours_single_dag_1000"], 3),
        }), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
