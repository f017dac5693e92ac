"""DbtOperator: one dbt command against an Airflow PostgreSQL connection (thin: logic in ``dbt.runner``)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, Context
from pydantic import ValidationError

from airflow_provider_dataeng.dbt.artifacts import previous_try_dir, prune_old_runs, run_state_dir
from airflow_provider_dataeng.dbt.results import RETRYABLE_COMMANDS, DbtRunError, needs_retry
from airflow_provider_dataeng.dbt.spec import DbtSpec, spec_error
from airflow_provider_dataeng.publish.assets import configured_databases
from airflow_provider_dataeng.specs import build_spec, spec_default, spec_values
from airflow_provider_dataeng.values import is_templated


class DbtOperator(BaseOperator):
    """Run ``dbt <command>`` with a profile generated from ``conn_id``.

    Every parameter is a field of :class:`~airflow_provider_dataeng.dbt.spec.DbtSpec` (name, type, default
    and description live there). With ``manifest_path`` and no ``outlets``, the operator declares an Asset
    per selected model. On an Airflow retry the previous try's ``run_results.json`` is found under the
    state dir and ``dbt retry`` re-runs only its failed and skipped nodes. Returns (XCom) a summary of
    run_results.json.
    """

    template_fields: Sequence[str] = ("select", "exclude", "selector", "vars", "target_schema")
    template_fields_renderers = {"vars": "json"}
    ui_color = "#ff694b"

    def __init__(
        self,
        *,
        conn_id: str,
        project_dir: str,
        command: str = spec_default(DbtSpec, "command"),
        select: list[str] | str | None = spec_default(DbtSpec, "select"),
        exclude: list[str] | str | None = spec_default(DbtSpec, "exclude"),
        selector: str | None = spec_default(DbtSpec, "selector"),
        vars: dict[str, Any] | None = spec_default(DbtSpec, "vars"),
        full_refresh: bool = spec_default(DbtSpec, "full_refresh"),
        target_schema: str | None = spec_default(DbtSpec, "target_schema"),
        profiles_dir: str | None = spec_default(DbtSpec, "profiles_dir"),
        manifest_path: str | None = spec_default(DbtSpec, "manifest_path"),
        use_subprocess: bool = spec_default(DbtSpec, "use_subprocess"),
        dbt_executable_path: str | None = spec_default(DbtSpec, "dbt_executable_path"),
        install_deps: bool = spec_default(DbtSpec, "install_deps"),
        threads: int = spec_default(DbtSpec, "threads"),
        indirect_selection: str | None = spec_default(DbtSpec, "indirect_selection"),
        state_dir: str | None = spec_default(DbtSpec, "state_dir"),
        asset_namespace: str | None = spec_default(DbtSpec, "asset_namespace"),
        docs_dir: str | None = spec_default(DbtSpec, "docs_dir"),
        **kwargs: Any,
    ) -> None:
        databases = configured_databases(kwargs.get("dag"))
        super().__init__(**kwargs)
        # the Asset identity's databases (a pipeline's `databases:`), for the run-time lineage
        self.asset_databases = databases
        self.conn_id = conn_id
        self.project_dir = str(project_dir) if project_dir is not None else None
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
        self.dbt_executable_path = dbt_executable_path
        self.install_deps = install_deps
        self.threads = threads
        self.indirect_selection = indirect_selection
        self.state_dir = str(state_dir) if state_dir else None
        self.asset_namespace = asset_namespace
        self.docs_dir = docs_dir
        values = spec_values(self, DbtSpec)
        if not is_templated(*values.values()):
            spec = self._spec()
            if spec.manifest_path and "outlets" not in kwargs:
                self.outlets = _manifest_outlets(spec)

    def _spec(self, **overrides: Any) -> DbtSpec:
        try:
            return build_spec(self, DbtSpec, **overrides)
        except ValidationError as exc:
            raise spec_error(f"DbtOperator {self.task_id!r}", exc) from None

    def runner(self, spec: DbtSpec) -> Any:
        from airflow_provider_dataeng.dbt.runner import DbtRunner

        return DbtRunner(
            spec.conn_id, spec.project_dir, target_schema=spec.target_schema, profiles_dir=spec.profiles_dir,
            threads=spec.threads, use_subprocess=spec.use_subprocess,
            dbt_executable_path=spec.dbt_executable_path, log=self.log,
            application_name=f"{self.dag_id}.{self.task_id}",
        )

    def execute(self, context: Context) -> dict[str, Any]:
        spec = self._spec()
        ti = context["ti"]
        try_number = int(getattr(ti, "try_number", 1) or 1)
        root = Path(spec.state_dir) if spec.state_dir else None
        run_dir = run_state_dir(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), root)
        try_dir = run_dir / f"try-{try_number}"
        shutil.rmtree(try_dir, ignore_errors=True)
        retry_from = None
        if spec.command in RETRYABLE_COMMANDS and try_number > 1:
            previous = previous_try_dir(run_dir, try_number)
            if previous is not None and needs_retry(previous / "target"):
                retry_from = previous
                self.log.info("Try %d: re-running only the failed and skipped nodes of %s", try_number, previous)
            elif previous is not None:
                self.log.info("Try %d: the previous try %s had no failures; running the full command", try_number, previous)
            else:
                self.log.info("Try %d: no previous run_results.json under %s; running the full command", try_number, run_dir)
        prune_old_runs(run_dir.parent, keep=run_dir)
        self._runner = self.runner(spec)
        try:
            result = self._runner.run(
                spec.command, run_dir=try_dir, select=spec.select, exclude=spec.exclude, selector=spec.selector,
                vars=spec.vars, full_refresh=spec.full_refresh, indirect_selection=spec.indirect_selection,
                retry_from=retry_from, artifacts_dir=Path(spec.manifest_path).parent if spec.manifest_path else None,
                install_deps=spec.install_deps,
            )
        except DbtRunError as exc:
            ti.xcom_push(key="dbt_results", value=exc.result.as_xcom())
            raise AirflowException(str(exc)) from None
        out = result.as_xcom()
        if spec.command == "docs generate":
            from airflow_provider_dataeng.dbt.docs import docs_root, publish_docs

            site = publish_docs(Path(result.target_dir), docs_root(spec.docs_dir) / f"{ti.dag_id}.{ti.task_id}")
            self.log.info("dbt docs published to %s (a model's page: index.html#!/model/<unique id>)", site)
            out["docs_dir"] = str(site)
        return out


    def on_kill(self) -> None:
        """Stop dbt and end its database sessions (a task marked failed, or past its execution_timeout)."""
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.cancel()

    def get_openlineage_facets_on_start(self) -> Any:
        """OpenLineage datasets known before the run (:mod:`airflow_provider_dataeng.lineage`)."""
        from airflow_provider_dataeng.lineage.dbt import dbt_lineage

        return dbt_lineage(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage datasets with schema, data-quality and row-count facets."""
        from airflow_provider_dataeng.lineage.dbt import dbt_lineage

        return dbt_lineage(self, task_instance)


def _manifest_outlets(spec: DbtSpec) -> list[Any]:
    from airflow_provider_dataeng.dbt.manifest import RENDERED_TYPES, load_manifest
    from airflow_provider_dataeng.dbt.relations import relation_asset
    from airflow_provider_dataeng.dbt.selection import select_nodes

    assert spec.manifest_path is not None
    manifest = load_manifest(spec.manifest_path)
    uids = select_nodes(manifest, spec.select, spec.exclude, spec.selector, RENDERED_TYPES)
    namespace = spec.asset_namespace or spec.conn_id
    return [
        relation_asset(manifest.nodes[u].relation_name, namespace)  # type: ignore[arg-type]
        for u in sorted(uids) if manifest.nodes[u].relation_name
    ]
