"""The warm dbt worker (issue 16 item 7): in-process dbt tasks run in a child forked from one daemon that has
dbt imported and the shipped Manifest loaded; the task keeps its logs, results, environment, cancellation
and session clean-up; whenever the worker cannot serve, or the shipped parse is not current for the run,
the task says why and falls back (dbt in the task's process; dbt's own partial parse). Real dbt, real
PostgreSQL."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_dataeng.dbt import warm_worker
from airflow_provider_dataeng.dbt.parse_project import parse_project
from airflow_provider_dataeng.dbt.results import DbtRunError
from airflow_provider_dataeng.dbt.runner import DbtRunner
from airflow_provider_dataeng.dbt.workspace import copy_project
from devstack.airflow_env import register_cluster_connection, unregister_connection
from tests.fixtures import dbt_shop
from tests.fixtures.extract import rows_of

pytestmark = pytest.mark.slow

IN_WORKER = re.compile(r"dbt runs in warm worker process (\d+)")
HANDED_BY_WORKER = "dbt is handed the build-time Manifest held by the warm dbt worker: no parse"
HANDED_IN_TASK = "dbt is handed the build-time Manifest loaded from"
SLOW_MODEL = "{{ config(materialized='table') }}\nselect pg_sleep({{ var('sleep_s', 0) }}) is not null as slept\n"
ENV_MODEL = "select '{{ env_var('DATAENG_TEST_NOTE', 'none') }}'::text as note\n"


def _has(lines: dbt_shop.LogLines, text: str) -> bool:
    return any(text in line for line in lines.lines)


def _logger() -> tuple[logging.Logger, dbt_shop.LogLines]:
    return dbt_shop.capture_log("dbt-worker")


@pytest.fixture(scope="module")
def shipped(pg_cluster, tmp_path_factory) -> Iterator[tuple[str, str, Path]]:
    """(conn_id, dbname, project): the example project plus a slow and an env-reading model, its artifacts
    built for this database with DATAENG_TEST_NOTE=built."""
    dbname = f"dbt_ww_{uuid.uuid4().hex[:8]}"
    conn_id = f"dbt_ww_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(dbname)
    dbt_shop.create_raw_tables(pg_cluster, dbname)
    register_cluster_connection(conn_id, pg_cluster, dbname)
    project = copy_project(dbt_shop.PROJECT_DIR, tmp_path_factory.mktemp("ww") / "project")
    (project / "models" / "slow").mkdir()
    (project / "models" / "slow" / "slow_sleep.sql").write_text(SLOW_MODEL)
    (project / "models" / "slow" / "env_note.sql").write_text(ENV_MODEL)
    saved = {k: os.environ.get(k) for k in ("DATAENG_DBT_DBNAME", "DATAENG_TEST_NOTE")}
    os.environ.update(DATAENG_DBT_DBNAME=dbname, DATAENG_TEST_NOTE="built")
    try:
        parse_project(project, quiet=True)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    try:
        yield conn_id, dbname, project
    finally:
        unregister_connection(conn_id)
        pg_cluster.drop_database(dbname)


@pytest.fixture
def worker_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private worker directory for this test; its daemon is stopped at the end."""
    directory = tmp_path / "workers"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv(warm_worker.DIR_ENV, str(directory))
    monkeypatch.setenv(warm_worker.SETTING_ENV, "auto")
    monkeypatch.setenv(warm_worker.IDLE_ENV, "120")
    monkeypatch.setenv("DATAENG_TEST_NOTE", "built")
    monkeypatch.delenv("AIRFLOW_IS_K8S_EXECUTOR_POD", raising=False)
    try:
        yield directory
    finally:
        warm_worker.stop_daemons(directory)


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _run(conn_id: str, project: Path, run_dir: Path, **kwargs):
    log, lines = _logger()
    result = DbtRunner(conn_id, project, log=log).run(kwargs.pop("command", "run"), run_dir=run_dir,
                                                      artifacts_dir=project / "target", **kwargs)
    return result, lines


