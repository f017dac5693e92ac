"""ConfigErrorOperator: the failing task of a placeholder DAG that stands for a broken pipeline config."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator


class ConfigErrorOperator(BaseOperator):
    """Fails with the config errors of its pipeline file (the pipeline itself could not be built)."""

    ui_color = "#f4a6a6"

    def __init__(self, *, errors: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors = errors

    def execute(self, context: Any) -> None:
        raise AirflowFailException(f"The pipeline config is invalid; fix it and the DAG is rebuilt:\n{self.errors}")
