"""The import rules of docs/architecture.md, checked on the source with ``ast`` (no module is imported).

- Engines (the packages that do the work) never import operators, sensors, triggers, the factory, or
  Airflow's operator classes: operators call engines, not the other way round.
- The factory never imports an operator, sensor or trigger module: it reaches them only through the class
  paths of its task-type registry, when a DAG is built.
- Rendering (dbt/render.py) emits task descriptions; only the builder maps them to operators.
- Hooks import no operator, sensor, trigger, engine or factory module.
- Only ``connections.py`` constructs hooks; a raw driver connect happens only in the modules listed in
  RAW_CONNECT, each with its reason.
- Parsing a DAG file of the factory imports no driver, dbt, jsonschema or the full kubernetes client (checked
  in a fresh process, the one test here that imports the package): operators import their engines when they
  run, the factory imports only the specs of the task types a pipeline uses.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "airflow_provider_dataeng"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

ENGINES = ("extract", "publish", "freshness", "gaps", "failover", "dbt", "notifications", "lineage")
TASK_LAYERS = ("operators", "sensors", "triggers")
AIRFLOW_OPERATOR_MODULE = re.compile(r"^airflow(\.providers\.[\w.]+?)?\.(operators|sensors)(\.|$)|^airflow\.models\.baseoperator")
AIRFLOW_OPERATOR_NAMES = frozenset({"BaseOperator", "BaseSensorOperator", "KubernetesPodOperator"})
# Modules that open a driver connection themselves, with connection parameters from connect()'s hook.
RAW_CONNECT = {
    "hooks/postgres.py": "the failover-aware hook's own connect (multi-host, backoff)",
    "triggers/freshness.py": "async connection in the triggerer, parameters from connect()",
    "triggers/failover_health.py": "async connection and LISTEN in the triggerer, parameters from connect()",
    "failover/replication_health.py": "probes each host of a connect() hook on its own, parameters from the hook",
}


# Known breaks of a rule, each a strict xfail naming who fixes it (remove the entry with the fix).
KNOWN_VIOLATIONS: dict[str, str] = {}


def _known(files: list[str]) -> list:
    return [pytest.param(rel, marks=pytest.mark.xfail(strict=True, reason=KNOWN_VIOLATIONS[rel]))
            if rel in KNOWN_VIOLATIONS else rel for rel in files]


@dataclass(frozen=True)
class Import:
    module: str  # the imported module, absolute
    names: tuple[str, ...]
    line: int
    top_level: bool  # executed when the importing module is imported


def _modules() -> dict[str, ast.Module]:
    return {
        path.relative_to(ROOT).as_posix(): ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for path in sorted(ROOT.rglob("*.py"))
    }


SOURCES = _modules()


def _package_of(rel: str) -> str:
    """The package a module is in: ``freshness/spec.py`` and ``freshness/__init__.py`` -> ``...freshness``."""
    return ".".join([PACKAGE, *rel.removesuffix(".py").split("/")[:-1]])


def _imports(rel: str) -> list[Import]:
    tree = SOURCES[rel]
    top = {id(node) for node in tree.body}
    # imports under `if TYPE_CHECKING:` never run
    type_only = {id(n) for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append(Import(alias.name, (), node.lineno, id(node) in top))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(rel).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = tuple(a.name for a in node.names)
            out.append(Import(module, names, node.lineno, id(node) in top))
            for name in names:  # `from airflow_provider_dataeng import operators`
                out.append(Import(f"{module}.{name}", (), node.lineno, id(node) in top))
    return out


def _in(rel: str, *packages: str) -> bool:
    return rel.split("/")[0] in packages


def _internal(module: str, *packages: str) -> bool:
    return any(module == f"{PACKAGE}.{p}" or module.startswith(f"{PACKAGE}.{p}.") for p in packages)


def _violations(rel: str, forbidden: tuple[str, ...], *, airflow_operators: bool, top_level_only: bool = False) -> list[str]:
    found = []
    for imp in _imports(rel):
        if top_level_only and not imp.top_level:
            continue
        if _internal(imp.module, *forbidden):
            found.append(f"{rel}:{imp.line} imports {imp.module}")
        if airflow_operators and (AIRFLOW_OPERATOR_MODULE.search(imp.module)
                                  or AIRFLOW_OPERATOR_NAMES & set(imp.names)):
            found.append(f"{rel}:{imp.line} imports Airflow operator classes from {imp.module}")
    return found


def _files(*packages: str) -> list[str]:
    return [rel for rel in SOURCES if _in(rel, *packages)]


def test_the_rules_see_the_package():
    assert len(SOURCES) > 50 and "connections.py" in SOURCES and "factory/builder.py" in SOURCES
    assert _files("freshness") and _files("operators") and _files("factory")
    # the checker finds what it is meant to find
    assert _violations("sensors/freshness.py", ("freshness",), airflow_operators=True)


@pytest.mark.parametrize("rel", _files(*ENGINES))
def test_engines_never_import_operators_factory_or_airflow_operators(rel: str):
    assert not _violations(rel, (*TASK_LAYERS, "factory"), airflow_operators=True)


@pytest.mark.parametrize("rel", _files("hooks"))
def test_hooks_import_no_task_layer_engine_or_factory(rel: str):
    assert not _violations(rel, (*TASK_LAYERS, *ENGINES, "factory"), airflow_operators=True)


@pytest.mark.parametrize("rel", _known(_files("factory")))
def test_factory_never_imports_operators(rel: str):
    """Operators are reached only through the registry's class paths (factory/task_types.py)."""
    assert not _violations(rel, TASK_LAYERS, airflow_operators=True)


