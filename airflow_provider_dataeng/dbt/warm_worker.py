"""A warm dbt worker per Airflow worker host: dbt imported once, one forked process per dbt invocation.

Importing dbt-core and its adapter costs seconds per task, more than building one model. In-process dbt
tasks (LocalExecutor, CeleryExecutor: MWAA and Composer) therefore hand their invocation to a local
daemon that has dbt imported (and the shipped ``partial_parse.msgpack`` deserialized, see
:func:`load_shipped_manifest`): per request it forks a child (a fresh copy-on-write process: no dbt state
is shared between tasks), which takes the task's environment and working directory, runs
``dbtRunner().invoke(args)`` and streams dbt's events back; the task logs them, kills the child on
``on_kill``/timeouts and ends its database sessions as before.

The daemon is started by the first dbt task that needs it (detached, its own session), listens on a
unix socket only its user can reach (``<tempdir>/dataeng-dbt-worker-<uid>/<key>.sock``; the key covers
the interpreter, ``sys.path`` and the dbt/provider versions, so an upgrade starts a new daemon) and exits
after ``DATAENG_DBT_WORKER_IDLE_S`` seconds without a request (default 600).

``DATAENG_DBT_WARM_WORKER``: ``auto`` (default: on, except in a KubernetesExecutor pod, which runs one
task and dies, so a daemon would only add its start-up), ``on`` or ``off``. Whenever the daemon cannot be
reached or started, the task runs dbt in-process and logs why.

This module imports no dbt at import time; only the daemon does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SETTING_ENV = "DATAENG_DBT_WARM_WORKER"
IDLE_ENV = "DATAENG_DBT_WORKER_IDLE_S"
DIR_ENV = "DATAENG_DBT_WORKER_DIR"
DEFAULT_IDLE_S = 600.0
START_TIMEOUT_S = 60.0
RETRY_START_S = 600.0
CHILD_GRACE_S = 10.0
PROTOCOL = 1
_HEADER = struct.Struct("!I")
_MAX_MESSAGE = 64 * 1024 * 1024
_CACHED_MANIFESTS = 4
# Modules a dbt build/run/test imports lazily: imported once by the daemon, not by each task.
PRELOAD = (
    "dbt.cli.main", "dbt.adapters.postgres", "dbt.adapters.postgres.impl", "dbt.parser.manifest",
    "dbt.contracts.graph.manifest", "dbt.task.build", "dbt.task.run", "dbt.task.test", "dbt.task.seed",
    "dbt.task.snapshot", "dbt.task.retry", "dbt.task.compile", "dbt.task.list", "dbt.compilation",
    "dbt.graph", "dbt.context.providers", "dbt.materializations.incremental.microbatch", "psycopg2", "agate",
)


class WorkerUnavailable(Exception):
    """The warm worker could not be reached or started: the caller runs dbt in-process."""


def mode() -> str:
    """``on``, ``off`` or ``auto`` from ``DATAENG_DBT_WARM_WORKER``."""
    value = (os.environ.get(SETTING_ENV) or "auto").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return "on"
    if value in ("0", "false", "no", "off"):
        return "off"
    return "auto"


def disabled_reason() -> str | None:
    """Why dbt tasks here do not use the warm worker (None: they do)."""
    setting = mode()
    if setting == "off":
        return f"{SETTING_ENV}=off"
    if setting == "auto" and (os.environ.get("AIRFLOW_IS_K8S_EXECUTOR_POD") or "").lower() in ("true", "1"):
        return "a KubernetesExecutor pod runs one task (a warm worker would not outlive it)"
    if not dbt_importable():  # the daemon would run a dbt this task's environment does not have
        return "dbt-core is not importable in this environment"
    return None


def dbt_importable() -> bool:
    """Whether this process can import dbt-core (found without importing it)."""
    try:
        return importlib.util.find_spec("dbt.cli") is not None
    except (ImportError, ValueError):
        return False


def _versions() -> str:
    from airflow_provider_dataeng.dbt.workspace import dbt_versions

    here = Path(__file__).resolve().parent  # code changes (a deploy, an upgrade) start a new daemon
    return json.dumps([dbt_versions(), [f"{p.name}:{p.stat().st_mtime_ns}" for p in sorted(here.glob("*.py"))]])


def worker_dir() -> Path:
    """The per-user directory of daemon sockets and logs (mode 0700)."""
    root = Path(os.environ.get(DIR_ENV) or Path(tempfile.gettempdir()) / f"dataeng-dbt-worker-{os.getuid()}")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = root.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise WorkerUnavailable(f"{root} is not a private directory of this user")
    return root


def socket_path() -> Path:
    """This interpreter's and installation's daemon socket."""
    key = hashlib.sha256(
        "\0".join([str(PROTOCOL), sys.executable, os.pathsep.join(sys.path), _versions()]).encode()
    ).hexdigest()[:16]
    return worker_dir() / f"{key}.sock"


# -- framing ------------------------------------------------------------------------------------
def send(conn: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    conn.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = conn.recv(size - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(conn: socket.socket) -> dict[str, Any] | None:
    """The next message (None: the peer closed the connection)."""
    header = _recv_exact(conn, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes")
    body = _recv_exact(conn, size)
    return None if body is None else json.loads(body)


# -- client -------------------------------------------------------------------------------------
def connect(path: Path | None = None, start_timeout: float = START_TIMEOUT_S,
            log: logging.Logger | logging.LoggerAdapter | None = None) -> socket.socket:
    """A connection to the running daemon; starts one (and waits for it) when none answers.

    A daemon that failed to start less than ``RETRY_START_S`` ago is not started again (each task would
    wait for the same failure): :class:`WorkerUnavailable` at once."""
    path = path or socket_path()
    try:
        return _connect(path)
    except OSError:
        pass
    failed = path.with_suffix(".failed")
    if failed.is_file() and failed.stat().st_mtime > time.time() - RETRY_START_S:
        raise WorkerUnavailable(f"it failed to start recently ({_failure(path)}); next attempt after "
                                f"{RETRY_START_S:.0f}s")
    if log is not None:
        log.info("Starting the warm dbt worker (%s); dbt tasks on this host reuse it", path)
    _spawn(path)
    deadline = time.monotonic() + start_timeout
    while True:
        try:
            return _connect(path)
        except OSError as exc:
            if failed.is_file():
                raise WorkerUnavailable(f"it failed to start ({_failure(path)})") from None
            if time.monotonic() > deadline:
                raise WorkerUnavailable(f"it did not answer on {path} within {start_timeout:.0f}s ({exc})") from None
            time.sleep(0.1)


def _failure(path: Path) -> str:
    try:
        tail = path.with_suffix(".log").read_text(errors="replace").strip().splitlines()[-3:]
    except OSError:
        tail = []
    return " | ".join([path.with_suffix(".failed").read_text().strip(), *tail])[-800:]


def bind_path(path: Path) -> str:
    """Where the socket of ``path`` is bound: itself, or (AF_UNIX paths are limited to ~107 bytes) a short
    name in /tmp derived from it."""
    text = str(path)
    if len(text.encode()) < 100:
        return text
    return f"/tmp/dataeng-dbt-{os.getuid()}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.sock"


def _connect(path: Path) -> socket.socket:
    """Connect, and make sure the daemon runs as this user (the request carries the task's environment)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(bind_path(path))
        peercred = getattr(socket, "SO_PEERCRED", None)
        if peercred is not None:
            _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i")))
            if uid != os.getuid():
                raise ConnectionRefusedError(f"the process behind {bind_path(path)} runs as uid {uid}")
    except OSError:
        conn.close()
        raise
    return conn


def _spawn(path: Path) -> None:
    """Start the daemon detached (a grandchild: never a zombie of the task's process); a start that fails
    leaves ``<key>.failed`` (its exit code) beside ``<key>.log``."""
    with contextlib.suppress(FileNotFoundError):
        path.with_suffix(".failed").unlink()
    script = ('( "$0" -m airflow_provider_dataeng.dbt.warm_worker "$1" || echo "exit code $?" >"$3" ) '
              '</dev/null >>"$2" 2>&1 &')
    subprocess.run(["/bin/sh", "-c", script, sys.executable, str(path), str(path.with_suffix(".log")),
                    str(path.with_suffix(".failed"))], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


def invoke(request: dict[str, Any], on_event: Callable[[str, str], None], on_pid: Callable[[int], None],
           log: logging.Logger | logging.LoggerAdapter | None = None) -> dict[str, Any]:
    """Run one dbt invocation in a forked worker child; returns its ``done`` message.

    ``request``: ``args``, ``env``, ``cwd``, ``target`` (where run_results.json must end up), ``manifest``
    (a shipped ``partial_parse.msgpack`` to start from, or None). Raises :class:`WorkerUnavailable` when
    no child started (the caller may run dbt itself); once a child runs, its failures are results.
    """
    try:
        conn = connect(log=log)
    except (OSError, WorkerUnavailable) as exc:
        raise WorkerUnavailable(str(exc)) from None
    with conn:
        try:
            send(conn, request)
            conn.settimeout(30)
            first = receive(conn)
        except OSError as exc:
            raise WorkerUnavailable(f"it did not take the request ({exc})") from None
        if not first or "pid" not in first:
            raise WorkerUnavailable(f"it answered {first!r} instead of starting dbt")
        on_pid(int(first["pid"]))
        conn.settimeout(0.5)  # short waits: Airflow's timeout and on_kill land in this loop
        while True:
            try:
                message = receive(conn)
            except TimeoutError:
                continue
            if message is None:
                return {"success": False, "error": "the dbt worker process ended without a result (killed?)"}
            if "event" in message:
                on_event(str(message["event"]), str(message.get("msg", "")))
            elif "done" in message:
                return message


def stop_child(pid: int, grace_s: float) -> None:
    """SIGINT (dbt cancels its queries), then SIGTERM, then SIGKILL a worker child until it is gone."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def stop_daemons(directory: str | os.PathLike[str] | None = None) -> list[int]:
    """SIGTERM the daemons whose sockets are in ``directory`` (default :func:`worker_dir`); their pids."""
    stopped = []
    for pid_file in Path(directory or worker_dir()).glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            continue
        stopped.append(pid)
    return stopped


# -- manifest -----------------------------------------------------------------------------------
def load_shipped_manifest(msgpack_path: str | os.PathLike[str]) -> Any:
    """dbt's Manifest from a build-time ``partial_parse.msgpack``, ready for ``dbtRunner(manifest=...)``
    (flat graph and parent/child maps built, as dbt's own loader leaves them)."""
    from dbt.contracts.graph.manifest import Manifest
    from dbt.parser.manifest import extended_mashumuro_decoder

    data = Path(msgpack_path).read_bytes()
    manifest = Manifest.from_msgpack(data, decoder=extended_mashumuro_decoder)  # type: ignore[attr-defined]
    manifest.build_flat_graph()
    manifest.build_parent_and_child_maps()
    return manifest


def manifest_problem(manifest: Any, env: dict[str, str]) -> str | None:
    """Why a loaded build-time Manifest cannot stand in for dbt's own partial parse (None: it can)."""
    from dbt.version import __version__

    if manifest.metadata.dbt_version != __version__:
        return f"it was made by dbt {manifest.metadata.dbt_version}, this is dbt {__version__}"
    empty = hashlib.sha256(b"").hexdigest()
    if manifest.state_check.project_env_vars_hash.checksum != empty:
        return "dbt_project.yml reads environment variables (dbt compares them)"
    changed = sorted(k for k, v in (manifest.env_vars or {}).items() if env.get(k) != v)
    if changed:
        return f"environment variable(s) read by the project changed since the build: {', '.join(changed)}"
    return None


def prepare_manifest(manifest: Any) -> Any:
    """Stamp a loaded Manifest for this invocation, as dbt's loader does for a saved parse."""
    from datetime import datetime, timezone

    from dbt_common.invocation import get_invocation_id

    manifest.metadata.generated_at = datetime.now(timezone.utc).replace(tzinfo=None)
    manifest.metadata.invocation_id = get_invocation_id()
    return manifest


# -- daemon -------------------------------------------------------------------------------------
class _Daemon:
    def __init__(self, path: Path, idle_s: float) -> None:
        self.path = path
        self.idle_s = idle_s
        self.manifests: dict[tuple[str, int, int, int], Any] = {}
        self.lock: Any = None

    def manifest(self, path: str) -> Any:
        st = os.stat(path)
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self.manifests:
            if len(self.manifests) >= _CACHED_MANIFESTS:
                self.manifests.pop(next(iter(self.manifests)))
            self.manifests[key] = load_shipped_manifest(path)
        return self.manifests[key]

    def serve(self) -> None:
        self.lock = lock = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 - held for the daemon's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another daemon serves this socket
        for name in PRELOAD:
            with contextlib.suppress(ImportError):
                __import__(name)
        warm_up()
        if (threads := os_threads()) > 1:  # a forked child would inherit locks held by threads it lacks
            raise RuntimeError(f"{threads} threads after importing dbt: forking is unsafe, tasks run dbt themselves")
        address = bind_path(self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)
        self.path.with_suffix(".pid").write_text(str(os.getpid()))
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket: this user only
        try:
            server.bind(address)
        finally:
            os.umask(old_umask)
        server.listen(64)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        server.settimeout(min(self.idle_s, 30.0))
        last = time.monotonic()
        try:
            while True:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    if time.monotonic() - last > self.idle_s:
                        return
                    continue
                last = time.monotonic()
                with conn:
                    self.handle(conn, server)
        finally:
            for leftover in (address, self.path.with_suffix(".pid")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
            server.close()

    def handle(self, conn: socket.socket, server: socket.socket) -> None:
        try:
            conn.settimeout(10)
            request = receive(conn)
            if not request or request.get("protocol") != PROTOCOL:
                send(conn, {"error": f"expected a protocol {PROTOCOL} request"})
                return
            manifest, problem = None, None
            if request.get("manifest"):
                try:
                    manifest = self.manifest(request["manifest"])
                except Exception as exc:  # the child then lets dbt load the parse itself
                    problem = f"the build-time parse could not be loaded ({type(exc).__name__}: {exc})"
        except (OSError, ValueError):
            return
        if (threads := os_threads()) > 1:
            with contextlib.suppress(OSError):
                send(conn, {"error": f"the worker has {threads} threads: forking is unsafe"})
            raise RuntimeError(f"{threads} threads in the worker: forking is unsafe, stopping")
        pid = os.fork()
        if pid == 0:  # the child: one dbt invocation, then exit
            code = 1
            try:
                server.close()
                self.lock.close()  # a child outliving the daemon must not keep its successor from starting
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                os.setpgid(0, 0)
                conn.settimeout(None)
                send(conn, {"pid": os.getpid()})
                run_child(conn, request, manifest, problem)
                code = 0
            except BaseException:  # noqa: BLE001 - a child must never return into the accept loop
                with contextlib.suppress(Exception):
                    import traceback

                    send(conn, {"done": True, "success": False, "error": traceback.format_exc()[-2000:]})
            finally:
                os._exit(code)


def warm_up() -> None:
    """Run dbt once in the daemon on a throwaway one-model project (``parse`` then ``ls``; no database is
    contacted): dbt builds its JSON schemas, serializers and adapter behaviour flags lazily, once per
    process, and every forked child inherits them instead of building them again."""
    import shutil

    from dbt.cli.main import dbtRunner

    root = Path(tempfile.mkdtemp(prefix="dataeng-dbt-warm-"))
    try:
        (root / "models").mkdir()
        (root / "dbt_project.yml").write_text(
            "name: warm\nversion: '1.0.0'\nconfig-version: 2\nprofile: warm\nmodel-paths: ['models']\n")
        (root / "models" / "one.sql").write_text("select 1 as id\n")
        (root / "models" / "two.sql").write_text("select id from {{ ref('one') }}\n")
        (root / "models" / "schema.yml").write_text(
            "version: 2\nmodels:\n  - name: two\n    columns:\n      - name: id\n        data_tests: [not_null]\n")
        (root / "profiles.yml").write_text(
            "warm:\n  target: t\n  outputs:\n    t:\n      type: postgres\n      host: 127.0.0.1\n      port: 1\n"
            "      user: u\n      password: p\n      dbname: d\n      schema: s\n      threads: 1\n")
        # --no-static-parser: dbt's Rust extractor starts a native thread pool, which a forked child would
        # inherit without its threads (and deadlock in); children start their own.
        common = ["--project-dir", str(root), "--profiles-dir", str(root), "--target-path", str(root / "target"),
                  "--log-path", str(root / "logs"), "--no-send-anonymous-usage-stats", "--no-version-check",
                  "--log-level", "none", "--log-level-file", "none", "--no-static-parser"]
        os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
        for command in (["parse"], ["ls", "--select", "two+"]):
            try:
                dbtRunner().invoke([*command, *common])
            except Exception as exc:  # best effort: children then build what is missing themselves
                print(f"warm-up dbt {command[0]} failed: {exc}", file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):
            load_shipped_manifest(root / "target" / "partial_parse.msgpack")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def os_threads() -> int:
    """Threads of this process, native ones included (forking is only safe with one)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def run_child(conn: socket.socket, request: dict[str, Any], manifest: Any, problem: str | None) -> None:
    """In a forked child: take the task's environment and cwd, run dbt, stream events, report the end."""
    import threading

    def watch() -> None:  # the task sends nothing more: end of stream means it is gone (SIGKILL, crash)
        with contextlib.suppress(OSError):
            while conn.recv(1024):
                pass
        os.kill(os.getpid(), signal.SIGINT)  # dbt cancels its running queries
        time.sleep(CHILD_GRACE_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="dataeng-dbt-watch", daemon=True).start()
    env = request["env"]
    os.environ.clear()
    os.environ.update(env)
    os.chdir(request.get("cwd") or "/")
    if manifest is not None and (problem := manifest_problem(manifest, env)) is not None:
        manifest = None
    if request.get("manifest"):
        send(conn, {"event": "note", "msg": "dbt is handed the build-time Manifest held by the warm dbt worker: no parse"
                    if manifest is not None else f"dbt loads the build-time parse itself: {problem}"})
    result = run_dbt(request["args"], lambda level, msg: send(conn, {"event": level, "msg": msg}),
                     prepare_manifest(manifest) if manifest is not None else None, request.get("target"))
    send(conn, {"done": True, **result})


def run_dbt(args: list[str], emit: Callable[[str, str], None], manifest: Any = None,
            target: str | None = None) -> dict[str, Any]:
    """``dbtRunner(manifest=...).invoke(args)``, events to ``emit(level, msg)``; writes run_results.json
    into ``target`` when dbt did not (``--no-write-json``, or a ``dbt retry`` of such a run)."""
    from dbt.cli.main import dbtRunner

    def relay(event: Any) -> None:
        info = getattr(event, "info", None)
        if info is None or info.level not in ("info", "warn", "error") or not info.msg:
            return
        emit(info.level, str(info.msg))

    res = dbtRunner(manifest=manifest, callbacks=[relay]).invoke([*args, "--log-level", "none"])
    if target is not None and hasattr(res.result, "write") and not (Path(target) / "run_results.json").exists():
        res.result.write(str(Path(target) / "run_results.json"))
    exc = res.exception
    if exc is not None:
        return {"success": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"success": bool(res.success), "error": None}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0])
    with contextlib.suppress(OSError):
        os.setsid()
    idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S)
    _Daemon(path, idle).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
