"""A real Airflow deployment on this machine: scheduler, DAG processor, triggerer and API server.

One :class:`AirflowStack` is what a user runs: the four components started with ``airflow <component>``
under one ``AIRFLOW_HOME``, the LocalExecutor, a PostgreSQL metadata database (on its own throwaway
cluster: several processes write it at once, which SQLite does not take well), the SimpleAuthManager with
an ``admin`` user whose password the stack chooses, and connections as ``AIRFLOW_CONN_*`` variables.
Everything is driven through the stable REST API (``/api/v2``) with a JWT from ``/auth/token``.

The DAGs folder (``<home>/dags``) holds a link ``dataeng`` to this repository's ``dags/`` (the loader and
the example configs, as a deployment would mount them) and the DAG files added with
:meth:`AirflowStack.add_dag_file`; the DAG processor looks for new files every second or two.

Tuned for a local demo/test stack (README.md, "The local stack"): the migrated metadata schema is restored
from a per-virtualenv ``pg_dump`` cache instead of running ``airflow db migrate`` each time, the scheduler
starts through :mod:`devstack.preloaded_airflow` (task processes, forked from it, start with the provider,
psycopg and dbt imported), the DAG processor finds new files within 2 s and leaves known ones alone for
10 min, and the LocalExecutor runs 8 tasks at once.

Every process is started in its own session and stopped (SIGTERM, then SIGKILL, then a sweep for any
process whose ``AIRFLOW_HOME`` is this home) by :meth:`AirflowStack.stop`, which also runs at interpreter
exit. Component logs stay under ``<home>/logs`` and :meth:`AirflowStack.log_tails` prints them on failure.

Used by the test fixture ``airflow_stack`` (tests/conftest.py), ``make demo`` and ``benchmarks/e2e.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from devstack.airflow_env import REPO_ROOT
from devstack.pg import PG_BIN, PgCluster, free_port

COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
ADMIN_USER = "admin"
FINAL_STATES = frozenset({"success", "failed"})
# How often the waits (wait_dag, wait_run, wait_task_state) ask the API: each answer costs the API server a few
# ms of CPU; a wait ends on average half an interval after what it waits for.
POLL_S = 0.25
_RUNNING: list[AirflowStack] = []


class AirflowStackError(RuntimeError):
    """The stack did not start, or a component died; the message carries the components' log tails."""


def airflow_bin() -> str:
    """The ``airflow`` console script of the running interpreter's environment."""
    return str(Path(sys.executable).with_name("airflow"))


