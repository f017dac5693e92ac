"""Failover health: verdicts from the pg_auto_failover monitor or from multi-host probes.

Names are imported on first use, so reading a config (``failover.spec``) does not load the engine.
"""

from __future__ import annotations

from airflow_provider_dataeng.values import lazy_exports

_EXPORTS = {
    "FailoverHealthCheck": "airflow_provider_dataeng.failover.health_check",
    "HealthCriteria": "airflow_provider_dataeng.failover.verdict",
    "HealthVerdict": "airflow_provider_dataeng.failover.verdict",
    "NodeRow": "airflow_provider_dataeng.failover.verdict",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
