"""DataQualityOperator: run quality checks on an existing table; fail the task with the check table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import Context

from airflow_provider_dataeng.operators.publish import EngineTask, validate_untemplated
from airflow_provider_dataeng.publish.spec import QualitySpec
from airflow_provider_dataeng.specs import build_spec
from airflow_provider_dataeng.values import is_templated


class DataQualityOperator(EngineTask):
    """Run ``checks`` (same config as StagingSwapOperator, except ``drift``) on ``table``.

    Fails (no retries: AirflowFailException) with a check | observed | threshold table when any check
    fails; returns the results as a list of dicts otherwise. Parameters:
    :class:`airflow_provider_dataeng.publish.spec.QualitySpec`.
    """

    template_fields: Sequence[str] = ("table", "checks")
    template_fields_renderers = {"checks": "json"}
    ui_color = "#e8f8f5"

    def __init__(self, *, conn_id: str, table: str, checks: list[dict], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.checks = checks
        if not is_templated(checks):
            from airflow_provider_dataeng.publish.checks import build_checks

            build_checks(checks)  # names the item and key of a bad check
        validate_untemplated(self, QualitySpec)

    def execute(self, context: Context) -> list[dict]:
        from airflow_provider_dataeng.publish import tasks
        from airflow_provider_dataeng.publish.errors import ChecksFailed

        spec = build_spec(self, QualitySpec)
        try:
            results = self._run(context, spec, lambda engine: tasks.check(engine, spec))
        except ChecksFailed as failed:
            # kept for lineage: a failed task has no return value, yet its assertions matter most then
            self.check_results = [r.as_dict() for r in failed.results]
            raise
        self.check_results = [r.as_dict() for r in results]
        return self.check_results

    def get_openlineage_facets_on_start(self) -> Any:
        """OpenLineage datasets known before the run (:mod:`airflow_provider_dataeng.lineage`)."""
        from airflow_provider_dataeng.lineage.tasks import quality_lineage

        return quality_lineage(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage datasets with schema, data-quality and row-count facets."""
        from airflow_provider_dataeng.lineage.tasks import quality_lineage

        return quality_lineage(self, task_instance)
