"""The demo's local stack: a source PostgreSQL with the shop, a warehouse, an Airflow home.

- Source: a throwaway :class:`devstack.pg.PgCluster` holding database ``shop``.
- Warehouse: a pg_auto_failover formation (monitor + 2 nodes, :mod:`devstack.formation`), or a
  single plain cluster with ``--plain`` / ``DEMO_WAREHOUSE=plain``. Database ``warehouse``.
- Airflow: home ``.demo/airflow`` (SQLite metadata, migrated once per Airflow version), DAGs folder
  ``dags/`` of this repository, connections ``shop_source``, ``warehouse`` and ``warehouse_monitor``
  as ``AIRFLOW_CONN_*`` environment variables for the child ``airflow`` processes.

Every server is stopped on exit, on error and on Ctrl-C / SIGTERM (:meth:`Stack.close`, signal
handlers installed by :func:`install_signal_handlers`, plus ``devstack.pg``'s atexit hook).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from devstack import pg
from devstack.airflow_env import configure_airflow_home, connection_env_name, register_connection

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = Path(os.environ.get("DEMO_DIR") or REPO_ROOT / ".demo")  # Airflow home, logs, report.json
SOURCE_DB = "shop"
WAREHOUSE_DB = "warehouse"
MONITOR_DB = "pg_auto_failover"
MONITOR_USER = "autoctl_node"
CONN_SOURCE = "shop_source"
CONN_WAREHOUSE = "warehouse"
CONN_MONITOR = "warehouse_monitor"


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT/SIGTERM so that every ``finally`` runs."""


