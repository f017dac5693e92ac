"""Time to build a DAG from a 500-model dbt project: our render_dbt vs astronomer-cosmos 1.15.

Generates a project (5 layers of 100 models; every model refs its predecessor in the previous layer,
every third one also fans in two more; a not_null test per model), runs ``dbt parse`` once, then times,
each in a fresh process and as the median of 5 (after one warm-up):

- ``ours_s``: ``with DAG(...): build_rendered(render_dbt("dbt", DbtRenderSpec(..., render="model")))``
  (manifest.json read + 500 task descriptions + 500 operators);
- ``cosmos_manifest_s``: ``DbtDag(...)`` with ``LoadMode.DBT_MANIFEST`` (cosmos's default
  ``TestBehavior.AFTER_EACH``: a run and a test task per model; ``--cosmos-build`` also times
  ``TestBehavior.BUILD``, one task per model like ours, as a progress line);
- ``cosmos_dbt_ls_s``: ``DbtDag(...)`` with ``LoadMode.DBT_LS`` (``dbt ls`` with a warm partial parse;
  cosmos's Airflow-Variable cache of the ls output is disabled so that dbt ls actually runs).

Imports are not timed (only the DAG-building call), byte code is compiled first. Cosmos lives in
``.venv-bench`` (it is not installed into ``.venv``: it registers an Airflow plugin). Run:
``.venv/bin/python benchmarks/dbt_render.py [--models 500] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VENV = REPO / ".venv"
BENCH_VENV = REPO / ".venv-bench"
LAYERS = 5

OURS = r"""
import json, sys, time
from datetime import datetime
sys.path.insert(0, {repo!r})
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_dataeng.dbt.render import render_dbt
from airflow_provider_dataeng.dbt.spec import DbtRenderSpec
from airflow_provider_dataeng.factory.builder import build_rendered
t0 = time.perf_counter()
with DAG("bench_ours", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    spec = DbtRenderSpec(project_dir={project!r}, manifest_path={manifest!r}, conn_id="warehouse", render="model")
    build_rendered(render_dbt("dbt", spec))
elapsed = time.perf_counter() - t0
print(json.dumps({{"seconds": elapsed, "tasks": len(dag.task_dict)}}))
"""

COSMOS = r"""
import json, time
from datetime import datetime
from cosmos import DbtDag, ExecutionConfig, LoadMode, ProfileConfig, ProjectConfig, RenderConfig  # dbt: on PATH
mode = LoadMode.{mode}
from cosmos.constants import TestBehavior
t0 = time.perf_counter()
dag = DbtDag(
    dag_id="bench_cosmos",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    project_config=ProjectConfig(dbt_project_path={project!r}, manifest_path={manifest!r},
                                 install_dbt_deps=False),
    profile_config=ProfileConfig(profile_name="dataeng", target_name="airflow",
                                 profiles_yml_filepath={profiles!r}),
    render_config=RenderConfig(load_method=mode, test_behavior=TestBehavior.{tests}),
    execution_config=ExecutionConfig(),
)
elapsed = time.perf_counter() - t0
print(json.dumps({{"seconds": elapsed, "tasks": len(dag.task_dict)}}))
"""


def log(msg: str) -> None:
    print(f"[dbt_render] {msg}", flush=True)


def generate_project(root: Path, models: int) -> Path:
    """A dbt project of ``models`` models in LAYERS folders with chains and fan-ins, one test each."""
    project = root / "bench_project"
    shutil.rmtree(project, ignore_errors=True)
    per_layer = max(1, models // LAYERS)
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: bench\nversion: '1.0.0'\nconfig-version: 2\nprofile: dataeng\nmodel-paths: ['models']\n"
        "models:\n  bench:\n    +materialized: view\n"
    )
    made = 0
    for layer in range(LAYERS):
        folder = project / "models" / f"layer_{layer}"
        folder.mkdir()
        count = per_layer if layer < LAYERS - 1 else models - made
        tests = ["version: 2", "models:"]
        for j in range(count):
            name = f"m_{layer}_{j:03d}"
            if layer == 0:
                sql = f"select {j} as id"
            else:
                prev = per_layer
                parents = [f"m_{layer - 1}_{j % prev:03d}"]
                if j % 3 == 0:  # fan-in
                    parents += [f"m_{layer - 1}_{(j * 7 + 1) % prev:03d}", f"m_{layer - 1}_{(j * 13 + 5) % prev:03d}"]
                parents = list(dict.fromkeys(parents))
                sql = "\nunion all\n".join(f"select id from {{{{ ref('{p}') }}}}" for p in parents)
            (folder / f"{name}.sql").write_text(sql + "\n")
            tests += [f"  - name: {name}", "    columns:", "      - name: id", "        data_tests: [not_null]"]
            made += 1
        (folder / "_schema.yml").write_text("\n".join(tests) + "\n")
    return project


def ensure_bench_venv() -> None:
    """Create .venv-bench (cosmos) if missing; a lock file serializes concurrent creators."""
    script = (
        f"cd {REPO} && if ! {BENCH_VENV}/bin/python -c 'import cosmos' 2>/dev/null; then "
        f"python3.11 -m venv {BENCH_VENV} && {BENCH_VENV}/bin/pip install -q uv && "
        f"{BENCH_VENV}/bin/uv pip install -q -p {BENCH_VENV}/bin/python -c constraints.txt -e '.[bench]'; fi"
    )
    subprocess.run(["flock", "/tmp/venv-bench.lock", "sh", "-c", script], check=True)


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS": "False",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    })
    return env


def time_child(python: Path, code: str, env: dict[str, str], repeats: int, label: str) -> tuple[float, int]:
    """Median seconds over ``repeats`` fresh processes (after one warm-up) and the task count."""
    samples: list[float] = []
    tasks = 0
    for i in range(repeats + 1):
        out = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{label} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        tasks = result["tasks"]
        if i == 0:
            log(f"{label}: warm-up {result['seconds']:.3f}s, {tasks} tasks")
            continue
        samples.append(result["seconds"])
        log(f"{label}: run {i}/{repeats} {result['seconds']:.3f}s")
    return statistics.median(samples), tasks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the generated project")
    parser.add_argument("--cosmos-build", action="store_true",
                        help="also time cosmos with TestBehavior.BUILD (one task per model; not in the JSON)")
    args = parser.parse_args()

    log("ensuring .venv-bench (astronomer-cosmos)")
    ensure_bench_venv()
    log("byte-compiling both venvs")
    for venv in (VENV, BENCH_VENV):
        subprocess.run([str(venv / "bin/python"), "-m", "compileall", "-q", "-j", "0", str(venv / "lib")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    from airflow_provider_dataeng.dbt.profile import parse_time_profile

    work = Path(tempfile.mkdtemp(prefix="dataeng-bench-dbt-"))
    try:
        project = generate_project(work, args.models)
        (work / "profiles").mkdir()
        profiles = work / "profiles" / "profiles.yml"
        profiles.write_text(parse_time_profile().profiles_yml())
        log(f"generated {args.models} models in {project}; dbt parse")
        env = child_env(work / "airflow-home")
        (work / "airflow-home").mkdir()
        subprocess.run(
            [str(VENV / "bin/dbt"), "parse", "--project-dir", str(project), "--profiles-dir", str(profiles.parent),
             "--profile", "dataeng", "--target", "airflow", "--quiet", "--no-version-check"],
            env=env, check=True, cwd=str(project),
        )
        manifest = project / "target" / "manifest.json"
        nodes = json.loads(manifest.read_text())["nodes"]
        n_models = sum(1 for n in nodes.values() if n["resource_type"] == "model")
        n_tests = sum(1 for n in nodes.values() if n["resource_type"] == "test")
        log(f"manifest: {n_models} models, {n_tests} tests, {manifest.stat().st_size / 1e6:.1f} MB")

        ours, ours_tasks = time_child(
            VENV / "bin/python", OURS.format(repo=str(REPO), project=str(project), manifest=str(manifest)),
            env, args.repeats, "ours (render_dbt, model mode)",
        )
        cosmos = {}
        bench_env = {**env, "PATH": f"{BENCH_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
        for mode in ("DBT_MANIFEST", "DBT_LS"):
            code = COSMOS.format(mode=mode, tests="AFTER_EACH", project=str(project), manifest=str(manifest),
                                 profiles=str(profiles))
            cosmos[mode] = time_child(BENCH_VENV / "bin/python", code, bench_env, args.repeats, f"cosmos {mode}")
        if args.cosmos_build:  # informational: cosmos with one `dbt build` task per model, like ours
            code = COSMOS.format(mode="DBT_MANIFEST", tests="BUILD", project=str(project), manifest=str(manifest),
                                 profiles=str(profiles))
            build_s, build_tasks = time_child(BENCH_VENV / "bin/python", code, bench_env, args.repeats,
                                              "cosmos DBT_MANIFEST, TestBehavior.BUILD")
            log(f"cosmos DBT_MANIFEST with TestBehavior.BUILD: {build_s:.3f}s for {build_tasks} tasks "
                f"(ours {ours:.3f}s for {ours_tasks})")
        if ours_tasks != n_models:
            raise RuntimeError(f"render_dbt made {ours_tasks} tasks for {n_models} models")
        log(f"tasks: ours {ours_tasks}, cosmos manifest {cosmos['DBT_MANIFEST'][1]}, cosmos dbt_ls {cosmos['DBT_LS'][1]}")
        log(f"ours is {cosmos['DBT_MANIFEST'][0] / ours:.1f}x faster than cosmos DBT_MANIFEST, "
            f"{cosmos['DBT_LS'][0] / ours:.1f}x faster than DBT_LS")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({
        "models": n_models,
        "ours_s": round(ours, 4),
        "cosmos_manifest_s": round(cosmos["DBT_MANIFEST"][0], 4),
        "cosmos_dbt_ls_s": round(cosmos["DBT_LS"][0], 4),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
