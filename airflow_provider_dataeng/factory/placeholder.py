"""Placeholder DAGs for broken configs: the error shows in the UI (description, docs, a failing task)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, AirflowFailException, BaseOperator

from airflow_provider_dataeng.factory.errors import ConfigError

PLACEHOLDER_TAG = "config-error"


class ConfigErrorOperator(BaseOperator):
    """Fails with the config errors of its pipeline file (the pipeline itself could not be built)."""

    ui_color = "#f4a6a6"

    def __init__(self, *, errors: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors = errors

    def execute(self, context: Any) -> None:
        raise AirflowFailException(f"The pipeline config is invalid; fix it and the DAG is rebuilt:\n{self.errors}")


def placeholder_dag_id(path: Path) -> str:
    """Id of a placeholder when the pipeline's own dag id cannot be used (duplicates, unusable ids)."""
    return "config_error__" + re.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem)


def build_placeholder(dag_id: str, path: Path, error: ConfigError) -> DAG:
    """A DAG that carries ``error`` in its description, docs and a task that fails with it."""
    text = error.format()
    first = text.splitlines()[0] if text else "invalid config"
    doc = (
        f"# Invalid pipeline config\n\n`{path}` could not be built into a DAG. "
        "Fix the file (check it with `dataeng validate`); the pipeline is rebuilt on the next parse.\n\n"
        f"```\n{text}\n```\n"
    )
    dag = DAG(
        dag_id, description=f"CONFIG ERROR: {first}"[:500], schedule=None, doc_md=doc,
        tags=[PLACEHOLDER_TAG], auto_register=False,
    )
    ConfigErrorOperator(task_id="config_error", errors=text, dag=dag, retries=0, doc_md=doc)
    return dag
