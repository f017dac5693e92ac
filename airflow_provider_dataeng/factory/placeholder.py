"""Placeholder DAGs for broken configs: they keep the pipeline's schedule and page its on-failure notifiers.

A placeholder has the pipeline's dag id (when it can be read), its schedule, start date, owner and tags as far
as they are valid, the tag ``config-error``, the errors in its description and docs, and one task that fails
with the errors, carrying the pipeline's ``notifications.on_failure`` notifiers. So a broken config does
not silently stop its runs: every scheduled run fails visibly and alerts whoever the pipeline alerts.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG
from pydantic import ValidationError

from airflow_provider_dataeng.factory.errors import ConfigError
from airflow_provider_dataeng.values import import_path

PLACEHOLDER_TAG = "config-error"
_SALVAGED = ("schedule", "start_date", "end_date", "timezone", "owner", "tags", "notifications")
CONFIG_ERROR_OPERATOR = "airflow_provider_dataeng.operators.config_error.ConfigErrorOperator"
log = logging.getLogger(__name__)


def placeholder_dag_id(path: Path, root: Path | None = None) -> str:
    """Id of a placeholder when the pipeline's own dag id cannot be used (duplicates, unusable ids):
    ``config_error__<file name>``, with its folders below ``root`` as ``folder.sub.<file name>``."""
    parts = [path.stem]
    if root is not None:
        try:
            parts = [*path.relative_to(root).parent.parts, path.stem]
        except ValueError:
            pass
    dag_id = "config_error__" + ".".join(re.sub(r"[^A-Za-z0-9_\-]", "_", p) for p in parts)
    return dag_id if len(dag_id) <= 250 else dag_id[:233] + "." + hashlib.sha1(dag_id.encode()).hexdigest()[:16]


def salvage_settings(raw: Any) -> dict[str, Any]:
    """The settings of ``raw`` (a config mapping merged with its defaults) that validate on their own."""
    from airflow_provider_dataeng.factory.pipeline import PipelineSettings

    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for key in _SALVAGED:
        if key not in raw:
            continue
        try:
            model = PipelineSettings.model_validate({key: raw[key]})
        except (ValidationError, TypeError, ValueError, RecursionError):
            continue
        out[key] = getattr(model, key)
    return out


def _airflow_kwargs(settings: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """DAG kwargs (schedule, dates, owner, tags) and on-failure notifiers from salvaged settings."""
    from airflow_provider_dataeng.factory.builder import to_datetime
    from airflow_provider_dataeng.factory.notifications import make_notifier
    from airflow_provider_dataeng.factory.schedule import to_airflow_schedule

    kwargs: dict[str, Any] = {}
    tz = settings.get("timezone")
    try:
        kwargs["schedule"] = to_airflow_schedule(settings.get("schedule"), tz)
    except Exception as exc:
        log.warning("placeholder: the pipeline's schedule cannot be used: %s", exc)
    for key in ("start_date", "end_date"):
        value: date | datetime | None = settings.get(key)
        try:
            if value is not None:
                kwargs[key] = to_datetime(value, tz)
        except Exception as exc:
            log.warning("placeholder: the pipeline's %s cannot be used: %s", key, exc)
    notifiers = []
    notifications = settings.get("notifications")
    for spec in (notifications.on_failure or []) if notifications is not None else []:
        try:
            notifiers.append(make_notifier(spec))
        except Exception as exc:  # the notifier itself may be what is broken
            log.warning("placeholder: notifier %s cannot be created: %s", spec.notifier, exc)
    if settings.get("owner"):
        kwargs["default_args"] = {"owner": settings["owner"]}
    kwargs["tags"] = [PLACEHOLDER_TAG] + [t for t in settings.get("tags") or [] if t != PLACEHOLDER_TAG]
    return kwargs, notifiers


def _dag(dag_id: str, path: Path, error: ConfigError, settings: dict[str, Any]) -> Any:
    text = error.format()
    first = text.splitlines()[0] if text else "invalid config"
    kwargs, notifiers = _airflow_kwargs(settings) if settings else ({"tags": [PLACEHOLDER_TAG]}, [])
    keeps = "keeps the pipeline's schedule, so every run fails and alerts" if kwargs.get("schedule") else (
        "has no schedule (none could be read from the file)")
    doc = (
        f"# Invalid pipeline config\n\n`{path}` could not be built into a DAG. This placeholder {keeps}. "
        "Fix the file (check it with `dataeng validate`); the pipeline is rebuilt on the next parse.\n\n"
        f"```\n{text}\n```\n"
    )
    dag = DAG(dag_id, description=f"CONFIG ERROR: {first}"[:500], doc_md=doc, catchup=False, max_active_runs=1,
              auto_register=False, **{"schedule": None, **kwargs})
    import_path(CONFIG_ERROR_OPERATOR)(task_id="config_error", errors=text, dag=dag, retries=0, doc_md=doc,
                            on_failure_callback=notifiers or None)
    return dag


def build_placeholder(dag_id: str, path: Path, error: ConfigError, root: Path | None = None) -> dict[str, Any]:
    """``{dag_id: placeholder}`` for a broken config; falls back to no salvaged settings, then to the id
    ``config_error__<file name>``, so it never raises for a bad file."""
    settings = salvage_settings(error.salvage)
    attempts = [(dag_id, settings), (dag_id, {}), (placeholder_dag_id(path, root), {})]
    for attempt_id, attempt_settings in attempts:
        try:
            return {attempt_id: _dag(attempt_id, path, error, attempt_settings)}
        except Exception as exc:
            log.warning("placeholder %s for %s failed (%s); trying a plainer one", attempt_id, path, exc)
    return {}
