"""A real pg_auto_failover formation on loopback: a monitor plus N Postgres nodes, for tests, demo, benchmarks.

Everything runs as the ``postgres`` OS user (when we are root) with ``--auth trust --no-ssl``, listens on
127.0.0.1 only, on free ports, with the pg_autoctl configuration and state kept under the formation's own
temp dir (``XDG_*`` variables), so formations never see each other or a system-wide installation.

Every ``pg_autoctl ... run`` is started in its own session (``setsid``); teardown stops it gracefully,
then kills its whole process group plus every descendant (Postgres children call ``setsid`` themselves)
and anything still running from the formation's directory. Teardown also runs at interpreter exit and on
SIGTERM, so a failed test or a Ctrl-C leaves no server behind.

Timeouts are pg_auto_failover 2.0 defaults unless ``monitor_settings`` / ``keeper_settings`` say otherwise
(see docs/failover.md): measured here, a formation is up in ~15-30 s, writes return ~50 s after a primary
crash (20 s ``node_considered_unhealthy_timeout`` + 30 s ``primary_demote_timeout``), a switchover takes
3-4 s, and a stopped secondary puts the primary in ``wait_primary`` after ~20 s.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.pg import PG_BIN, as_postgres, chown_postgres, free_port

PG_CTL = PG_BIN / "pg_ctl"
PG_AUTOCTL = os.environ.get("PG_AUTOCTL", "pg_autoctl")
HOST = "127.0.0.1"
MONITOR_DB = "pg_auto_failover"
MONITOR_USER = "autoctl_node"

# Postgres settings appended to every node's postgresql.conf (after pg_auto_failover's include, so they
# win). pg_auto_failover sizes shared_buffers from the machine's RAM (6 GB here): far too much for three
# throwaway servers on a shared CI box. fsync=off only matters for an OS crash; our crashes are SIGKILLs.
# A rejoining old primary that cannot pg_rewind falls back to pg_basebackup, which asks the new primary for
# a *spread* checkpoint: with the default checkpoint_timeout (5 min) that alone can take minutes. A short
# checkpoint_timeout bounds it; wal_log_hints lets pg_rewind work in the first place.
NODE_SETTINGS = {"shared_buffers": "'128MB'", "fsync": "off", "max_connections": "100",
                 "checkpoint_timeout": "'30s'", "checkpoint_completion_target": "0.5", "wal_log_hints": "on"}

_LIVE: list[Formation] = []
_LIVE_LOCK = threading.Lock()

STATES_SQL = """
select s.node_id, s.nodename as name, s.nodehost as host, s.nodeport as port, s.group_id,
       s.current_group_state::text as reported_state, s.assigned_group_state::text as goal_state,
       s.health, s.reported_lsn::text as reported_lsn, n.reportedrepstate as rep_state
  from pgautofailover.current_state(%s, %s) s
  left join pgautofailover.node n on n.nodeid = s.node_id
 order by s.node_id