def install_signal_handlers() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` (the cleanup runs in ``finally``)."""

    def handler(signum: int, _frame: Any) -> None:
        # Ignore further signals while cleaning up: a second Ctrl-C must not skip the teardown.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


@dataclass
class Warehouse:
    """Where the warehouse listens: one or two PostgreSQL nodes, and the monitor when there is one."""

    kind: str  # "formation" | "plain"
    nodes: list[tuple[str, int]]
    monitor: tuple[str, int] | None = None
    handle: Any = None  # the formation or PgCluster object, for stopping and the health story

    @property
    def host_field(self) -> str:
        """The Airflow connection ``host``: ``127.0.0.1:p1,127.0.0.1:p2``."""
        return ",".join(f"{h}:{p}" for h, p in self.nodes)

    def dsn(self, dbname: str = WAREHOUSE_DB) -> str:
        hosts = ",".join(h for h, _ in self.nodes)
        ports = ",".join(str(p) for _, p in self.nodes)
        return f"host={hosts} port={ports} dbname={dbname} user={pg.SUPERUSER} target_session_attrs=read-write"


@dataclass
class Stack:
    """Source + warehouse + Airflow home; use as a context manager (always stopped on exit)."""

    plain: bool = False
    demo_dir: Path = DEMO_DIR
    log: Callable[[str], None] = print
    source: pg.PgCluster | None = None
    warehouse: Warehouse | None = None
    children: list[subprocess.Popen] = field(default_factory=list)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Stack:
        """Start everything in order (see :meth:`start_source`, :meth:`plan_warehouse`, ...)."""
        self.start_source()
        self.plan_warehouse()
        self.register_connections()
        self.prepare_airflow_home()
        self.start_warehouse()
        return self

    def start_source(self) -> pg.PgCluster:
        """The source cluster with an empty database ``shop`` (~2 s)."""
        self.demo_dir.mkdir(parents=True, exist_ok=True)
        (self.demo_dir / "logs").mkdir(exist_ok=True)
        self.log("==> starting the source PostgreSQL (database shop)")
        self.source = pg.PgCluster.create("demo-source")
        self._closers.append(self.source.destroy)
        self.source.create_database(SOURCE_DB)
        return self.source

    def plan_warehouse(self) -> Warehouse:
        """Choose the warehouse's ports (a plain cluster starts right away; a formation in start_warehouse)."""
        if self.plain:
            self.log("==> starting the warehouse: one plain PostgreSQL cluster (--plain)")
            cluster = pg.PgCluster.create("demo-warehouse")
            self._closers.append(cluster.destroy)
            cluster.create_database(WAREHOUSE_DB)
            self.warehouse = Warehouse("plain", [(cluster.host, cluster.port)], None, cluster)
        else:
            from devstack.formation import HOST, Formation

            formation = Formation("demo-warehouse", node_count=2, dbname=WAREHOUSE_DB)
            self._closers.append(formation.teardown)
            nodes = [(n.host, n.port) for n in formation.nodes]
            self.warehouse = Warehouse("formation", nodes, (HOST, formation.monitor_port), formation)
        return self.warehouse

    def start_warehouse(self) -> Warehouse:
        """Start the pg_auto_failover formation (~30 s) and wait for a primary and a secondary."""
        assert self.warehouse is not None
        if self.warehouse.kind == "formation":
            self.log("==> starting the warehouse: pg_auto_failover formation (monitor + 2 nodes, ~30 s)")
            t0 = time.monotonic()
            self.warehouse.handle.start()
            ensure_database(self.warehouse)
            self.log(f"    formation up in {time.monotonic() - t0:.0f} s: "
                     f"{self.warehouse.handle.describe_states()}")
        return self.warehouse

    def close(self) -> None:
        """Stop child processes, then every server. Safe to call more than once."""
        for proc in list(self.children):
            stop_process_group(proc)
        self.children.clear()
        while self._closers:
            closer = self._closers.pop()
            with contextlib.suppress(Exception):
                closer()
        pg.stop_all()

    def describe(self) -> str:
        """Where everything listens (for --keep and --standalone)."""
        lines = ["Local stack:"]
        if self.source is not None:
            lines.append(f"  source     psql '{self.source.dsn(SOURCE_DB)}'")
        if self.warehouse is not None:
            lines.append(f"  warehouse  psql '{self.warehouse.dsn()}'  ({self.warehouse.kind})")
            if self.warehouse.monitor is not None:
                host, port = self.warehouse.monitor
                lines.append(f"  monitor    psql 'host={host} port={port} dbname={MONITOR_DB} user={MONITOR_USER}'")
        lines.append(f"  Airflow    AIRFLOW_HOME={self.airflow_home}")
        lines.append(f"  logs       {self.demo_dir / 'logs'}")
        return "\n".join(lines)

    # -- Airflow ---------------------------------------------------------------------------------
    def register_connections(self) -> None:
        """``shop_source``, ``warehouse`` and (with a formation) ``warehouse_monitor`` in os.environ."""
        assert self.source is not None and self.warehouse is not None
        register_connection(CONN_SOURCE, host=self.source.host, port=self.source.port, schema=SOURCE_DB)
        register_connection(CONN_WAREHOUSE, host=self.warehouse.host_field, schema=WAREHOUSE_DB,
                            extra={"target_session_attrs": "read-write", "connect_timeout": 5})
        if self.warehouse.monitor is not None:
            host, port = self.warehouse.monitor
            register_connection(CONN_MONITOR, host=host, port=port, schema=MONITOR_DB, login=MONITOR_USER,
                                conn_type="pg_auto_failover")
        else:
            os.environ.pop(connection_env_name(CONN_MONITOR), None)

    @property
    def airflow_home(self) -> Path:
        return self.demo_dir / "airflow"

    def prepare_airflow_home(self, wait: bool = True) -> subprocess.Popen | None:
        """Point Airflow at ``.demo/airflow`` with a fresh metadata DB for this run.

        The first run migrates an empty SQLite DB once per Airflow version and keeps a pristine copy;
        every run starts from a copy of it (milliseconds), so runs, assets and DAG versions left by an
        earlier demo (whose databases are gone) never interfere. With ``wait=False`` the migration runs
        in the background: call :meth:`wait_airflow_home`.
        """
        configure_airflow_home(self.airflow_home, dags_folder=REPO_ROOT / "dags")
        os.environ.update(airflow_settings())
        version = importlib.metadata.version("apache-airflow")
        self._pristine = self.airflow_home / f"airflow.db.migrated-{version}"
        self._migrate = None
        db = self.airflow_home / "airflow.db"
        for leftover in (db, db.with_name("airflow.db-journal")):
            leftover.unlink(missing_ok=True)
        if self._pristine.exists():
            shutil.copyfile(self._pristine, db)
            return None
        self.log(f"==> preparing the Airflow home {_short(self.airflow_home)} (airflow db migrate, once)")
        for old in self.airflow_home.glob("airflow.db.migrated-*"):
            old.unlink()
        self._migrate = self.spawn([airflow_bin(), "db", "migrate"], self.demo_dir / "logs" / "db-migrate.log")
        if wait:
            self.wait_airflow_home()
        return self._migrate

    def wait_airflow_home(self) -> None:
        """Wait for a background ``airflow db migrate`` (no-op when none runs), then keep a pristine copy."""
        proc = getattr(self, "_migrate", None)
        if proc is None:
            return
        while proc.poll() is None:
            time.sleep(0.1)
        self.children.remove(proc)
        self._migrate = None
        if proc.returncode != 0:
            log = (self.demo_dir / "logs" / "db-migrate.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"airflow db migrate failed (rc={proc.returncode}):\n{log}")
        tmp = self._pristine.with_name(self._pristine.name + ".tmp")
        shutil.copyfile(self.airflow_home / "airflow.db", tmp)
        tmp.replace(self._pristine)

    def spawn(self, cmd: list[str], log_path: Path, **kwargs: Any) -> subprocess.Popen:
        """Start a child in its own session (so it can be stopped as a group), output to ``log_path``."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env(),
                                    cwd=REPO_ROOT, start_new_session=True, **kwargs)
        self.children.append(proc)
        return proc


def _short(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def data_dirs(stack: Stack) -> list[str]:
    """The temp directories of the stack's servers (to check that nothing survives)."""
    dirs = []
    if stack.source is not None and stack.source.base_dir is not None:
        dirs.append(str(stack.source.base_dir))
    if stack.warehouse is not None:
        handle = stack.warehouse.handle
        base = getattr(handle, "base_dir", None)
        if base is not None:
            dirs.append(str(base))
    return dirs


def airflow_settings() -> dict[str, str]:
    """Airflow settings for the demo's children (on top of the test harness' home settings)."""
    return {
        # Daily schedules get [start, end) data intervals: one partition per day.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "True",
    }


def child_env() -> dict[str, str]:
    """The environment for child processes: ours (with AIRFLOW_CONN_*), bytecode caching on."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # `airflow standalone` (and Airflow's own subprocesses) find `airflow` on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def stop_process_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the child's process group (it was started in its own session), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def ensure_database(wh: Warehouse, dbname: str = WAREHOUSE_DB, timeout: float = 60) -> None:
    """Create ``dbname`` on the warehouse primary when missing (it replicates to the secondary)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(wh.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
                if conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone() is None:
                    conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(dbname)))
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def connections_summary() -> dict[str, dict[str, Any]]:
    """The registered demo connections (no secrets: the demo uses trust auth)."""
    out = {}
    for conn_id in (CONN_SOURCE, CONN_WAREHOUSE, CONN_MONITOR):
        raw = os.environ.get(connection_env_name(conn_id))
        if raw:
            out[conn_id] = json.loads(raw)
    return out


@contextlib.contextmanager
def running_stack(plain: bool = False, log: Callable[[str], None] = print) -> Iterator[Stack]:
    """A started :class:`Stack`, always stopped on exit."""
    stack = Stack(plain=plain, log=log)
    try:
        yield stack.start()
    finally:
        stack.close()
