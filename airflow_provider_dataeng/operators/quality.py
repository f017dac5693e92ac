"""DataQualityOperator: run quality checks on an existing table; fail the task with the check table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, Context

from airflow_provider_dataeng.publish.checks import build_checks
from airflow_provider_dataeng.publish.table_ref import TableRef


class DataQualityOperator(BaseOperator):
    """Run ``checks`` (same config as StagingSwapOperator, except ``drift``) on ``table``.

    Fails (no retries: AirflowFailException) with a check | observed | threshold table when any check
    fails; returns the results as a list of dicts otherwise.
    """

    template_fields: Sequence[str] = ("table", "checks")
    template_fields_renderers = {"checks": "json"}
    ui_color = "#e8f8f5"

    def __init__(self, *, conn_id: str, table: str, checks: list[dict], **kwargs: Any) -> None:
        if not isinstance(table, str) or not table.strip():
            raise ValueError(f"table: expected 'schema.table', got {table!r}")
        if "{{" not in table:
            TableRef.parse(table)
        if "{{" not in repr(checks):
            built = build_checks(checks)
            if not built:
                raise ValueError("checks: expected at least one check")
            if any(c.kind == "drift" for c in built):
                raise ValueError("checks: 'drift' needs a publish (staging vs published); not available here")
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.checks = checks

    def execute(self, context: Context) -> list[dict]:
        from airflow_provider_dataeng.connections import connect
        from airflow_provider_dataeng.publish.engine import PublishEngine

        engine = PublishEngine(connect(self.conn_id, role="warehouse"))
        return [r.as_dict() for r in engine.check_table(TableRef.parse(self.table), self.checks)]