"""


class FormationError(RuntimeError):
    """A formation did not reach the expected state (the message carries the states and log tails)."""


@dataclass
class FormationNode:
    """One Postgres node (keeper + server) of the formation."""

    name: str
    port: int
    pgdata: Path
    log_file: Path
    host: str = HOST
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def dsn(self, dbname: str = "postgres", user: str = "postgres", **extra: Any) -> str:
        parts = [f"host={self.host}", f"port={self.port}", f"dbname={dbname}", f"user={user}"]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def postmaster_pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None


class Formation:
    """A monitor plus ``node_count`` nodes of one pg_auto_failover formation, on loopback.

    :param name: prefix of the temp dir.
    :param node_count: Postgres nodes (2 = a primary and a secondary).
    :param dbname: the database the formation serves (created by the first node).
    :param formation: pg_auto_failover formation name.
    :param monitor_settings: extra GUCs for the monitor (e.g. ``pgautofailover.health_check_period``).
    :param keeper_settings: ``pg_autoctl config set`` keys for every node (e.g. ``timeout.network_partition_timeout``).
    """

    def __init__(
        self,
        name: str = "formation",
        *,
        node_count: int = 2,
        dbname: str = "postgres",
        formation: str = "default",
        monitor_settings: dict[str, str] | None = None,
        keeper_settings: dict[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        if node_count < 1:
            raise ValueError(f"node_count={node_count!r}: expected at least 1")
        self.name = name
        self.dbname = dbname
        self.formation = formation
        self.monitor_settings = dict(monitor_settings or {})
        self.keeper_settings = dict(keeper_settings or {})
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix=f"dataeng-{name}-"))
        self.monitor_port = free_port()
        self.monitor_pgdata = self.base_dir / "monitor"
        self.monitor_log = self.base_dir / "monitor.log"
        self.monitor_proc: subprocess.Popen | None = None
        self.nodes = [
            FormationNode(
                name=f"node{i}", port=free_port(), pgdata=self.base_dir / f"node{i}",
                log_file=self.base_dir / f"node{i}.log",
            )
            for i in range(1, node_count + 1)
        ]
        self._torn_down = False
        self._env = {
            "XDG_CONFIG_HOME": str(self.base_dir / "xdg-config"),
            "XDG_DATA_HOME": str(self.base_dir / "xdg-data"),
            "XDG_RUNTIME_DIR": str(self.base_dir / "xdg-run"),
            "PG_AUTOCTL_DEBUG": "",
        }

    # -- addresses -------------------------------------------------------------------------------
    @property
    def monitor_uri(self) -> str:
        """libpq URI of the monitor, as role ``autoctl_node``."""
        return f"postgres://{MONITOR_USER}@{HOST}:{self.monitor_port}/{MONITOR_DB}?sslmode=prefer"

    @property
    def monitor_dsn(self) -> str:
        return f"host={HOST} port={self.monitor_port} dbname={MONITOR_DB} user={MONITOR_USER} connect_timeout=3"

    @property
    def formation_uri(self) -> str:
        """The client URI, from ``pg_autoctl show uri --formation`` (multi-host, target_session_attrs)."""
        out = self._autoctl(["show", "uri", "--pgdata", str(self.monitor_pgdata), "--formation", self.formation])
        return out.strip().splitlines()[-1].strip()

    @property
    def host_list(self) -> str:
        """``h1:p1,h2:p2`` for an Airflow connection's host field."""
        return ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def node(self, name: str) -> FormationNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r} in formation (have {[n.name for n in self.nodes]})")

    # -- commands --------------------------------------------------------------------------------
    def _cmd(self, args: list[str]) -> list[str]:
        env = [f"{k}={v}" for k, v in self._env.items() if v]
        return as_postgres(["env", *env, PG_AUTOCTL, *args])

    def _autoctl(self, args: list[str], timeout: float = 120, log: Path | None = None) -> str:
        out = subprocess.run(
            self._cmd(args), cwd=self.base_dir, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if log is not None:
            with open(log, "a") as fh:
                fh.write(f"$ pg_autoctl {' '.join(args)}\n{out.stdout}{out.stderr}\n")
        if out.returncode != 0:
            raise FormationError(f"pg_autoctl {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return out.stdout

    def _spawn_run(self, pgdata: Path, log_file: Path) -> subprocess.Popen:
        fh = open(log_file, "a")  # noqa: SIM115 - handed to the child, closed below
        try:
            return subprocess.Popen(
                self._cmd(["run", "--pgdata", str(pgdata)]), cwd=self.base_dir, stdout=fh,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            fh.close()

    @staticmethod
    def _append_conf(pgdata: Path, settings: dict[str, str]) -> None:
        if not settings:
            return
        with open(pgdata / "postgresql.conf", "a") as fh:
            fh.write("\n# dataeng formation test settings\n")
            fh.writelines(f"{k} = {v}\n" for k, v in settings.items())

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 180) -> Formation:
        """Create and run the monitor, then the nodes; wait for one primary and the rest secondary."""
        self._owner_pid = os.getpid()
        with _LIVE_LOCK:
            _LIVE.append(self)
        _install_sigterm_handler()
        try:
            self._start(timeout)
        except BaseException:
            self.teardown()
            raise
        return self

    def _start(self, timeout: float) -> None:
        os.chmod(self.base_dir, 0o755)
        chown_postgres(self.base_dir)
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
            path = Path(self._env[key])
            path.mkdir(mode=0o700, exist_ok=True)
            chown_postgres(path)
        deadline = time.monotonic() + timeout
        common = ["--auth", "trust", "--no-ssl", "--pgctl", str(PG_CTL), "--hostname", HOST]
        self._autoctl(
            ["create", "monitor", "--pgdata", str(self.monitor_pgdata), "--pgport", str(self.monitor_port), *common],
            log=self.monitor_log,
        )
        # The monitor has no --listen option: its keeper passes `-h <listen_addresses>` to postgres.
        self._autoctl(["config", "set", "--pgdata", str(self.monitor_pgdata), "postgresql.listen_addresses", HOST])
        self._append_conf(self.monitor_pgdata, {**NODE_SETTINGS, **self.monitor_settings})
        self.monitor_proc = self._spawn_run(self.monitor_pgdata, self.monitor_log)
        self._wait_monitor(deadline)
        for index, node in enumerate(self.nodes):
            self._autoctl(
                ["create", "postgres", "--pgdata", str(node.pgdata), "--pgport", str(node.port), "--listen", HOST,
                 "--name", node.name, "--dbname", self.dbname, "--formation", self.formation,
                 "--monitor", self.monitor_uri, *common],
                timeout=max(30.0, deadline - time.monotonic()), log=node.log_file,
            )
            for key, value in self.keeper_settings.items():
                self._autoctl(["config", "set", "--pgdata", str(node.pgdata), key, str(value)])
            if index == 0:  # later nodes copy postgresql.conf with pg_basebackup
                self._append_conf(node.pgdata, NODE_SETTINGS)
            node.proc = self._spawn_run(node.pgdata, node.log_file)
            if index == 0:
                self.wait_for_state({node.name: "single"}, timeout=deadline - time.monotonic())
        self.wait_until_stable(timeout=max(10.0, deadline - time.monotonic()))

    def _wait_monitor(self, deadline: float) -> None:
        import psycopg

        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.monitor_proc is not None and self.monitor_proc.poll() is not None:
                raise FormationError(f"monitor exited ({self.monitor_proc.returncode}):\n{self._tail(self.monitor_log)}")
            try:
                with psycopg.connect(self.monitor_dsn) as conn:
                    conn.execute("select 1 from pgautofailover.formation limit 1")
                    return
            except psycopg.Error as exc:
                last = exc
                time.sleep(0.3)
        raise FormationError(f"monitor not ready: {last}\n{self._tail(self.monitor_log)}")

    def __enter__(self) -> Formation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # -- reading the monitor ---------------------------------------------------------------------
    def states(self, group_id: int = 0) -> list[dict[str, Any]]:
        """Rows of ``pgautofailover.current_state`` (+ the primary's replication state) as dicts."""
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.monitor_dsn, row_factory=dict_row) as conn:
            return list(conn.execute(STATES_SQL, (self.formation, group_id)).fetchall())

    def describe_states(self, states: list[dict[str, Any]] | None = None) -> str:
        try:
            states = self.states() if states is None else states
        except Exception as exc:  # noqa: BLE001 - this is a diagnostic string
            return f"(monitor unreadable: {exc})"
        return ", ".join(
            f"{s['name']}={s['reported_state']}/{s['goal_state']}(health {s['health']})" for s in states
        )

    def wait_for_state(
        self,
        expected: dict[str, str] | Callable[[list[dict[str, Any]]], bool],
        *,
        timeout: float = 120,
        poll: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Wait until the monitor's states satisfy ``expected`` and return them.

        ``expected`` is ``{node_name: state}`` (reported == goal == state, health good) or a predicate over
        the state rows.
        """
        if isinstance(expected, dict):
            wanted = dict(expected)

            def check(states: list[dict[str, Any]]) -> bool:
                by_name = {s["name"]: s for s in states}
                return all(
                    name in by_name and by_name[name]["reported_state"] == state
                    and by_name[name]["goal_state"] == state and by_name[name]["health"] == 1
                    for name, state in wanted.items()
                )
        else:
            check = expected
        deadline = time.monotonic() + timeout
        states: list[dict[str, Any]] = []
        while True:
            with contextlib.suppress(Exception):
                states = self.states()
                if check(states):
                    return states
            if time.monotonic() >= deadline:
                raise FormationError(
                    f"formation did not reach {expected!r} within {timeout:.0f}s; states: "
                    f"{self.describe_states(states)}\n" + "\n".join(self._tail(n.log_file, 8) for n in self.nodes)
                )
            time.sleep(poll)

    def wait_until_stable(self, timeout: float = 120) -> list[dict[str, Any]]:
        """Wait for exactly one primary and every other node secondary, all healthy and settled."""

        def stable(states: list[dict[str, Any]]) -> bool:
            if len(states) != len(self.nodes):
                return False
            settled = all(s["reported_state"] == s["goal_state"] and s["health"] == 1 for s in states)
            roles = sorted(s["reported_state"] for s in states)
            want = ["single"] if len(self.nodes) == 1 else ["primary"] + ["secondary"] * (len(self.nodes) - 1)
            return settled and roles == want

        return self.wait_for_state(stable, timeout=timeout)

    def primary(self) -> FormationNode:
        """The node the monitor reports as primary (or wait_primary / single) and still assigns that role.

        A crashed primary keeps its last reported state ``primary`` until it reports again; its goal state
        (``demoted`` after a failover) tells it apart.
        """
        writable = ("primary", "wait_primary", "single")
        states = self.states()
        for state in states:
            if state["reported_state"] in writable and state["goal_state"] in writable:
                return self.node(state["name"])
        raise FormationError(f"no primary right now: {self.describe_states(states)}")

    def secondaries(self) -> list[FormationNode]:
        return [self.node(s["name"]) for s in self.states() if s["reported_state"] == "secondary"]

    # -- chaos -----------------------------------------------------------------------------------
    def crash_node(self, node: FormationNode) -> None:
        """SIGKILL the node's pg_autoctl (all its processes) and its Postgres (postmaster and children)."""
        pids = set()
        if node.proc is not None:
            pids |= _descendants(node.proc.pid)
        postmaster = node.postmaster_pid()
        if postmaster is not None:
            pids |= _descendants(postmaster) | {postmaster}
        if node.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if node.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=10)
        _wait_gone(pids, timeout=10)

    def crash_primary(self) -> FormationNode:
        """Crash the current primary (see :meth:`crash_node`) and return it."""
        node = self.primary()
        self.crash_node(node)
        return node

    def stop_node(self, node: FormationNode, timeout: float = 60) -> None:
        """Stop a node cleanly (``pg_autoctl stop``: keeper and Postgres)."""
        if not node.running:
            return
        with contextlib.suppress(FormationError, subprocess.TimeoutExpired):
            self._autoctl(["stop", "--pgdata", str(node.pgdata)], timeout=timeout)
        assert node.proc is not None
        try:
            node.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.crash_node(node)

    def start_node(self, node: FormationNode) -> None:
        """Start (again) the node's ``pg_autoctl run``: a crashed primary rejoins (pg_rewind if needed)."""
        if node.running:
            return
        node.proc = self._spawn_run(node.pgdata, node.log_file)

    def enable_maintenance(self, node: FormationNode, timeout: float = 60) -> None:
        """``pg_autoctl enable maintenance`` on ``node`` (a secondary: the primary goes wait_primary)."""
        self._autoctl(["enable", "maintenance", "--pgdata", str(node.pgdata)], timeout=timeout)

    def disable_maintenance(self, node: FormationNode, timeout: float = 60) -> None:
        self._autoctl(["disable", "maintenance", "--pgdata", str(node.pgdata)], timeout=timeout)

    def perform_switchover(self, timeout: float = 90) -> None:
        """``pg_autoctl perform switchover`` (returns once the new primary is in place)."""
        self._autoctl(
            ["perform", "switchover", "--monitor", self.monitor_uri, "--formation", self.formation,
             "--group", "0", "--wait", str(int(timeout))],
            timeout=timeout + 30,
        )

    # -- teardown --------------------------------------------------------------------------------
    def teardown(self) -> None:
        """Stop every process of the formation (gracefully, then by force) and delete its directory."""
        if self._torn_down:
            return
        self._torn_down = True
        procs = [(n.proc, n.pgdata) for n in self.nodes] + [(self.monitor_proc, self.monitor_pgdata)]
        for proc, _ in procs:
            if proc is not None and proc.poll() is None:
                _signal_keeper(proc, signal.SIGTERM)  # pg_autoctl stops its Postgres (fast) on SIGTERM
        for proc, _ in procs:
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)
        for node in self.nodes:
            self.crash_node(node)  # whatever survived
        pids: set[int] = set()
        if self.monitor_proc is not None:
            pids |= _descendants(self.monitor_proc.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.monitor_proc.pid, signal.SIGKILL)
        pm = _postmaster_pid(self.monitor_pgdata)
        if pm is not None:
            pids |= _descendants(pm) | {pm}
        pids |= _pids_mentioning(str(self.base_dir))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids, timeout=10)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        with _LIVE_LOCK:
            if self in _LIVE:
                _LIVE.remove(self)

    # -- diagnostics -----------------------------------------------------------------------------
    @staticmethod
    def _tail(path: Path, lines: int = 30) -> str:
        try:
            return f"--- {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"--- {path.name}: no log ---"


