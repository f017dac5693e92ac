"""Freshness SLAs: duration parsing, the one-query probe, status evaluation and the Deadline Alerts helper.

Names are imported on first use, so reading a config (``freshness.spec``) does not load the engine.
"""

from __future__ import annotations

from airflow_provider_dataeng.values import lazy_exports

_EXPORTS = {
    "format_duration": "airflow_provider_dataeng.durations",
    "parse_duration": "airflow_provider_dataeng.durations",
    "FreshnessCheck": "airflow_provider_dataeng.freshness.check",
    "ProbeSession": "airflow_provider_dataeng.freshness.check",
    "FreshnessConfigError": "airflow_provider_dataeng.freshness.errors",
    "FreshnessQuery": "airflow_provider_dataeng.freshness.probe",
    "Observation": "airflow_provider_dataeng.freshness.probe",
    "split_table_name": "airflow_provider_dataeng.freshness.probe",
    "FreshnessResult": "airflow_provider_dataeng.freshness.status",
    "FreshnessSLA": "airflow_provider_dataeng.freshness.status",
    "FreshnessStatus": "airflow_provider_dataeng.freshness.status",
    "evaluate": "airflow_provider_dataeng.freshness.status",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