def test_tasks_run_in_forked_children_of_one_warm_worker_from_the_shipped_manifest(
        shipped, worker_dir: Path, tmp_path: Path) -> None:
    conn_id, dbname, project = shipped
    first, lines1 = _run(conn_id, project, tmp_path / "t1", select="stg_products")
    (daemon_pid,) = [int(p.read_text()) for p in worker_dir.glob("*.pid")]
    second, lines2 = _run(conn_id, project, tmp_path / "t2", select="stg_products", command="build")

    children = []
    for result, lines, run_dir in ((first, lines1, "t1"), (second, lines2, "t2")):
        assert result.success, lines.lines
        assert _has(lines, HANDED_BY_WORKER), "\n".join(lines.lines)
        (child,) = [int(m.group(1)) for line in lines.lines if (m := IN_WORKER.search(line))]
        children.append(child)
        dbt_log = (tmp_path / run_dir / "logs" / "dbt.log").read_text()
        assert "Starting full parse" not in dbt_log and "Partial parsing enabled" not in dbt_log  # no parse
        assert (tmp_path / run_dir / "target" / "run_results.json").is_file()  # written by the child
        assert _has(lines, "dbt: Running with dbt=") and _has(lines, "dbt results:")  # dbt's events reach the task log
    assert [n.unique_id for n in first.nodes] == ["model.dataeng_shop.stg_products"]
    assert {n.unique_id for n in second.nodes} >= {"model.dataeng_shop.stg_products"}  # build: with its tests
    assert len(second.nodes) > 1
    # one daemon, a fresh child per task (neither is this process), each gone when its task ended
    assert [int(p.read_text()) for p in worker_dir.glob("*.pid")] == [daemon_pid]
    assert len(set(children)) == 2 and os.getpid() not in children and daemon_pid not in children
    assert all(_gone(c) for c in children)


