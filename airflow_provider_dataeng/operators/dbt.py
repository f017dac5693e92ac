"""DbtOperator: one dbt command against an Airflow PostgreSQL connection (thin: logic in hooks.dbt)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, Context

from airflow_provider_dataeng.hooks.dbt import (
    COMMANDS,
    RETRYABLE_COMMANDS,
    DbtHook,
    DbtRunError,
    needs_retry,
    previous_try_dir,
    run_state_dir,
)

OPERATOR_COMMANDS = tuple(c for c in COMMANDS if c != "retry")
INDIRECT_SELECTION = ("eager", "cautious", "buildable", "empty")
KEEP_RUN_DIRS_DAYS = 7


class DbtOperator(BaseOperator):
    """Run ``dbt <command>`` with a profile generated from ``conn_id``.

    :param conn_id: Airflow PostgreSQL connection of the warehouse (multi-host allowed).
    :param project_dir: the dbt project directory (only read).
    :param command: build, run, test, seed, snapshot, ``source freshness``, compile or parse.
    :param select: dbt ``--select`` (string or list); templated.
    :param exclude: dbt ``--exclude``; templated.
    :param selector: a YAML selector name; templated.
    :param vars: dbt ``--vars`` (a dict); templated.
    :param full_refresh: pass ``--full-refresh`` (build, run, seed).
    :param target_schema: schema of the generated profile (default ``analytics``).
    :param profiles_dir: use this profiles.yml instead of generating one.
    :param manifest_path: the build-time manifest.json; when given and ``outlets`` is not, the operator
        declares an Asset per selected model (URI from its relation_name, as ``render_dbt`` does).
    :param use_subprocess: run the dbt CLI in a child process instead of in-process ``dbtRunner``.
    :param threads: dbt threads.
    :param indirect_selection: dbt ``--indirect-selection`` (render_dbt uses ``empty`` + explicit tests).
    :param asset_namespace: host part of those Asset URIs (default ``conn_id``).
    :param state_dir: root for per-run artifacts (default ``$DATAENG_DBT_STATE_DIR`` or
        ``<tempdir>/dataeng-dbt``); put it on a shared volume when retries run in new pods.

    On an Airflow retry the previous try's ``run_results.json`` is found under the state dir and
    ``dbt retry`` re-runs only its failed and skipped nodes. Returns (XCom) a summary of run_results.json.
    """

    template_fields: Sequence[str] = ("select", "exclude", "selector", "vars", "target_schema")
    template_fields_renderers = {"vars": "json"}
    ui_color = "#ff694b"

    def __init__(
        self,
        *,
        conn_id: str,
        project_dir: str | os.PathLike[str],
        command: str = "build",
        select: list[str] | str | None = None,
        exclude: list[str] | str | None = None,
        selector: str | None = None,
        vars: dict[str, Any] | None = None,
        full_refresh: bool = False,
        target_schema: str | None = None,
        profiles_dir: str | os.PathLike[str] | None = None,
        manifest_path: str | os.PathLike[str] | None = None,
        use_subprocess: bool = False,
        threads: int = 1,
        indirect_selection: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        asset_namespace: str | None = None,
        **kwargs: Any,
    ) -> None:
        if command not in OPERATOR_COMMANDS:
            raise ValueError(f"command={command!r}: expected one of {', '.join(OPERATOR_COMMANDS)}")
        if not conn_id:
            raise ValueError("conn_id is empty: expected the warehouse's Airflow connection id")
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads={threads!r}: expected an integer >= 1")
        if vars is not None and not isinstance(vars, dict):
            raise ValueError(f"vars={vars!r}: expected a mapping of dbt variables")
        if indirect_selection is not None and indirect_selection not in INDIRECT_SELECTION:
            raise ValueError(f"indirect_selection={indirect_selection!r}: expected one of {INDIRECT_SELECTION}")
        for name, value in (("select", select), ("exclude", exclude)):
            if value is not None and not isinstance(value, str | list | tuple):
                raise ValueError(f"{name}={value!r}: expected a string or a list of strings")
        if manifest_path and "outlets" not in kwargs and not _templated(select, exclude, selector):
            kwargs["outlets"] = _manifest_outlets(manifest_path, asset_namespace or conn_id, select, exclude, selector)
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.project_dir = str(project_dir)
        self.command = command
        self.select = list(select) if isinstance(select, tuple) else select
        self.exclude = list(exclude) if isinstance(exclude, tuple) else exclude
        self.selector = selector
        self.vars = vars
        self.full_refresh = full_refresh
        self.target_schema = target_schema
        self.profiles_dir = str(profiles_dir) if profiles_dir else None
        self.manifest_path = str(manifest_path) if manifest_path else None
        self.use_subprocess = use_subprocess
        self.threads = threads
        self.indirect_selection = indirect_selection
        self.state_dir = str(state_dir) if state_dir else None

    def hook(self) -> DbtHook:
        return DbtHook(
            self.conn_id, self.project_dir, target_schema=self.target_schema, profiles_dir=self.profiles_dir,
            threads=self.threads, use_subprocess=self.use_subprocess,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        try_number = int(getattr(ti, "try_number", 1) or 1)
        root = Path(self.state_dir) if self.state_dir else None
        run_dir = run_state_dir(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), root)
        try_dir = run_dir / f"try-{try_number}"
        shutil.rmtree(try_dir, ignore_errors=True)
        retry_from = None
        if self.command in RETRYABLE_COMMANDS and try_number > 1:
            previous = previous_try_dir(run_dir, try_number)
            if previous is not None and needs_retry(previous / "target"):
                retry_from = previous
                self.log.info("Try %d: re-running only the failed and skipped nodes of %s", try_number, previous)
            elif previous is not None:
                self.log.info("Try %d: the previous try %s had no failures; running the full command", try_number, previous)
            else:
                self.log.info("Try %d: no previous run_results.json under %s; running the full command", try_number, run_dir)
        _prune_old_runs(run_dir.parent, keep=run_dir)
        try:
            result = self.hook().run(
                self.command, run_dir=try_dir, select=self.select, exclude=self.exclude, selector=self.selector,
                vars=self.vars, full_refresh=self.full_refresh, indirect_selection=self.indirect_selection,
                retry_from=retry_from,
            )
        except DbtRunError as exc:
            ti.xcom_push(key="dbt_results", value=exc.result.as_xcom())
            raise AirflowException(str(exc)) from None
        return result.as_xcom()


def _templated(*values: Any) -> bool:
    return any("{{" in str(v) or "{%" in str(v) for v in values if v)


def _manifest_outlets(manifest_path: Any, namespace: str, select: Any, exclude: Any, selector: Any) -> list[Any]:
    from airflow_provider_dataeng.dbt.manifest import load_manifest
    from airflow_provider_dataeng.dbt.render import relation_asset
    from airflow_provider_dataeng.dbt.selection import select_nodes

    manifest = load_manifest(manifest_path)
    uids = select_nodes(manifest, select, exclude, selector, ("model", "seed", "snapshot"))
    return [
        relation_asset(manifest.nodes[u].relation_name, namespace)  # type: ignore[arg-type]
        for u in sorted(uids) if manifest.nodes[u].relation_name
    ]


def _prune_old_runs(task_dir: Path, keep: Path, max_age_days: float = KEEP_RUN_DIRS_DAYS) -> None:
    """Delete this task's run directories older than ``max_age_days`` (never ``keep``)."""
    if not task_dir.is_dir():
        return
    cutoff = time.time() - max_age_days * 86400
    for child in task_dir.iterdir():
        try:
            if child != keep and child.is_dir() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            continue
