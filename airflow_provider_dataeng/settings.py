"""Provider settings: the ``[dataeng]`` section of Airflow's configuration.

Each option is read the way Airflow reads its own: ``airflow.cfg`` ``[dataeng] <option>``, overridden by the
environment variable ``AIRFLOW__DATAENG__<OPTION>`` (or ``..._CMD`` / ``..._SECRET``), so MWAA, Cloud Composer
and Astronomer users set them as Airflow configuration options. The provider registers the section (with
defaults and descriptions) through ``get_provider_info()["config"]``, so ``airflow config list`` shows it.
The older ``DATAENG_<OPTION>`` environment variables still work as a fallback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

SECTION = "dataeng"


@dataclass(frozen=True)
class Setting:
    """One option of the ``[dataeng]`` section."""

    name: str
    type: str  # "string", "integer", "float", "boolean" (Airflow's provider config types)
    default: str
    description: str
    example: str | None = None
    legacy_env: str | None = None  # the pre-[dataeng] environment variable, still honoured


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("config_dir", "string", "",
            "Directory of the pipeline configs read by the DAG factory's DAG file (default: the ``configs`` "
            "folder next to that DAG file). Subdirectories are scanned too.",
            example="/opt/airflow/dags/configs", legacy_env="DATAENG_CONFIG_DIR"),
    Setting("max_config_bytes", "integer", "1048576",
            "Largest pipeline config file the factory reads, in bytes; a larger file becomes a placeholder "
            "DAG showing the error (the other DAGs still load)."),
    Setting("max_config_nodes", "integer", "20000",
            "Most YAML nodes in one config file, counting every alias expansion (anchor/alias 'bombs' are "
            "refused before they are built)."),
    Setting("max_config_depth", "integer", "64", "Deepest nesting of mappings and lists in one config file."),
    Setting("config_file_budget", "float", "2.0",
            "CPU seconds the factory may spend reading, validating and building one config file; past it the "
            "file becomes a placeholder DAG instead of delaying (or timing out) the whole DAG file."),
    Setting("deadline_watch_poll_interval", "float", "5.0",
            "Airflow before 3.1 only: seconds between two reads of a run's task states by the sla_deadline_watch "
            "task's trigger (notifications.sla_breach). A run ends at most this long after its last real task; "
            "each waiting watcher makes one execution-API call per interval. Deadlines fire on time whatever it "
            "is.", example="15"),
    Setting("eager_kubernetes_import", "boolean", "False",
            "Import the whole kubernetes client at parse time instead of only the pod model modules the "
            "factory builds (slower parsing; for debugging).", legacy_env="DATAENG_EAGER_KUBERNETES_IMPORT"),
)}

_TRUE = {"1", "true", "t", "yes", "y", "on"}


def _airflow_value(name: str) -> str | None:
    try:
        from airflow.configuration import conf
    except Exception:  # Airflow not importable (the standalone `dataeng` CLI in a bare venv)
        return None
    try:
        value = conf.get(SECTION, name, fallback=None)
    except Exception:
        return None
    return None if value is None else str(value)


def get_raw(name: str) -> str:
    """The option's text: Airflow config/env override, else the legacy ``DATAENG_*`` variable, else the default."""
    setting = SETTINGS[name]
    env = os.environ.get(f"AIRFLOW__{SECTION.upper()}__{name.upper()}")
    if env is not None:
        return env
    value = _airflow_value(name)
    if value is not None and value != setting.default:
        return value
    if setting.legacy_env and os.environ.get(setting.legacy_env):
        return os.environ[setting.legacy_env]
    return setting.default if value is None else value


def get(name: str) -> Any:
    """The option converted to its type; a malformed value raises ValueError naming the option."""
    setting = SETTINGS[name]
    text = get_raw(name).strip()
    try:
        if setting.type == "integer":
            return int(text)
        if setting.type == "float":
            return float(text)
    except ValueError:
        article = "an" if setting.type[0] in "aeiou" else "a"
        raise ValueError(f"[{SECTION}] {name} must be {article} {setting.type}, found {text!r}") from None
    if setting.type == "boolean":
        return text.lower() in _TRUE
    return text


def provider_config() -> dict[str, Any]:
    """The ``config`` entry of ``get_provider_info()`` (Airflow's provider configuration format)."""
    return {SECTION: {
        "description": "airflow-provider-dataeng: the YAML DAG factory's limits and locations.",
        "options": {
            s.name: {"description": s.description, "version_added": None, "type": s.type,
                     "example": s.example, "default": s.default}
            for s in SETTINGS.values()
        },
    }}