@pytest.mark.parametrize("rel", _files("triggers"))
def test_triggers_import_no_operator_or_sensor(rel: str):
    assert not _violations(rel, ("operators", "sensors", "factory"), airflow_operators=True)


def test_base_modules_import_nothing_above_them():
    for rel in ("values.py", "durations.py", "specs.py"):
        assert not _violations(rel, (*TASK_LAYERS, *ENGINES, "factory", "hooks"), airflow_operators=True), rel
    # connections.py builds hooks (imported when called), nothing else
    assert not _violations("connections.py", (*TASK_LAYERS, *ENGINES, "factory"), airflow_operators=True)


def _calls(tree: ast.Module) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return ast.unparse(func)
    return ""


@pytest.mark.parametrize("rel", [rel for rel in SOURCES if rel != "connections.py"])
def test_only_connections_constructs_hooks(rel: str):
    built = [
        f"{rel}:{call.lineno} {_callee(call)}(...)" for call in _calls(SOURCES[rel])
        if _callee(call).rsplit(".", 1)[-1].endswith("Hook")
    ]
    assert not built, f"build hooks with airflow_provider_dataeng.connections.connect(): {built}"


@pytest.mark.parametrize("rel", [rel for rel in SOURCES if rel not in RAW_CONNECT])
def test_no_raw_driver_connections_elsewhere(rel: str):
    raw = [
        f"{rel}:{call.lineno} {_callee(call)}(...)" for call in _calls(SOURCES[rel])
        if re.search(r"(^|\.)(psycopg2?|AsyncConnection|Connection)\.connect$", _callee(call))
    ]
    assert not raw, f"connect through connections.connect() (or list the module in RAW_CONNECT with why): {raw}"


def test_the_checker_catches_a_hook_built_outside_connections(tmp_path):
    tree = ast.parse("from x import FailoverPostgresHook\nhook = FailoverPostgresHook(postgres_conn_id='w')\n")
    assert [_callee(c) for c in _calls(tree)] == ["FailoverPostgresHook"]


# One definition of each small helper (issue 12): the home module of each, by the names it is known under.
HELPER_HOMES = {
    "values.py": re.compile(r"^_?(as_list|first_line|is_templated|import_path)$"),
    "notifications/deadline.py": re.compile(r"^_?(make_deadline_alert|deadline_alert|build_deadline)$"),
    "factory/graph.py": re.compile(r"^_?topological(_order|_sort)?$"),
}


@pytest.mark.parametrize("rel", list(SOURCES))
def test_small_helpers_have_one_definition(rel: str):
    tree = SOURCES[rel]
    copies = [
        f"{rel}:{node.lineno} def {node.name} (the one is in {home})"
        for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for home, pattern in HELPER_HOMES.items() if rel != home and pattern.match(node.name)
    ]
    assert not copies
    if rel != "values.py":  # "is this templated?" is values.is_templated, not a local "{{" test
        markers = [f"{rel}:{node.lineno}" for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and node.value in ("{{", "{%")]
        assert not markers, f"use airflow_provider_dataeng.values.is_templated: {markers}"


# --- what parsing a DAG file may import ------------------------------------------------------------------------
# Imported while a DAG file of the factory is parsed, they would cost every parse (the DAG processor's, each
# task pod's) tens to hundreds of milliseconds for what only a running task needs.
PARSE_FORBIDDEN = {
    "psycopg": "the engines' driver (~0.1 s to import): operators import their engine in execute()",
    "psycopg2": "dbt-postgres's driver",
    "psycopg_pool": "connection pools belong to running tasks",
    "dbt": "dbt-core: dbt tasks render from manifest.json; dbt itself runs in the task",
    "jsonschema": "the shipped JSON Schema is for editors and `dataeng schema`; parsing validates with pydantic",
    "kubernetes.client.api": "the full kubernetes client: a pod override needs five model classes",
    "kubernetes.config": "the kubernetes client's config loading (the executor's business)",
    "airflow.providers.cncf.kubernetes": "KubernetesPodOperator and the executor: dbt's pod mode only",
    "airflow.providers.common.sql": "SQL operators/hooks are not used to build DAGs",
    "airflow.providers.postgres.hooks": "hooks are built when a task runs (connections.connect)",
    "airflow_provider_dataeng.hooks": "hooks are built when a task runs (connections.connect)",
    "urllib3": "the kubernetes client's HTTP layer (~20 ms): factory/kubernetes.py binds a stand-in",
}
# Allowed, and why: `kubernetes` / `kubernetes.client` / `kubernetes.client.models` are deferred packages
# (factory/kubernetes.py) holding only the model modules of the pod override and
# `kubernetes.client.configuration`; `airflow.providers.postgres.assets` is how Airflow normalizes the
# postgres:// URIs of the tables' Assets (the baseline DAG has one).