def test_the_task_environment_reaches_dbt_and_a_changed_env_var_or_vars_fall_back_to_dbts_parse(
        shipped, worker_dir: Path, tmp_path: Path, pg_cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id, dbname, project = shipped
    result, lines = _run(conn_id, project, tmp_path / "same", select="env_note")
    assert result.success and _has(lines, HANDED_BY_WORKER), lines.lines
    assert rows_of(pg_cluster, dbname, "select note from analytics.env_note") == [("built",)]

    # an env var the project reads changed since the build: dbt re-parses (it would render another value)
    monkeypatch.setenv("DATAENG_TEST_NOTE", "task")
    result, lines = _run(conn_id, project, tmp_path / "env", select="env_note")
    assert result.success and IN_WORKER.search("\n".join(lines.lines)), lines.lines
    assert _has(lines, "Environment variable(s) read by the project changed since the build (DATAENG_TEST_NOTE)")
    assert not _has(lines, HANDED_BY_WORKER)
    assert "Partial parsing: updated file: dataeng_shop://models/slow/env_note.sql" in (
        tmp_path / "env" / "logs" / "dbt.log").read_text()
    assert rows_of(pg_cluster, dbname, "select note from analytics.env_note") == [("task",)]

    # --vars: dbt compares them with the parse's itself
    monkeypatch.setenv("DATAENG_TEST_NOTE", "built")
    result, lines = _run(conn_id, project, tmp_path / "vars", select="slow_sleep", vars={"sleep_s": 0})
    assert result.success, lines.lines
    assert _has(lines, "dbt loads the build-time parse itself and checks the project's files: the task passes "
                     "--vars")
    dbt_log = (tmp_path / "vars" / "logs" / "dbt.log").read_text()
    assert "Unable to do partial parsing because config vars" in dbt_log  # dbt's own check, then a real parse:
    assert "1 of 1 OK created sql table model analytics.slow_sleep" in "\n".join(lines.lines)  # not "Nothing to do"

    # a project changed since the build: logged, dbt re-parses the file (never the stale Manifest)
    model = project / "models" / "slow" / "env_note.sql"
    original = model.read_text()
    try:
        model.write_text(original.replace("as note", "as note, 2 as version"))
        result, lines = _run(conn_id, project, tmp_path / "stale", select="env_note")
        assert result.success and _has(lines, "changed since its artifacts") and not _has(lines, HANDED_BY_WORKER)
        assert "1 files changed" in (tmp_path / "stale" / "logs" / "dbt.log").read_text()
        assert rows_of(pg_cluster, dbname, "select version from analytics.env_note") == [(2,)]
    finally:
        model.write_text(original)


@pytest.mark.parametrize("how", ["off", "kubernetes_pod", "unreachable"])
def test_without_a_warm_worker_dbt_runs_in_the_task_process(
        how: str, shipped, worker_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id, _, project = shipped
    if how == "off":
        monkeypatch.setenv(warm_worker.SETTING_ENV, "off")
    elif how == "kubernetes_pod":  # the KubernetesExecutor runs one task per pod: no daemon to reuse
        monkeypatch.setenv("AIRFLOW_IS_K8S_EXECUTOR_POD", "True")
    else:  # a directory others can write to is refused
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o777)
        shared.chmod(0o777)
        monkeypatch.setenv(warm_worker.DIR_ENV, str(shared))
    result, lines = _run(conn_id, project, tmp_path / "t", select="stg_products")
    assert result.success, lines.lines
    assert not IN_WORKER.search("\n".join(lines.lines)) and _has(lines, HANDED_IN_TASK), lines.lines
    if how == "unreachable":
        assert _has(lines, "dbt runs in this task's process: the warm dbt worker is unavailable")
        assert _has(lines, "is not a private directory")
    assert not list(worker_dir.glob("*.pid"))


def _wait_sleeping(cluster, dbname: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _dbt_sessions(cluster, dbname, sleeping=True):
            return
        time.sleep(0.3)
    raise AssertionError("dbt never ran pg_sleep")


def _dbt_sessions(cluster, dbname: str, sleeping: bool = False) -> list[tuple]:
    rows = rows_of(cluster, dbname, "select pid, state, query from pg_stat_activity where datname = "
                                    "current_database() and application_name like 'dbt-%'")
    return [r for r in rows if not sleeping or (r[1] == "active" and "pg_sleep" in (r[2] or ""))]


def _wait_no_sessions(cluster, dbname: str, limit: float) -> float:
    started = time.monotonic()
    while _dbt_sessions(cluster, dbname):
        if time.monotonic() - started > limit:
            raise AssertionError(f"dbt sessions left after {limit}s: {_dbt_sessions(cluster, dbname)}")
        time.sleep(0.2)
    return time.monotonic() - started


def test_cancel_stops_the_worker_child_and_ends_its_sessions(shipped, worker_dir: Path, tmp_path: Path,
                                                             pg_cluster) -> None:
    conn_id, dbname, project = shipped
    log, lines = _logger()
    runner = DbtRunner(conn_id, project, log=log)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            runner.run("run", run_dir=tmp_path / "t", select="slow_sleep", vars={"sleep_s": 600},
                       artifacts_dir=project / "target")
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome["exc"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _wait_sleeping(pg_cluster, dbname)
    except AssertionError:
        raise AssertionError("\n".join([repr(outcome), *lines.lines])) from None
    (child,) = [int(m.group(1)) for line in lines.lines if (m := IN_WORKER.search(line))]
    runner.cancel()  # what on_kill does
    assert _wait_no_sessions(pg_cluster, dbname, 10) <= 10
    assert _gone(child)
    thread.join(60)
    assert not thread.is_alive() and isinstance(outcome.get("exc"), DbtRunError), outcome
    assert _has(lines, f"Stopping dbt (warm worker process {child})")


def test_a_task_process_killed_outright_takes_its_worker_child_and_queries_with_it(
        shipped, worker_dir: Path, tmp_path: Path, pg_cluster) -> None:
    """SIGKILL leaves no on_kill: the child notices its task is gone, dbt cancels its queries, it exits."""
    conn_id, dbname, project = shipped
    code = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout)
        from airflow_provider_dataeng.dbt.runner import DbtRunner
        DbtRunner({conn_id!r}, {str(project)!r}).run("run", run_dir=__import__("pathlib").Path({str(tmp_path / "t")!r}),
                                                   select="slow_sleep", vars={{"sleep_s": 600}})
        """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as task:
        try:
            _wait_sleeping(pg_cluster, dbname)
        except AssertionError:
            task.kill()
            raise AssertionError(task.communicate()[0][-3000:]) from None
        task.kill()
        out = task.communicate()[0]
    (child,) = [int(m.group(1)) for m in IN_WORKER.finditer(out)]
    assert _wait_no_sessions(pg_cluster, dbname, 15) <= 15
    assert _gone(child)