# -- process helpers ---------------------------------------------------------------------------------
def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _process_table() -> dict[int, int]:
    """``{pid: ppid}`` for every process (from /proc)."""
    table: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (2nd field) may contain spaces: split after its closing paren.
        fields = stat[stat.rfind(")") + 2:].split()
        table[int(entry)] = int(fields[1])
    return table


def _signal_keeper(proc: subprocess.Popen, sig: int) -> None:
    """Signal the ``pg_autoctl`` process itself (the child of ``runuser`` when we are root).

    Not the whole group: the postmaster is in it, and SIGTERM to a postmaster is a *smart* shutdown that
    waits for clients; pg_autoctl stops Postgres in fast mode instead.
    """
    table = _process_table()
    targets = [pid for pid, ppid in table.items() if ppid == proc.pid] or [proc.pid]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _descendants(root: int) -> set[int]:
    """``root`` and all its live descendants."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        if pid in table:
            found.add(pid)
        stack.extend(children.get(pid, []))
    return found


def _pids_mentioning(text: str) -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                pids.add(int(entry))
    return pids


def _wait_gone(pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
        if not alive:
            return
        time.sleep(0.1)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:].split()[0] == "Z"


def teardown_all() -> None:
    """Tear down every formation this process started (atexit and SIGTERM call this); a forked child
    (a test's process pool) inherits the list and the handlers, but leaves its parent's formations alone."""
    with _LIVE_LOCK:
        live = [f for f in _LIVE if getattr(f, "_owner_pid", None) == os.getpid()]
    for formation in live:
        formation.teardown()


_SIGTERM_INSTALLED = False


def _install_sigterm_handler() -> None:
    """On SIGTERM, tear down formations (and throwaway clusters) first, then die of SIGTERM as usual.

    The default SIGTERM action skips atexit; raising SystemExit instead would be swallowed by pytest,
    which reports it as a test error and goes on. Installed only when nobody else handles SIGTERM.
    """
    global _SIGTERM_INSTALLED
    if _SIGTERM_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

        def _on_sigterm(signum: int, frame: Any) -> None:
            teardown_all()
            with contextlib.suppress(Exception):
                from devstack.pg import stop_all

                stop_all()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, _on_sigterm)
    _SIGTERM_INSTALLED = True


atexit.register(teardown_all)


# -- one shared formation per process (tests) --------------------------------------------------------
_SHARED: Formation | None = None


def shared_formation(**kwargs: Any) -> Formation:
    """One formation for the whole test process (started on first use, torn down at exit).

    Test modules use it through a module fixture so that all failover tests pay the ~30 s start once.
    Tests that disturb it must leave it stable again (:meth:`Formation.wait_until_stable`).
    """
    global _SHARED
    if _SHARED is None or _SHARED._torn_down:
        _SHARED = Formation("formation", **kwargs).start()
    return _SHARED


@contextlib.contextmanager
def running_formation(name: str = "formation", **kwargs: Any) -> Iterator[Formation]:
    """A started formation that is always torn down on exit."""
    formation = Formation(name, **kwargs)
    with formation:
        yield formation


# -- Airflow connections ---------------------------------------------------------------------------
def register_monitor_connection(conn_id: str, formation: Formation, **extra: Any) -> str:
    """An Airflow connection (conn type ``pg_auto_failover``) to the formation's monitor."""
    from devstack.airflow_env import register_connection

    return register_connection(
        conn_id, host=HOST, port=formation.monitor_port, login=MONITOR_USER, schema=MONITOR_DB,
        conn_type="pg_auto_failover", extra=extra or None,
    )


def register_formation_connection(conn_id: str, formation: Formation, dbname: str | None = None, **extra: Any) -> str:
    """A multi-host Airflow connection (``h1:p1,h2:p2``, ``target_session_attrs=read-write``) to the nodes."""
    from devstack.airflow_env import register_connection

    options = {"target_session_attrs": "read-write", "connect_timeout": 2, **extra}
    return register_connection(
        conn_id, host=formation.host_list, login="postgres", schema=dbname or formation.dbname,
        conn_type="dataeng_postgres", extra=options,
    )