PARSE_CHILD = textwrap.dedent("""
    import json, sys
    import airflow  # noqa: F401
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.1
        from airflow.models.dagbag import DagBag
    DagBag(dag_folder=sys.argv[2])  # first what Airflow itself imports to parse a DAG with a postgres Asset
    before = set(sys.modules)
    bag = DagBag(dag_folder=sys.argv[1])
    print(json.dumps({"dags": sorted(bag.dags), "errors": {k: v[-2000:] for k, v in bag.import_errors.items()},
                      "imported": sorted(set(sys.modules) - before)}))
""")

PLAIN_DAG = """\
from airflow.providers.common.compat.sdk import DAG, Asset
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("plain", schedule=None):
    EmptyOperator(task_id="t", outlets=[Asset("postgres://warehouse:5432/db/raw/t")])
"""

EVERY_ENGINE_TASK = """\
schedule: "@daily"
start_date: 2026-01-01
tasks:
  load:
    type: publish
    conn_id: warehouse
    target_table: marts.daily
    sql: select 1 as x
    checks: [{check: row_count, min: 1}, {check: unique, columns: [x]}]
  check:
    type: quality
    conn_id: warehouse
    table: marts.daily
    checks: [{check: null_fraction, column: x, max: 0}]
    depends_on: load
  undo:
    type: rollback
    conn_id: warehouse
    target_table: marts.daily
    trigger_rule: all_failed
    depends_on: check
"""


def _parse_dag_file(config_dir: Path, dag_id: str | None) -> dict:
    env = {**os.environ, "AIRFLOW__DATAENG__CONFIG_DIR": str(config_dir), "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"}
    env.pop("DATAENG_CONFIG_DIR", None)
    env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
    if dag_id:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
    dag_file = ROOT.parent / "dags" / "dataeng_dags.py"
    plain = config_dir.parent / "plain_dag.py"
    plain.write_text(PLAIN_DAG)
    proc = subprocess.run([sys.executable, "-c", PARSE_CHILD, str(dag_file), str(plain)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _forbidden(imported: list[str]) -> list[str]:
    """``"<forbidden module> (<why>)"`` for each entry of PARSE_FORBIDDEN that ``imported`` holds."""
    return [f"{top} ({why})" for top, why in PARSE_FORBIDDEN.items()
            if any(m == top or m.startswith(top + ".") for m in imported)]


@pytest.mark.parametrize("dag_id", [None, "orders"], ids=["dag-processor", "task-pod"])
def test_parsing_the_dag_file_imports_no_driver_dbt_or_full_kubernetes(tmp_path: Path, dag_id: str | None):
    """A fresh process parses dags/dataeng_dags.py over the example configs plus a publish/quality/rollback
    pipeline: every task type of the registry (but failover_health_sensor, whose operator imports the same as
    failover_health's) is built, and none of PARSE_FORBIDDEN is imported. ``task-pod``: the parsing context
    of a task (one DAG)."""
    configs = tmp_path / "configs"
    shutil.copytree(ROOT.parent / "dags" / "configs", configs)
    (configs / "every_engine_task.yaml").write_text(EVERY_ENGINE_TASK)
    out = _parse_dag_file(configs, dag_id)
    assert not out["errors"], out["errors"]
    expected = {"orders"} if dag_id else {p.stem for p in configs.glob("*.yaml") if p.stem != "defaults"}
    assert set(out["dags"]) == expected
    assert "kubernetes.client.models.v1_pod" in out["imported"]  # the pods were built ...
    assert not _forbidden(out["imported"])  # ... without the full client, and no driver or dbt
    assert "airflow_provider_dataeng.operators.extract" in out["imported"]


def test_the_parse_import_check_sees_a_driver_import():
    assert _forbidden(["psycopg.sql", "psycopgx", "kubernetes.client.models.v1_pod", "dbt.cli.main"]) == [
        f"psycopg ({PARSE_FORBIDDEN['psycopg']})", f"dbt ({PARSE_FORBIDDEN['dbt']})"]
