"""dbt from an Airflow connection: generated profile, per-run artifacts, in-process or subprocess runner.

- **Profile**: built at run time from a PostgreSQL Airflow connection through
  :class:`~airflow_provider_dataeng.hooks.postgres.FailoverPostgresHook` (hosts, port, user, dbname,
  target schema, ``target_session_attrs``, SSL extras). The generated ``profiles.yml`` lives in a fresh
  temp dir and holds no secret: its password is ``{{ env_var('DBT_ENV_SECRET_PASSWORD') }}``, a variable
  set only in the dbt process's environment (dbt scrubs ``DBT_ENV_SECRET_*`` values from its logs).
- **Multi-host**: dbt-postgres 1.11 passes ``host`` verbatim to libpq (a comma-separated list works) but
  types ``port`` as one integer. When every host shares one port the profile names them all
  (``host: h1,h2``) and libpq picks the node matching ``PGTARGETSESSIONATTRS`` (dbt-postgres has no
  ``target_session_attrs`` key; libpq reads the variable). When the ports differ, the hook resolves the
  node that matches ``target_session_attrs`` right before dbt starts and points the profile at it; after
  a failover the next Airflow try resolves again and ``dbt retry`` resumes.
- **Artifacts**: ``target/`` and the dbt log go to ``<state root>/<dag>/<task>/<run>/try-<n>``
  (state root: ``$DATAENG_DBT_STATE_DIR`` or ``<tempdir>/dataeng-dbt``); an Airflow retry finds the
  previous try's ``run_results.json`` there and runs ``dbt retry`` on it (only failed and skipped nodes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_dataeng.connections import connect
from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

PASSWORD_ENV = "DBT_ENV_SECRET_PASSWORD"
PROFILE_NAME = "dataeng"
TARGET_NAME = "airflow"
STATE_DIR_ENV = "DATAENG_DBT_STATE_DIR"
DEFAULT_TARGET_SCHEMA = "analytics"
COMMANDS = ("build", "run", "test", "seed", "snapshot", "source freshness", "compile", "parse", "retry")
# dbt commands whose failed/skipped nodes `dbt retry` can re-run.
RETRYABLE_COMMANDS = ("build", "run", "test", "seed", "snapshot", "compile")
RETRYABLE_STATUSES = frozenset({"error", "fail", "skipped", "runtime error", "partial success"})
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
# libpq/dbt-postgres profile keys taken from the connection's extras when present.
SSL_EXTRAS = ("sslmode", "sslcert", "sslkey", "sslrootcert", "keepalives_idle", "application_name")
_SAFE_PATH = re.compile(r"[^A-Za-z0-9._=-]+")
_ENV_LOCK = threading.Lock()  # in-process runs change os.environ: one at a time per process


class DbtRunError(RuntimeError):
    """dbt finished with failures; ``result`` holds the summary."""

    def __init__(self, message: str, result: DbtRunResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class DbtProfile:
    """One dbt-postgres target generated from an Airflow connection (no password inside)."""

    host: str
    port: int
    user: str
    dbname: str
    schema: str
    threads: int = 1
    target_session_attrs: str = "read-write"
    connect_timeout: int = 10
    retries: int = 3
    extras: dict[str, Any] = field(default_factory=dict)

    def as_target(self) -> dict[str, Any]:
        """The ``outputs.<target>`` mapping for profiles.yml; the password is an env_var() reference."""
        target: dict[str, Any] = {
            "type": "postgres",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": "{{ env_var('" + PASSWORD_ENV + "', '') }}",
            "dbname": self.dbname,
            "schema": self.schema,
            "threads": self.threads,
            "connect_timeout": self.connect_timeout,
            "retries": self.retries,
        }
        target.update(self.extras)
        return target

    def profiles_yml(self) -> str:
        """profiles.yml text (safe to write: references the password, never contains it)."""
        doc = {PROFILE_NAME: {"target": TARGET_NAME, "outputs": {TARGET_NAME: self.as_target()}}}
        return yaml.safe_dump(doc, sort_keys=False)

    def env(self) -> dict[str, str]:
        """Non-secret environment for the dbt process (libpq honours PGTARGETSESSIONATTRS)."""
        return {
            "PGTARGETSESSIONATTRS": self.target_session_attrs,
            "DATAENG_DBT_HOST": self.host,
            "DATAENG_DBT_PORT": str(self.port),
            "DATAENG_DBT_USER": self.user,
            "DATAENG_DBT_DBNAME": self.dbname,
            "DATAENG_DBT_SCHEMA": self.schema,
        }


@dataclass
class DbtNodeResult:
    """One row of run_results.json, trimmed to what the log and XCom need."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    execution_time: float
    rows: int | None = None
    message: str | None = None
    failures: int | None = None
    compiled_path: str | None = None


