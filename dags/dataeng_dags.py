"""Airflow DAG file: builds one DAG per pipeline config in ``configs/`` (airflow-provider-dataeng factory).

* Under a parsing context naming one DAG (a KubernetesExecutor task pod), only the config(s) that can
  define that dag id are read and built.
* A broken config fails alone: it becomes a placeholder DAG (same dag id when it can be read from the
  file, else ``config_error__<file name>``, tag ``config-error``) whose description, docs and single
  failing task carry ``FILE:LINE: field.path: message``; the error is also logged. Every other DAG loads.
* ``[dataeng] config_dir`` (``AIRFLOW__DATAENG__CONFIG_DIR``; formerly ``DATAENG_CONFIG_DIR``) overrides the
  config directory.
"""

from __future__ import annotations

from pathlib import Path

from airflow.providers.common.compat.sdk import get_parsing_context

from airflow_provider_dataeng import settings
from airflow_provider_dataeng.factory.folder import build_dags

CONFIG_DIR = Path(settings.get("config_dir") or Path(__file__).resolve().parent / "configs")

_result = build_dags(CONFIG_DIR, only_dag_id=get_parsing_context().dag_id)
globals().update({f"dag__{dag_id}": dag for dag_id, dag in _result.dags.items()})