class AirflowStack:
    """Scheduler, DAG processor, triggerer and API server over one AIRFLOW_HOME (see the module docstring).

    ``connections`` maps conn ids to what Airflow accepts in ``AIRFLOW_CONN_<ID>`` (a URI, or the JSON
    form for multi-host connections). ``examples`` is the directory linked into the DAGs folder as
    ``dataeng`` (default: this repository's ``dags/``; ``None`` for none). ``extra_env`` is added to the
    components' environment (e.g. OpenLineage transport settings). ``preload`` starts the scheduler through
    :mod:`devstack.preloaded_airflow` (task processes start with the provider and dbt imported).
    """

    def __init__(
        self,
        home: Path,
        *,
        connections: dict[str, str] | None = None,
        examples: Path | None = REPO_ROOT / "dags",
        extra_env: dict[str, str] | None = None,
        metadata_cluster: PgCluster | None = None,
        port: int | None = None,
        log: Callable[[str], None] | None = None,
        preload: bool = True,
    ) -> None:
        self.home = Path(home)
        self.dags_folder = self.home / "dags"
        self.logs_dir = self.home / "logs"
        self.connections = dict(connections or {})
        self.examples = examples
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(16)
        self.token = ""
        self.startup_seconds: dict[str, float] = {}
        self._metadata = metadata_cluster
        self._own_metadata = metadata_cluster is None
        self._extra_env = dict(extra_env or {})
        self.preload = preload
        self._log = log or (lambda _line: None)
        self._processes: dict[str, subprocess.Popen] = {}
        self._client: httpx.Client | None = None
        self._warm_up: threading.Thread | None = None
        self.env: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 360) -> AirflowStack:
        """Metadata DB, ``airflow db migrate``, the four components; returns when all report healthy."""
        t0 = time.monotonic()
        self._owner_pid = os.getpid()
        _RUNNING.append(self)
        try:
            self._prepare_home()
            if self._metadata is None:
                self._metadata = PgCluster.create("airflow-metadata")
            self._metadata.create_database("airflow")
            self.env = self._component_env()
            self.startup_seconds["metadata_cluster"] = time.monotonic() - t0
            self._migrate(timeout)
            self.startup_seconds["db_migrate"] = time.monotonic() - t0
            for component in COMPONENTS:
                self._spawn(component)
            self._wait_healthy(t0 + timeout)
            self.startup_seconds["healthy"] = time.monotonic() - t0
            self.token = self._fetch_token(t0 + timeout)
            if self._warm_up is not None:
                self._warm_up.join(timeout=max(1.0, t0 + timeout - time.monotonic()))
            self.startup_seconds["execution_api"] = time.monotonic() - t0
            self._client = httpx.Client(base_url=f"{self.base_url}/api/v2", timeout=120,
                                        headers={"Authorization": f"Bearer {self.token}"})
            self.startup_seconds["total"] = time.monotonic() - t0
            self._log(f"==> Airflow up in {self.startup_seconds['total']:.0f} s: {self.base_url} "
                      f"(user {ADMIN_USER}), AIRFLOW_HOME={self.home}\n    start-up, seconds since start: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in self.startup_seconds.items()))
            return self
        except BaseException:
            with contextlib.suppress(Exception):
                self._log(self.log_tails())
            self.stop()
            raise

    def stop(self, grace: float = 8) -> None:
        """Stop every component (and the task processes they started); safe to call more than once."""
        if self._client is not None:
            self._client.close()
            self._client = None
        # The API server goes last: stopping tasks report their state through it.
        workers = {c: p for c, p in self._processes.items() if c != "api-server"}
        api = {c: p for c, p in self._processes.items() if c == "api-server"}
        self._terminate(workers, grace)
        self._terminate(api, min(grace, 3))
        self._processes.clear()
        kill_processes_of_home(self.home)
        if self._own_metadata and self._metadata is not None:
            self._metadata.destroy()
            self._metadata = None
        if self in _RUNNING:
            _RUNNING.remove(self)

    def _terminate(self, processes: dict[str, subprocess.Popen], grace: float) -> None:
        """SIGTERM the process groups, wait up to ``grace`` seconds, SIGKILL what is left."""
        for proc in processes.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for component, proc in processes.items():
            if proc.poll() is None:
                self._log(f"    {component} still running {grace:.0f} s after SIGTERM: SIGKILL")
                _signal_group(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the REST API ----------------------------------------------------------------------------
    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """``method`` on ``/api/v2/<path>`` as the admin user (``httpx`` keyword arguments pass through)."""
        if self._client is None:
            raise AirflowStackError("the stack is not running")
        return self._client.request(method, "/" + path.lstrip("/").removeprefix("api/v2/"), **kw)

    def _ok(self, response: httpx.Response) -> Any:
        if response.is_error:
            raise AirflowStackError(f"{response.request.method} {response.request.url} -> "
                                    f"{response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def add_dag_file(self, name: str, source_text: str) -> Path:
        """Write ``<dags folder>/<name>.py`` (atomically: the DAG processor never sees half a file)."""
        path = self.dags_folder / (name if name.endswith(".py") else f"{name}.py")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(source_text)
        tmp.replace(path)
        return path

    def wait_dag(self, dag_id: str, timeout: float = 60, unpause: bool = True) -> dict[str, Any]:
        """Wait until ``dag_id`` is parsed and visible in the API; unpause it (unless ``unpause=False``)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.api("GET", f"dags/{dag_id}")
            if response.status_code == 200 and not response.json().get("is_stale"):
                break
            if response.status_code not in (404, 200):
                self._ok(response)
            self._check_alive()
            if time.monotonic() > deadline:
                raise AirflowStackError(f"DAG {dag_id!r} not visible after {timeout:.0f} s; import errors: "
                                        f"{self.import_errors()}\n{self.log_tails(['dag-processor'])}")
            time.sleep(POLL_S)
        if unpause:
            return self._ok(self.api("PATCH", f"dags/{dag_id}", json={"is_paused": False}))
        return response.json()

    def import_errors(self) -> list[dict[str, Any]]:
        """The DAG import errors the API reports (file name and stack trace)."""
        return self._ok(self.api("GET", "importErrors", params={"limit": 100})).get("import_errors", [])

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None,
                logical_date: datetime | str | None = None, *,
                data_interval: tuple[datetime, datetime] | None = None, run_after: datetime | None = None) -> str:
        """Trigger a run as the UI's Trigger button does (``logical_date=None``); returns its run id.

        ``data_interval`` (with a ``logical_date``) and ``run_after`` are passed to the API as given.
        """
        body: dict[str, Any] = {"logical_date": _iso(logical_date), "conf": conf or {}}
        if data_interval is not None:
            body["data_interval_start"], body["data_interval_end"] = (_iso(d) for d in data_interval)
        if run_after is not None:
            body["run_after"] = _iso(run_after)
        return self._ok(self.api("POST", f"dags/{dag_id}/dagRuns", json=body))["dag_run_id"]

    def add_postgres_connection(self, cluster: PgCluster, dbname: str, prefix: str = "pg") -> str:
        """Create a connection (type ``postgres``, user ``postgres``) to ``dbname`` on ``cluster`` through the
        API, as a user would in the UI; returns its id, ``<prefix>_<random>``."""
        conn_id = f"{prefix}_{secrets.token_hex(5)}"
        self._ok(self.api("POST", "connections", json={
            "connection_id": conn_id, "conn_type": "postgres", "host": cluster.host, "port": cluster.port,
            "login": "postgres", "schema": dbname}))
        return conn_id

    def unpause(self, dag_id: str, paused: bool = False) -> None:
        self._ok(self.api("PATCH", f"dags/{dag_id}", json={"is_paused": paused}))

    def clear(self, dag_id: str, run_id: str) -> None:
        """Clear every task of the run (the UI's Clear button): the scheduler runs it again."""
        self._ok(self.api("POST", f"dags/{dag_id}/clearTaskInstances",
                          json={"dag_run_id": run_id, "dry_run": False, "only_failed": False,
                                "reset_dag_runs": True}))

    def xcoms(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """``{task_id: return value}`` of the run (other keys as ``task_id:key``)."""
        found = self._ok(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/~/xcomEntries",
                                  params={"limit": 1000}))
        out: dict[str, Any] = {}
        for entry in found.get("xcom_entries", []):
            key = entry["task_id"] if entry["key"] == "return_value" else f"{entry['task_id']}:{entry['key']}"
            response = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{entry['task_id']}/"
                                       f"xcomEntries/{entry['key']}", params={"map_index": entry.get("map_index", -1)})
            if response.status_code == 200:
                out[key] = response.json().get("value")
        return out

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The DAG run as the API returns it."""
        return self._ok(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}"))

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest first."""
        found = self._ok(self.api("GET", f"dags/{dag_id}/dagRuns", params={"order_by": "id", "limit": 100}))
        return found["dag_runs"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        """Wait for the run to finish; return its final state (``success`` or ``failed``)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.run(dag_id, run_id)["state"]
            if state in FINAL_STATES:
                return state
            self._check_alive()
            if time.monotonic() > deadline:
                raise AirflowStackError(
                    f"run {dag_id}/{run_id} still {state!r} after {timeout:.0f} s; tasks: "
                    f"{self.task_states(dag_id, run_id)}\n{self.log_tails(['scheduler', 'triggerer'])}")
            time.sleep(POLL_S)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances (``task_id``, ``map_index``, ``state``, ``try_number``, ...)."""
        return self._ok(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                                 params={"limit": 1000}))["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task_id: state}`` (mapped tasks as ``task_id[map_index]``)."""
        out = {}
        for ti in self.task_instances(dag_id, run_id):
            key = ti["task_id"] if ti.get("map_index", -1) == -1 else f"{ti['task_id']}[{ti['map_index']}]"
            out[key] = ti["state"]
        return out

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log for ``try_number`` as text, one line per log event."""
        response = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                            params={"full_content": "true", "map_index": map_index},
                            headers={"Accept": "application/json"})
        return render_log(self._ok(response).get("content") or [])

    def wait_task_state(self, dag_id: str, run_id: str, task_id: str, states: Iterable[str],
                        timeout: float = 120) -> str:
        """Wait until ``task_id`` is in one of ``states`` (e.g. ``deferred``); return that state."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            state = self.task_states(dag_id, run_id).get(task_id)
            if state in wanted:
                return state
            self._check_alive()
            if time.monotonic() > deadline:
                raise AirflowStackError(f"{dag_id}/{run_id}/{task_id} is {state!r}, not {sorted(wanted)}, after "
                                        f"{timeout:.0f} s\n{self.log_tails(['scheduler', 'triggerer'])}")
            time.sleep(POLL_S)

    def report(self, dag_id: str, run_id: str, lines: int = 40) -> str:
        """Task states and the tail of every unsuccessful task's log (for assertion messages)."""
        parts = [f"{dag_id}/{run_id}: {self.task_states(dag_id, run_id)}"]
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] not in ("success", "skipped"):
                with contextlib.suppress(Exception):
                    text = self.task_log(dag_id, run_id, ti["task_id"], max(1, ti.get("try_number") or 1),
                                         ti.get("map_index", -1))
                    parts.append(f"--- {ti['task_id']} ({ti['state']}):\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    # -- diagnostics -----------------------------------------------------------------------------
    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def log_tails(self, components: Iterable[str] = (*COMPONENTS, "db-migrate"), lines: int = 40) -> str:
        """The last ``lines`` lines of each component's log."""
        out = []
        for component in components:
            path = self.log_path(component)
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"----- {component} ({path}) -----\n" + "\n".join(tail))
        return "\n".join(out)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) each running component has used so far, its children included
        (the scheduler's LocalExecutor workers and the task processes they run count as ``scheduler``)."""
        return {c: round(tree_cpu_seconds(p.pid), 1) for c, p in self._processes.items() if p.poll() is None}

    def exited_components(self) -> dict[str, int]:
        """``{component: exit code}`` of the components that are no longer running."""
        return {c: p.returncode for c, p in self._processes.items() if p.poll() is not None}

    def _check_alive(self) -> None:
        dead = self.exited_components()
        if dead:
            raise AirflowStackError(f"Airflow components exited: {dead}\n{self.log_tails(dead)}")

    # -- start-up steps --------------------------------------------------------------------------
    def _prepare_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        self.dags_folder.mkdir(exist_ok=True)
        if self.examples is not None:
            link = self.dags_folder / "dataeng"
            if not link.exists():
                link.symlink_to(Path(self.examples).resolve(), target_is_directory=True)
        (self.home / "passwords.json").write_text(json.dumps({ADMIN_USER: self.password}))

    def _component_env(self) -> dict[str, str]:
        assert self._metadata is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the components byte-compile what they import
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        secret = secrets.token_urlsafe(32)
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": r"(airflow|airflow_provider_dataeng)\..*",
            "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACKS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                f"postgresql+psycopg2://postgres@{self._metadata.host}:{self._metadata.port}/airflow",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secret,
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,
            # Airflow recommends setting it; Airflow 3.0.x without it puts ``iss: []`` in its tokens, which
            # PyJWT 2.10+ refuses ("Issuer (iss) must be a string"), so no login and no task could start.
            "AIRFLOW__API_AUTH__JWT_ISSUER": "dataeng-devstack",
            # New DAG files are found within ~2 s and parsed at once. Known files are re-parsed every 10 min,
            # not every 30 s: the example loader costs seconds of CPU per parse on this shared 2-core
            # machine, and a test stack's files do not change (tests add files under new names).
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_dir / "tasks"),
            "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(self.logs_dir / "dag-processor-files"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        })
        for conn_id, value in self.connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = value
        env.update(self._extra_env)
        return env

    def _migrate(self, timeout: float) -> None:
        """The metadata schema: restored from this environment's cached ``airflow db migrate`` result
        (:func:`migrated_schema_cache`; about a second) or migrated, and then cached (10-40 s of CPU)."""
        assert self._metadata is not None
        cache = migrated_schema_cache()
        if cache.exists():
            restore = subprocess.run(
                [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self._metadata.dsn("airflow"),
                 "-f", str(cache)], capture_output=True, text=True, timeout=timeout, check=False)
            if restore.returncode == 0:
                self.log_path("db-migrate").write_text(f"restored the migrated schema from {cache}\n")
                return
            self._log(f"    the cached metadata schema {cache} did not restore (migrating instead): "
                      f"{restore.stderr[-500:]}")
            cache.unlink(missing_ok=True)
            self._metadata.drop_database("airflow")
            self._metadata.create_database("airflow")
        with open(self.log_path("db-migrate"), "wb") as fh:
            proc = subprocess.run([airflow_bin(), "db", "migrate"], env=self.env, cwd=self.home, stdout=fh,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise AirflowStackError(f"airflow db migrate failed (rc={proc.returncode})\n"
                                    f"{self.log_tails(['db-migrate'], lines=60)}")
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                dump = subprocess.run([str(PG_BIN / "pg_dump"), "--no-owner", "--no-privileges",
                                       "-d", self._metadata.dsn("airflow")], stdout=fh, timeout=120, check=False)
            if dump.returncode == 0:
                tmp.replace(cache)
            else:
                tmp.unlink(missing_ok=True)

    def _spawn(self, component: str) -> None:
        # The scheduler starts with the task-time modules imported (devstack.preloaded_airflow): its
        # LocalExecutor workers, and every task process they fork, inherit them.
        command = ([sys.executable, "-m", "devstack.preloaded_airflow"] if component == "scheduler" and self.preload
                   else [airflow_bin()])
        with open(self.log_path(component), "wb") as fh:
            self._processes[component] = subprocess.Popen(
                [*command, *component.split()], env=self.env, cwd=self.home, stdout=fh,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def _wait_healthy(self, deadline: float) -> None:
        """Until the API answers and reports the scheduler, triggerer and DAG processor healthy."""
        health: Any = None
        t0 = time.monotonic()
        while True:
            self._check_alive()
            with contextlib.suppress(httpx.HTTPError, ValueError):
                health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
                if "api_answers" not in self.startup_seconds:
                    self.startup_seconds["api_answers"] = time.monotonic() - t0
                    self._warm_up = threading.Thread(target=self._warm_up_execution_api, daemon=True)
                    self._warm_up.start()
                parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                    return
            if time.monotonic() > deadline:
                raise AirflowStackError(f"Airflow not healthy in time; last health: {health}\n{self.log_tails()}")
            time.sleep(0.5)

    def _warm_up_execution_api(self) -> None:
        """The first call into the execution API pays its lazy set-up (13-20 s on this loaded 2-core
        machine): pay it while the other components start, not inside the first task's start-up."""
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{self.base_url}/execution/health/ping", timeout=120)

    def _fetch_token(self, deadline: float) -> str:
        """A JWT for the admin user (the API may be busy with the execution API's set-up: wait for it)."""
        while True:
            try:
                response = httpx.post(f"{self.base_url}/auth/token",
                                      json={"username": ADMIN_USER, "password": self.password},
                                      timeout=max(5.0, deadline - time.monotonic()))
                break
            except httpx.TimeoutException:
                if time.monotonic() > deadline:
                    raise
        if response.is_error:
            raise AirflowStackError(f"POST /auth/token -> {response.status_code}: {response.text[:500]}")
        return response.json()["access_token"]


def migrated_schema_cache() -> Path:
    """Where this environment keeps the SQL dump of a freshly migrated metadata database.

    Keyed by the installed Airflow distributions (core and providers: their migrations make the schema),
    and kept inside the virtualenv, so a new install or ``make clean`` starts from ``airflow db migrate``.
    """
    import hashlib
    import importlib.metadata

    versions = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                      if (d.metadata["Name"] or "").lower().startswith("apache-airflow"))
    key = hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16]
    return Path(sys.prefix) / "var" / "dataeng-devstack" / f"airflow-metadata-{key}.sql"


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


# Keys every event of a task log repeats (the task's identity, the source line): left out of the text.
_LOG_CONTEXT_KEYS = frozenset({"timestamp", "event", "level", "logger", "chan", "dag_id", "run_id", "task_id",
                               "map_index", "try_number", "ti_id", "filename", "lineno"})


def render_log(content: list[Any]) -> str:
    """Text of a structured task log (the API's ``content``): ``timestamp [level] event key=value ...``."""
    lines = []
    for item in content:
        if not isinstance(item, dict):
            lines.append(str(item))
            continue
        rest = {k: v for k, v in item.items() if k not in _LOG_CONTEXT_KEYS}
        head = " ".join(str(x) for x in (item.get("timestamp") or "", f"[{item['level']}]" if item.get("level")
                                         else "", item.get("event", "")) if x)
        tail = " ".join(f"{k}={json.dumps(v, default=str) if not isinstance(v, str) else v}" for k, v in rest.items())
        lines.append(f"{head} {tail}".rstrip())
    return "\n".join(lines)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def processes_of_home(home: Path) -> set[int]:
    """Pids of processes whose environment has ``AIRFLOW_HOME=<home>`` (tasks included)."""
    needle = f"\0AIRFLOW_HOME={home}\0".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in b"\0" + (entry / "environ").read_bytes() + b"\0":
                found.add(int(entry.name))
    return found


def kill_processes_of_home(home: Path, grace: float = 5) -> None:
    """SIGTERM, then SIGKILL, whatever still runs with ``AIRFLOW_HOME=<home>``."""
    pids = processes_of_home(home)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if Path(f"/proc/{p}").exists() and not _is_zombie(p)}
            time.sleep(0.1)
        if not pids:
            return


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants, each with the children it has reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                stats[int(entry.name)] = fields
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        fields = stats.get(current)
        if fields is not None:  # utime, stime, cutime, cstime (fields 14-17 of /proc/<pid>/stat)
            total += sum(int(x) for x in fields[11:15]) / tick
        todo.extend(children.get(current, []))
    return total


def _is_zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True


def stop_all() -> None:
    """Stop every stack this process started (atexit); not those of the parent of a forked child."""
    for stack in list(_RUNNING):
        if getattr(stack, "_owner_pid", None) != os.getpid():
            continue
        with contextlib.suppress(Exception):
            stack.stop()


atexit.register(stop_all)