@dataclass
class DbtRunResult:
    """Summary of one dbt invocation."""

    command: str
    success: bool
    elapsed: float
    run_dir: str
    target_dir: str
    log_path: str
    retried_from: str | None = None
    nodes: list[DbtNodeResult] = field(default_factory=list)
    error: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes:
            out[node.status] = out.get(node.status, 0) + 1
        return out

    @property
    def failed(self) -> list[DbtNodeResult]:
        return [n for n in self.nodes if n.status in FAILED_STATUSES]

    def as_xcom(self, max_nodes: int = 1000) -> dict[str, Any]:
        """A small JSON-able dict: counts, failures and per-node status/time/rows."""
        return {
            "command": self.command,
            "success": self.success,
            "elapsed_s": round(self.elapsed, 3),
            "retried_from": self.retried_from,
            "target_dir": self.target_dir,
            "counts": self.counts,
            "failed": [asdict(n) for n in self.failed],
            "nodes": [
                {"node": n.unique_id, "status": n.status, "time_s": round(n.execution_time, 3), "rows": n.rows}
                for n in self.nodes[:max_nodes]
            ],
            "error": self.error,
        }

    def table(self) -> str:
        """A fixed-width table for the task log: node, status, time, rows."""
        width = max([len(n.unique_id) for n in self.nodes] + [4])
        lines = [f"{'node':<{width}}  {'status':<13} {'time_s':>8} {'rows':>10}"]
        for n in self.nodes:
            rows = "" if n.rows is None else str(n.rows)
            lines.append(f"{n.unique_id:<{width}}  {n.status:<13} {n.execution_time:>8.2f} {rows:>10}")
        lines.append(", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "no nodes ran")
        return "\n".join(lines)

    def failure_message(self) -> str:
        """Names each failed node, its error and the compiled SQL path."""
        if not self.failed:
            return f"dbt {self.command} failed: {self.error or 'see the dbt log at ' + self.log_path}"
        parts = [f"dbt {self.command}: {len(self.failed)} node(s) failed"]
        for n in self.failed:
            msg = (n.message or "").strip().replace("\n", " ")
            parts.append(f"- {n.unique_id} [{n.status}]: {msg[:500]} (compiled SQL: {n.compiled_path or 'n/a'})")
        return "\n".join(parts)


def sanitize_path_part(text: str) -> str:
    """A file-name-safe form of a dag id, task id or run id."""
    return _SAFE_PATH.sub("_", text).strip("._") or "_"


def state_root() -> Path:
    """Root of per-run dbt artifacts: ``$DATAENG_DBT_STATE_DIR`` or ``<tempdir>/dataeng-dbt``."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path(tempfile.gettempdir()) / "dataeng-dbt")


def run_state_dir(dag_id: str, task_id: str, run_id: str, map_index: int = -1, root: Path | None = None) -> Path:
    """Stable per-(dag, task, run) directory that holds one ``try-<n>`` directory per attempt."""
    task = sanitize_path_part(task_id) + (f".{map_index}" if map_index is not None and map_index >= 0 else "")
    return (root or state_root()) / sanitize_path_part(dag_id) / task / sanitize_path_part(run_id)


def previous_try_dir(run_dir: Path, try_number: int) -> Path | None:
    """The newest earlier ``try-<n>`` (n < try_number) that left a run_results.json, if any."""
    best: tuple[int, Path] | None = None
    if not run_dir.is_dir():
        return None
    for child in run_dir.iterdir():
        m = re.fullmatch(r"try-(\d+)", child.name)
        if not m or int(m.group(1)) >= try_number:
            continue
        if (child / "target" / "run_results.json").is_file() and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), child)
    return best[1] if best else None


def needs_retry(previous_target: Path) -> bool:
    """True when the previous run_results.json has failed or skipped nodes (what ``dbt retry`` re-runs)."""
    try:
        data = json.loads((previous_target / "run_results.json").read_text())
    except (OSError, ValueError):
        return False
    which = (data.get("args") or {}).get("which")
    if which not in (*RETRYABLE_COMMANDS, "retry"):
        return False
    return any(r.get("status") in RETRYABLE_STATUSES for r in data.get("results", []))


def summarize_results(target_dir: Path) -> list[DbtNodeResult]:
    """Read run_results.json (or sources.json for freshness) from ``target_dir``."""
    path = target_dir / "run_results.json"
    freshness = target_dir / "sources.json"
    if not path.is_file() and freshness.is_file():
        path = freshness
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    nodes: list[DbtNodeResult] = []
    for r in data.get("results", []):
        uid = r.get("unique_id", "")
        adapter = r.get("adapter_response") or {}
        rows = adapter.get("rows_affected")
        nodes.append(
            DbtNodeResult(
                unique_id=uid,
                name=uid.split(".")[2] if uid.count(".") >= 2 else uid,
                resource_type=uid.split(".", 1)[0],
                status=str(r.get("status")),
                execution_time=float(r.get("execution_time") or 0.0),
                rows=int(rows) if isinstance(rows, int) and rows >= 0 else None,
                message=r.get("message") or r.get("error"),
                failures=r.get("failures"),
            )
        )
    if any(n.status in FAILED_STATUSES for n in nodes):
        _attach_compiled_paths(target_dir, nodes)
    return nodes


def _attach_compiled_paths(target_dir: Path, nodes: list[DbtNodeResult]) -> None:
    """Fill ``compiled_path`` for failed nodes from this run's manifest.json (absolute paths)."""
    try:
        manifest = json.loads((target_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return
    all_nodes = manifest.get("nodes", {})
    for n in nodes:
        if n.status not in FAILED_STATUSES:
            continue
        node = all_nodes.get(n.unique_id) or {}
        compiled = node.get("compiled_path")
        if compiled:
            path = Path(compiled)
            n.compiled_path = str(path if path.is_absolute() else target_dir.parent / path)
        elif node.get("package_name") and node.get("original_file_path"):
            n.compiled_path = str(target_dir / "compiled" / node["package_name"] / node["original_file_path"])


def profile_from_connection(
    hook: FailoverPostgresHook, *, target_schema: str | None = None, threads: int = 1
) -> tuple[DbtProfile, str | None]:
    """Build the dbt target for ``hook``'s connection; returns ``(profile, password)``.

    Connects only when the connection lists hosts on different ports (to resolve the node matching
    ``target_session_attrs``; dbt-postgres takes a single port).
    """
    conn = hook.connection
    extras = conn.extra_dejson
    hosts = hook.hosts
    if not conn.login:
        raise ValueError(f"connection {hook.get_conn_id()!r}: login is empty; dbt needs a user")
    if not hook.dbname:
        raise ValueError(f"connection {hook.get_conn_id()!r}: schema (the database name) is empty")
    ports = {p for _, p in hosts}
    if len(ports) == 1:
        host, port = ",".join(h for h, _ in hosts), ports.pop()
    else:
        host, port = resolve_session_host(hook)
        hook.log.info(
            "Hosts %s use different ports and dbt-postgres takes one port: resolved the %s node %s:%d",
            ",".join(f"{h}:{p}" for h, p in hosts), hook.target_session_attrs, host, port,
        )
    profile_extras = {k: extras[k] for k in SSL_EXTRAS if extras.get(k) not in (None, "")}
    retries = extras.get("dbt_connect_retries", 3)
    profile = DbtProfile(
        host=host,
        port=int(port),
        user=conn.login,
        dbname=hook.dbname,
        schema=target_schema or extras.get("dbt_schema") or DEFAULT_TARGET_SCHEMA,
        threads=int(threads),
        target_session_attrs=hook.target_session_attrs,
        connect_timeout=int(extras.get("connect_timeout", 10)),
        retries=int(retries),
        extras=profile_extras,
    )
    return profile, conn.password or None


def resolve_session_host(hook: FailoverPostgresHook) -> tuple[str, int]:
    """Connect through the hook (all hosts, target_session_attrs, backoff) and return where it landed."""
    with hook.connection_scope() as conn:
        info = conn.info
        return str(info.host), int(info.port)


class DbtHook(BaseHook):
    """Runs dbt commands against an Airflow PostgreSQL connection.

    :param conn_id: Airflow connection of the warehouse (multi-host ``h1:p1,h2:p2`` allowed).
    :param project_dir: the dbt project (read only: nothing is written into it).
    :param target_schema: the profile's schema (default: extra ``dbt_schema``, else ``analytics``).
    :param profiles_dir: use this directory's profiles.yml instead of the generated one (the
        connection's password and fields are still exported as environment variables).
    :param threads: dbt threads.
    :param use_subprocess: run the ``dbt`` CLI in a child process instead of in-process ``dbtRunner``.
    """

    conn_name_attr = "conn_id"
    hook_name = "dbt (PostgreSQL profile from an Airflow connection)"

    def __init__(
        self,
        conn_id: str,
        project_dir: str | os.PathLike[str],
        *,
        target_schema: str | None = None,
        profiles_dir: str | os.PathLike[str] | None = None,
        threads: int = 1,
        use_subprocess: bool = False,
    ) -> None:
        super().__init__()
        if not conn_id:
            raise ValueError("conn_id is empty: expected an Airflow connection id")
        if int(threads) < 1:
            raise ValueError(f"threads={threads!r}: expected an integer >= 1")
        self.conn_id = conn_id
        self.project_dir = Path(project_dir)
        self.target_schema = target_schema
        self.profiles_dir = Path(profiles_dir) if profiles_dir else None
        self.threads = int(threads)
        self.use_subprocess = use_subprocess

    # -- profile ---------------------------------------------------------------------------------
    def postgres_hook(self) -> FailoverPostgresHook:
        return connect(self.conn_id, role="warehouse")

    def profile(self) -> tuple[DbtProfile, str | None]:
        """The generated profile and the connection's password (never logged or written)."""
        return profile_from_connection(self.postgres_hook(), target_schema=self.target_schema, threads=self.threads)

    @contextlib.contextmanager
    def profiles(self) -> Iterator[tuple[Path, dict[str, str], str | None]]:
        """Yield ``(profiles_dir, env, password)``: a temp dir with the generated profiles.yml (removed after)."""
        profile, password = self.profile()
        env = profile.env()
        if password:
            env[PASSWORD_ENV] = password
        if self.profiles_dir is not None:
            yield self.profiles_dir, env, password
            return
        tmp = Path(tempfile.mkdtemp(prefix="dataeng-dbt-profile-"))
        try:
            path = tmp / "profiles.yml"
            path.write_text(profile.profiles_yml())
            os.chmod(path, 0o600)
            yield tmp, env, password
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- running ---------------------------------------------------------------------------------
    def build_args(
        self,
        command: str,
        *,
        profiles_dir: Path,
        run_dir: Path,
        select: Sequence[str] | str | None = None,
        exclude: Sequence[str] | str | None = None,
        selector: str | None = None,
        vars: dict[str, Any] | None = None,
        full_refresh: bool = False,
        indirect_selection: str | None = None,
        retry_state: Path | None = None,
    ) -> list[str]:
        """dbt CLI arguments (without the ``dbt`` executable)."""
        if retry_state is not None:
            args = ["retry", "--state", str(retry_state)]
        else:
            if command not in COMMANDS:
                raise ValueError(f"command={command!r}: expected one of {', '.join(COMMANDS)}")
            args = command.split()
        args += [
            "--project-dir", str(self.project_dir),
            "--profiles-dir", str(profiles_dir),
            "--target-path", str(run_dir / "target"),
            "--log-path", str(run_dir / "logs"),
            "--threads", str(self.threads),
            "--no-use-colors",
            "--log-level-file", "debug",
            "--no-send-anonymous-usage-stats",
            "--no-version-check",
        ]
        if self.profiles_dir is None:
            args += ["--profile", PROFILE_NAME, "--target", TARGET_NAME]
        if retry_state is not None:
            if vars:
                args += ["--vars", json.dumps(vars)]
            return args
        select_list = _as_list(select, "select")
        exclude_list = _as_list(exclude, "exclude")
        if select_list:
            args += ["--select", *select_list]
        if exclude_list:
            args += ["--exclude", *exclude_list]
        if selector:
            args += ["--selector", selector]
        if vars:
            args += ["--vars", json.dumps(vars)]
        if full_refresh and command in ("build", "run", "seed"):
            args.append("--full-refresh")
        if indirect_selection and command in ("build", "test"):
            args += ["--indirect-selection", indirect_selection]
        return args

    def run(
        self,
        command: str = "build",
        *,
        run_dir: Path,
        select: Sequence[str] | str | None = None,
        exclude: Sequence[str] | str | None = None,
        selector: str | None = None,
        vars: dict[str, Any] | None = None,
        full_refresh: bool = False,
        indirect_selection: str | None = None,
        retry_from: Path | None = None,
    ) -> DbtRunResult:
        """Run one dbt command with artifacts in ``run_dir`` (``target/``, ``logs/``).

        ``retry_from``: a previous try directory; when given, runs ``dbt retry`` on its run_results.json.
        Raises :class:`DbtRunError` when dbt reports failures.
        """
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        if retry_from is not None:
            _seed_partial_parse(retry_from / "target", run_dir / "target")
        with self.profiles() as (profiles_dir, env, password):
            args = self.build_args(
                command, profiles_dir=profiles_dir, run_dir=run_dir, select=select, exclude=exclude,
                selector=selector, vars=vars, full_refresh=full_refresh,
                indirect_selection=indirect_selection,
                retry_state=(retry_from / "target") if retry_from is not None else None,
            )
            self.log.info(
                "dbt %s on %s (schema %s), artifacts in %s", " ".join(args[:1] + _display_args(args[1:])),
                self.postgres_hook().describe(), self.target_schema or "profile default", run_dir,
            )
            if self.use_subprocess:
                ok, error = self._run_subprocess(args, env, password)
            else:
                ok, error = self._run_in_process(args, env, password)
        nodes = summarize_results(run_dir / "target")
        result = DbtRunResult(
            command="retry" if retry_from is not None else command,
            success=ok and not any(n.status in FAILED_STATUSES for n in nodes),
            elapsed=time.monotonic() - started,
            run_dir=str(run_dir),
            target_dir=str(run_dir / "target"),
            log_path=str(run_dir / "logs" / "dbt.log"),
            retried_from=str(retry_from) if retry_from is not None else None,
            nodes=nodes,
            error=_scrub(error, password) if error else None,
        )
        if result.nodes:
            self.log.info("dbt results:\n%s", result.table())
        if not result.success:
            raise DbtRunError(result.failure_message(), result)
        return result

    def _run_in_process(self, args: list[str], env: dict[str, str], password: str | None) -> tuple[bool, str | None]:
        from dbt.cli.main import dbtRunner

        log = self.log

        def relay(event: Any) -> None:
            info = getattr(event, "info", None)
            if info is None or info.level not in ("info", "warn", "error") or not info.msg:
                return
            text = _scrub(str(info.msg), password)
            {"warn": log.warning, "error": log.error}.get(info.level, log.info)("dbt: %s", text)

        with _ENV_LOCK, _patched_environ({**env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}):
            res = dbtRunner(callbacks=[relay]).invoke([*args, "--log-level", "none"])
        if res.exception is not None:
            return False, f"{type(res.exception).__name__}: {res.exception}"
        return bool(res.success), None

    def _run_subprocess(self, args: list[str], env: dict[str, str], password: str | None) -> tuple[bool, str | None]:
        child_env = {**os.environ, **env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        cmd = [*dbt_executable(), *args, "--log-level", "info"]
        with subprocess.Popen(
            cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            cwd=str(self.project_dir),
        ) as proc:
            assert proc.stdout is not None
            tail: list[str] = []
            for line in proc.stdout:
                line = _scrub(line.rstrip(), password)
                self.log.info("dbt: %s", line)
                tail = (tail + [line])[-20:]
            code = proc.wait()
        # exit code 1: dbt ran and some node failed (run_results has the detail); 2: dbt itself failed.
        if code == 0:
            return True, None
        return False, f"dbt exited with code {code}: " + " | ".join(t for t in tail if t.strip())[-1500:]


def _seed_partial_parse(previous_target: Path, target: Path) -> None:
    """Reuse the previous try's parse (dbt re-parses fully if the project, vars or profile changed)."""
    source = previous_target / "partial_parse.msgpack"
    if source.is_file():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / "partial_parse.msgpack")


def dbt_executable() -> list[str]:
    """The ``dbt`` CLI next to this interpreter, else the one on PATH."""
    local = Path(sys.executable).with_name("dbt")
    if local.exists():
        return [str(local)]
    found = shutil.which("dbt")
    if found:
        return [found]
    return [sys.executable, "-c", "from dbt.cli.main import cli; cli()"]


@contextlib.contextmanager
def _patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _as_list(value: Sequence[str] | str | None, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name}={value!r}: expected a string or a list of strings")
    return [part for v in value for part in v.split()]


def _display_args(args: list[str]) -> list[str]:
    """Arguments for the log (long --select lists shortened)."""
    out: list[str] = []
    for a in args:
        out.append(a if len(a) < 200 else a[:200] + "...")
    return out[:60] + (["..."] if len(out) > 60 else [])
