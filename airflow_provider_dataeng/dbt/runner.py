"""Run dbt against an Airflow connection: generated profile, per-run artifacts, in-process or subprocess.

:class:`DbtRunner` writes the profile (:mod:`~airflow_provider_dataeng.dbt.profile`) into a temp dir,
runs one dbt command with ``target/`` and logs in a run directory, relays dbt's output to a logger with
the password scrubbed, and summarizes ``run_results.json``. dbt runs in-process (``dbtRunner``, needs
dbt-core importable: the ``[dbt]`` extra) or as a child process (``use_subprocess``, or
``dbt_executable_path`` for a dbt installed in another virtualenv).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_dataeng.dbt.artifacts import seed_partial_parse
from airflow_provider_dataeng.dbt.profile import (
    PASSWORD_ENV,
    PROFILE_NAME,
    TARGET_NAME,
    DbtProfile,
    profile_from_connection,
)
from airflow_provider_dataeng.dbt.results import FAILED_STATUSES, DbtRunError, DbtRunResult, summarize_results
from airflow_provider_dataeng.dbt.schemas import CREATING_COMMANDS
from airflow_provider_dataeng.dbt.spec import COMMANDS
from airflow_provider_dataeng.dbt.workspace import (
    BUILD_INFO_FILE,
    PARTIAL_PARSE_FILE,
    adopt_parse,
    anchor_local_packages,
    changed_env_vars,
    copy_project,
    read_build_info,
    reuse_problem,
    seed_target,
    stale_files,
)
from airflow_provider_dataeng.values import as_list, first_line

if TYPE_CHECKING:
    from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

_ENV_LOCK = threading.Lock()  # in-process runs change os.environ: one at a time per process
TERMINATE_GRACE_S = 10.0
FAILING_ROWS_SHOWN = 20
QUICK_COMMANDS = ("build", "run", "test", "seed", "snapshot")  # may skip dbt's file diff and manifest writes
PROFILE_STAMP_FILE = "dataeng_profile.json"  # in each try's target/: the profile its parse was made with
NOT_INSTALLED = (
    "dbt-core is not importable in this environment: install airflow-provider-dataeng[dbt], or set "
    "dbt_executable_path to a dbt executable installed elsewhere (e.g. another virtualenv)"
)


class DbtRunner:
    """Runs dbt commands against an Airflow PostgreSQL connection.

    :param conn_id: Airflow connection of the warehouse (multi-host ``h1:p1,h2:p2`` allowed).
    :param project_dir: the dbt project (read only: nothing is written into it).
    :param target_schema: the profile's schema (default: extra ``dbt_schema``, else ``analytics``).
    :param profiles_dir: use this directory's profiles.yml instead of the generated one (the
        connection's password and fields are still exported as environment variables).
    :param threads: dbt threads.
    :param use_subprocess: run the ``dbt`` CLI in a child process instead of in-process ``dbtRunner``.
    :param dbt_executable_path: the dbt executable to run in a child process (e.g. from another virtualenv).
    :param log: where dbt's output and the summary go (default: this module's logger).
    """

    def __init__(
        self,
        conn_id: str,
        project_dir: str | os.PathLike[str],
        *,
        target_schema: str | None = None,
        profiles_dir: str | os.PathLike[str] | None = None,
        threads: int = 1,
        use_subprocess: bool = False,
        dbt_executable_path: str | os.PathLike[str] | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        application_name: str | None = None,
    ) -> None:
        if not conn_id:
            raise ValueError("conn_id is empty: expected an Airflow connection id")
        if int(threads) < 1:
            raise ValueError(f"threads={threads!r}: expected an integer >= 1")
        self.conn_id = conn_id
        self.project_dir = Path(project_dir)
        self.target_schema = target_schema
        self.profiles_dir = Path(profiles_dir) if profiles_dir else None
        self.threads = int(threads)
        self.dbt_executable_path = str(dbt_executable_path) if dbt_executable_path else None
        self.use_subprocess = use_subprocess or self.dbt_executable_path is not None
        self.log = log or logging.getLogger(__name__)
        # Every session dbt opens is named "<token> <label>": cancel() finds them in pg_stat_activity.
        self.session_token = f"dbt-{uuid.uuid4().hex[:12]}"
        self.application_name = f"{self.session_token} {application_name or 'dataeng'}"[:63]
        self._proc: subprocess.Popen[str] | None = None
        self._worker_pid: int | None = None
        self._hook: Any = None

    # -- profile ---------------------------------------------------------------------------------
    def warehouse_hook(self) -> FailoverPostgresHook:
        """The warehouse hook (built once: cancel() reuses it without another connection lookup)."""
        if self._hook is None:
            from airflow_provider_dataeng.connections import connect

            self._hook = connect(self.conn_id, role="warehouse")
            _ = self._hook.connection  # looked up now, not from a signal handler in on_kill
        return self._hook  # type: ignore[return-value]

    def profile(self) -> tuple[DbtProfile, str | None]:
        """The generated profile and the connection's password (never logged or written)."""
        profile, password = profile_from_connection(self.warehouse_hook(), target_schema=self.target_schema,
                                                    threads=self.threads)
        extras = {**profile.extras, "application_name": self.application_name}
        return dataclasses.replace(profile, extras=extras), password

    @contextlib.contextmanager
    def profiles(self) -> Iterator[tuple[Path, dict[str, str], str | None]]:
        """Yield ``(profiles_dir, env, password)``: a temp dir with the generated profiles.yml (removed after)."""
        profile, password = self.profile()
        self.current_profile = profile
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
        project_dir: Path | None = None,
    ) -> list[str]:
        """dbt CLI arguments (without the ``dbt`` executable)."""
        if retry_state is not None:
            args = ["retry", "--state", str(retry_state)]
        else:
            if command not in COMMANDS:
                raise ValueError(f"command={command!r}: expected one of {', '.join(COMMANDS)}")
            args = command.split()
        args += [
            "--project-dir", str(project_dir or self.project_dir),
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
        if vars:
            args += ["--vars", json.dumps(vars)]
        if retry_state is not None:
            return args
        if select_list := as_list(select):
            args += ["--select", *select_list]
        if exclude_list := as_list(exclude):
            args += ["--exclude", *exclude_list]
        if selector:
            args += ["--selector", selector]
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
        artifacts_dir: Path | None = None,
        install_deps: bool = False,
    ) -> DbtRunResult:
        """Run one dbt command with artifacts in ``run_dir`` (``target/``, ``logs/``).

        ``retry_from``: a previous try directory; when given, runs ``dbt retry`` on its run_results.json.
        ``artifacts_dir``: the build-time target dir (``manifest.json``, ``partial_parse.msgpack``) this
        run starts from (default ``<project_dir>/target``). ``install_deps``: ``dbt deps`` in a copy of the
        project first. Raises :class:`DbtRunError` when dbt reports failures.
        """
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        project = self.project_dir
        if install_deps:
            project = copy_project(self.project_dir, run_dir / "project")
            anchor_local_packages(project, self.project_dir)
        with self.profiles() as (profiles_dir, env, password):
            artifacts = artifacts_dir or self.project_dir / "target"
            unchanged = self._seed(run_dir / "target", retry_from, artifacts, env)
            # The project is the build-time one, file by file: dbt's file diff would find nothing, and
            # manifest.json is the shipped one. Skip both (dbt writes manifest.json twice per invocation);
            # run_results.json is written from the in-process result instead. Only when nothing else makes
            # dbt drop the saved parse (reuse_problem): without the file diff, a full parse reads no file.
            # Then dbt is handed the shipped Manifest itself and parses nothing.
            quick = (unchanged and not self.use_subprocess and not install_deps and retry_from is None
                     and command in QUICK_COMMANDS)
            if command in CREATING_COMMANDS:
                self._create_schemas(artifacts, select, exclude, selector)
            if install_deps:
                deps = ["deps", "--project-dir", str(project), "--profiles-dir", str(profiles_dir),
                        "--log-path", str(run_dir / "logs"), "--no-use-colors", "--no-send-anonymous-usage-stats",
                        "--no-version-check"]
                if self.profiles_dir is None:
                    deps += ["--profile", PROFILE_NAME, "--target", TARGET_NAME]
                self.log.info("dbt deps in the working copy %s", project)
                ok, error = self._invoke(deps, env, password, project, None)
                if not ok:
                    raise DbtRunError(f"dbt deps failed: {error or 'see ' + str(run_dir / 'logs' / 'dbt.log')}",
                                      DbtRunResult("deps", False, time.monotonic() - started, str(run_dir),
                                                   str(run_dir / "target"), str(run_dir / "logs" / "dbt.log"),
                                                   error=error))
            args = self.build_args(
                command, profiles_dir=profiles_dir, run_dir=run_dir, select=select, exclude=exclude,
                selector=selector, vars=vars, full_refresh=full_refresh,
                indirect_selection=indirect_selection,
                retry_state=(retry_from / "target") if retry_from is not None else None, project_dir=project,
            )
            preloaded: Path | None = None
            if quick and (why_not := reuse_problem(self.project_dir, read_build_info(artifacts) or {}, vars)):
                # dbt may drop the saved parse for these (a full parse): it must then read the files itself
                self.log.info("dbt loads the build-time parse itself and checks the project's files: %s", why_not)
                quick = False
            if quick:
                # --cache-selected-only: dbt lists the relations of the selected nodes' schemas, not of every
                # schema in the project (a relation elsewhere is looked up when asked for)
                args += ["--no-partial-parse-file-diff", "--no-write-json", "--cache-selected-only"]
                _copy_artifact(artifacts / "manifest.json", run_dir / "target" / "manifest.json")
                preloaded = artifacts / PARTIAL_PARSE_FILE
            self.log.info(
                "dbt %s on %s (schema %s), artifacts in %s", " ".join(args[:1] + _display_args(args[1:])),
                self.warehouse_hook().describe(), self.target_schema or "profile default", run_dir,
            )
            ok, error = self._invoke(args, env, password, project, run_dir / "target", preloaded)
            if error and "dbt deps" in error and not install_deps:
                error += (" (install the packages at build time with parse_project, which runs dbt deps, and ship "
                          "dbt_packages/ with the project; or set install_deps=True)")
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
            self.show_failing_tests(result)
            raise DbtRunError(result.failure_message(), result)
        return result

    def show_failing_tests(self, result: DbtRunResult) -> None:
        """Log each failed test's compiled SQL and the first rows it returns (the failing rows)."""
        for node in result.failed:
            if node.resource_type != "test" or not node.compiled_path:
                continue
            try:
                text = Path(node.compiled_path).read_text().strip()
            except OSError:
                continue
            self.log.error("Failing test %s (%s failing row(s)), its SQL:\n%s", node.unique_id,
                           "?" if node.failures is None else node.failures, text)
            try:
                columns, rows = self._query_rows(text, FAILING_ROWS_SHOWN)
            except Exception as exc:  # the log is best effort: the task fails on the test anyway
                self.log.warning("Could not read the failing rows of %s: %s", node.unique_id, first_line(exc))
                continue
            self.log.error("First %d failing row(s) of %s:\n%s", len(rows), node.unique_id, format_rows(columns, rows))

    def _query_rows(self, select_sql: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a test's SELECT read-only (statement_timeout 60 s), at most ``limit`` rows."""
        from psycopg import sql

        query = sql.SQL("select * from ({}) as dataeng_failing_rows limit {}").format(
            sql.SQL(select_sql.rstrip().rstrip(";")), sql.Literal(limit))  # dbt's compiled SQL, run as dbt does
        with self.warehouse_hook().connection_scope() as conn:
            conn.read_only = True
            with conn.cursor() as cur:
                cur.execute("set local statement_timeout = '60s'")
                cur.execute(query)
                columns = [d.name for d in cur.description or []]
                rows = cur.fetchall()
            conn.rollback()
        return columns, rows

    def _seed(self, target: Path, retry_from: Path | None, artifacts_dir: Path, env: dict[str, str]) -> bool:
        """Start from the previous try's parse (a retry) or the build-time one; log a stale project.

        True when this try starts from the build-time parse of a project unchanged since (file by file, and
        the environment variables it reads): dbt's own file diff would then find nothing, so the caller may
        skip it (with ``--no-partial-parse-file-diff`` dbt would not notice a changed env var at all)."""
        profile = self.current_profile
        stamp = {"profile_hash": profile.parse_hash(), "database": profile.dbname, "schema": profile.schema}
        target.mkdir(parents=True, exist_ok=True)
        (target / PROFILE_STAMP_FILE).write_text(json.dumps(stamp))  # what the next try's adopt_parse needs
        if retry_from is not None and seed_partial_parse(retry_from / "target", target):
            try:
                previous = json.loads((retry_from / "target" / PROFILE_STAMP_FILE).read_text())
            except (OSError, ValueError):
                previous = None
            why_not = adopt_parse(target, previous, profile) if previous else "the previous try left no profile stamp"
            if why_not is None:
                self.log.info("Starting from the previous try's parse in %s", retry_from / "target")
            else:
                self.log.warning("dbt parses the whole project: the previous try's parse cannot be reused, %s", why_not)
            return False
        info = read_build_info(artifacts_dir)
        if info is None:
            if (artifacts_dir / "manifest.json").is_file():
                self.log.info("No %s in %s (artifacts not built by parse_project): cannot tell whether the "
                              "project changed since the build", BUILD_INFO_FILE, artifacts_dir)
        stale: list[str] = []
        if info is not None and (stale := stale_files(self.project_dir, info)):
            self.log.warning(
                "The dbt project %s changed since its artifacts in %s were built: %d file(s) differ (%s). dbt "
                "re-parses them, but this DAG was rendered from the old manifest.json: rebuild the artifacts "
                "(make manifest, or python -m airflow_provider_dataeng.dbt.parse_project) and ship them.",
                self.project_dir, artifacts_dir, len(stale), ", ".join(stale[:10]) + (" ..." if len(stale) > 10 else ""),
            )
        if not seed_target(artifacts_dir, target):
            self.log.info("No build-time partial_parse.msgpack in %s: dbt parses the whole project", artifacts_dir)
            return False
        why_not = adopt_parse(target, info, self.current_profile) if info is not None else "no build info"
        if why_not is None:
            self.log.info("Starting from the build-time parse in %s (partial_parse.msgpack)", artifacts_dir)
            assert info is not None
            changed = changed_env_vars(info, {**os.environ, **env})
            if changed:
                self.log.info("Environment variable(s) read by the project changed since the build (%s): dbt "
                              "re-parses the files that read them", ", ".join(changed))
            elif changed is None:
                self.log.info("The build info records no environment variables (artifacts built by an older "
                              "parse_project): dbt checks the project's files itself")
            return not stale and changed == []
        self.log.warning("dbt parses the whole project: the build-time parse in %s cannot be reused, %s",
                         artifacts_dir, why_not)
        return False

    def _create_schemas(self, artifacts_dir: Path, select: Sequence[str] | str | None,
                        exclude: Sequence[str] | str | None, selector: str | None) -> None:
        """Create the selection's missing schemas before dbt does (parallel tasks may race on them, see
        :mod:`~airflow_provider_dataeng.dbt.schemas`). Only with build-time artifacts made for this task's
        target schema (their node schemas are then the ones dbt uses); on any error dbt creates them."""
        from airflow_provider_dataeng.dbt.manifest import load_manifest
        from airflow_provider_dataeng.dbt.schemas import ensure_schemas, selected_schemas

        info = read_build_info(artifacts_dir)
        if info is None or info.get("schema") != self.current_profile.schema:
            return
        try:
            manifest = load_manifest(artifacts_dir / "manifest.json")
            schemas = selected_schemas(manifest, select, exclude, selector, info.get("database"))
            if not schemas:
                return
            with self.warehouse_hook().connection_scope() as conn:
                conn.autocommit = True
                ensure_schemas(conn, schemas, self.log)
        except Exception as exc:  # best effort: dbt still creates what is missing
            self.log.warning("Could not create the schemas before dbt runs (dbt creates them): %s", first_line(exc))

    def _invoke(self, args: list[str], env: dict[str, str], password: str | None, cwd: Path,
                target: Path | None, preloaded: Path | None = None) -> tuple[bool, str | None]:
        """Run dbt: child process (``use_subprocess``), else the warm worker, else in-process.

        ``preloaded``: a build-time ``partial_parse.msgpack`` verified current for this run (see
        :func:`~airflow_provider_dataeng.dbt.workspace.reuse_problem`): dbt gets the Manifest loaded from
        it and skips its own parse and state checks."""
        if self.use_subprocess:
            return self._run_subprocess(args, env, password, cwd)
        from airflow_provider_dataeng.dbt import warm_worker

        why_not = warm_worker.disabled_reason()
        if why_not is None:
            try:
                return self._run_in_worker(args, env, password, target, preloaded)
            except warm_worker.WorkerUnavailable as exc:
                why_not = f"the warm dbt worker is unavailable: {exc}"
                self.log.warning("dbt runs in this task's process: %s", why_not)
        return self._run_in_process(args, env, password, target, preloaded)

    def _relay(self, password: str | None) -> Any:
        log = self.log

        def relay(level: str, msg: str) -> None:
            if level == "note":
                log.info("%s", _scrub(msg, password))
                return
            {"warn": log.warning, "error": log.error}.get(level, log.info)("dbt: %s", _scrub(msg, password))

        return relay

    def _run_in_worker(self, args: list[str], env: dict[str, str], password: str | None, target: Path | None,
                       preloaded: Path | None) -> tuple[bool, str | None]:
        """dbt in a child forked by the warm worker (dbt already imported there); see
        :mod:`~airflow_provider_dataeng.dbt.warm_worker`."""
        from airflow_provider_dataeng.dbt import warm_worker

        request = {
            "protocol": warm_worker.PROTOCOL, "args": [*args],
            "env": {**os.environ, **env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}, "cwd": os.getcwd(),
            "target": str(target) if target is not None else None,
            "manifest": str(preloaded) if preloaded is not None else None,
        }

        def started(pid: int) -> None:
            self._worker_pid = pid
            self.log.info("dbt runs in warm worker process %d", pid)

        try:
            done = warm_worker.invoke(request, self._relay(password), started, log=self.log)
        except warm_worker.WorkerUnavailable:
            raise
        except BaseException:
            self.cancel()  # the task is interrupted (timeout, kill): stop the child, end its sessions
            raise
        finally:
            self._worker_pid = None
        return bool(done.get("success")), done.get("error")

    def _run_in_process(self, args: list[str], env: dict[str, str], password: str | None,
                        target: Path | None = None, preloaded: Path | None = None) -> tuple[bool, str | None]:
        """dbtRunner in a worker thread; writes ``run_results.json`` into ``target`` when dbt did not
        (``--no-write-json``, or a ``dbt retry`` of such a run)."""
        try:
            import dbt.cli.main  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(f"{NOT_INSTALLED} ({exc})") from None
        from airflow_provider_dataeng.dbt import warm_worker

        outcome: dict[str, Any] = {}
        full_env = {**env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}

        def invoke() -> None:
            try:
                manifest = None
                if preloaded is not None:
                    try:
                        manifest = warm_worker.load_shipped_manifest(preloaded)
                        why_not = warm_worker.manifest_problem(manifest, dict(os.environ))
                    except Exception as exc:  # dbt loads it itself and says what is wrong
                        why_not = f"it could not be loaded ({type(exc).__name__}: {exc})"
                    if why_not is None:
                        manifest = warm_worker.prepare_manifest(manifest)
                        self.log.info("dbt is handed the build-time Manifest loaded from %s: no parse", preloaded)
                    else:
                        manifest = None
                        self.log.info("dbt loads the build-time parse itself: %s", why_not)
                outcome.update(warm_worker.run_dbt(args, self._relay(password), manifest,
                                                   str(target) if target is not None else None))
            except BaseException as exc:  # handed to the waiting thread
                outcome["exc"] = exc

        # dbt runs in its own thread: the task's thread stays in this loop, where Airflow's timeout (or any
        # interruption) lands; dbt itself would wait for its running query before letting it through.
        with _ENV_LOCK, _patched_environ(full_env):
            worker = threading.Thread(target=invoke, name="dbt", daemon=True)
            worker.start()
            try:
                while worker.is_alive():
                    worker.join(0.5)
            except BaseException:
                self.cancel()  # ends dbt's sessions: its query fails and the thread finishes
                worker.join(TERMINATE_GRACE_S)
                raise
        if "exc" in outcome:
            raise outcome["exc"]
        return bool(outcome["success"]), outcome["error"]

    def _run_subprocess(self, args: list[str], env: dict[str, str], password: str | None,
                        cwd: Path) -> tuple[bool, str | None]:
        child_env = {**os.environ, **env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        cmd = [*self.executable(), *args, "--log-level", "info"]
        with subprocess.Popen(
            cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            cwd=str(cwd), start_new_session=True,
        ) as proc:
            self._proc = proc
            assert proc.stdout is not None
            tail: list[str] = []
            for line in proc.stdout:
                line = _scrub(line.rstrip(), password)
                self.log.info("dbt: %s", line)
                tail = (tail + [line])[-20:]
            code = proc.wait()
            self._proc = None
        # exit code 1: dbt ran and some node failed (run_results has the detail); 2: dbt itself failed.
        if code == 0:
            return True, None
        return False, f"dbt exited with code {code}: " + " | ".join(t for t in tail if t.strip())[-1500:]

    def executable(self) -> list[str]:
        """The dbt command line prefix: ``dbt_executable_path`` if given, else :func:`dbt_executable`."""
        if self.dbt_executable_path is None:
            return dbt_executable()
        path = Path(self.dbt_executable_path)
        if not (path.is_file() and os.access(path, os.X_OK)):
            found = shutil.which(self.dbt_executable_path)
            if not found:
                raise FileNotFoundError(f"dbt_executable_path={self.dbt_executable_path!r}: no executable there")
            return [found]
        return [str(path)]

    def cancel(self, grace_s: float = TERMINATE_GRACE_S) -> None:
        """Stop this runner's dbt: the child process (SIGINT: dbt cancels its queries; then SIGTERM, SIGKILL)
        and, in any mode, every database session dbt opened (``pg_terminate_backend`` on its
        application_name), so nothing of it keeps running on the server."""
        pid = self._worker_pid
        if pid is not None:  # SIGINT now (dbt cancels its queries); sessions end below, then the child is reaped
            self.log.info("Stopping dbt (warm worker process %d)", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self.log.info("Stopping dbt (pid %d)", proc.pid)
            for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:
            ended = self.terminate_sessions()
        except Exception as exc:  # on_kill must not raise; the log says what could not be stopped
            self.log.warning("Could not end dbt's database sessions (%s): %s", self.session_token, first_line(exc))
        else:
            self.log.info("Ended %d database session(s) of dbt (application_name %s...)", ended, self.session_token)
        if pid is not None:  # its queries are gone: it ends; SIGTERM, SIGKILL if it does not
            from airflow_provider_dataeng.dbt.warm_worker import stop_child

            stop_child(pid, grace_s)

    def terminate_sessions(self) -> int:
        """``pg_terminate_backend`` every session whose application_name starts with this run's token."""
        hook = self.warehouse_hook()
        with hook.connection_scope() as conn:
            conn.autocommit = True
            rows = conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where application_name like %s and pid <> pg_backend_pid()",
                (self.session_token + " %",),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)


def _copy_artifact(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` (never a link: a writer of ``dest`` must not change the shipped file)."""
    if source.is_file():
        shutil.copyfile(source, dest)


def format_rows(columns: list[str], rows: list[tuple[Any, ...]], width: int = 40) -> str:
    """A fixed-width text table (cells cut at ``width`` characters)."""
    def cell(value: Any) -> str:
        text = "NULL" if value is None else str(value)
        return text if len(text) <= width else text[: width - 3] + "..."

    table = [[cell(c) for c in columns]] + [[cell(v) for v in row] for row in rows]
    sizes = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(sizes[i]) for i, v in enumerate(r)).rstrip() for r in table]
    return "\n".join([lines[0], "  ".join("-" * n for n in sizes), *lines[1:]])


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


def _display_args(args: list[str]) -> list[str]:
    """Arguments for the log (long --select lists shortened)."""
    out = [a if len(a) < 200 else a[:200] + "..." for a in args]
    return out[:60] + (["..."] if len(out) > 60 else [])
