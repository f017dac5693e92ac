"""Partition gaps: expected intervals from the schedule against the ledger and the catalog.

Names are imported on first use, so reading a config (``gaps.spec``) does not load the engine.
"""

from __future__ import annotations

from airflow_provider_dataeng.values import lazy_exports

_EXPORTS = {
    "classify": "airflow_provider_dataeng.gaps.check",
    "find_gaps": "airflow_provider_dataeng.gaps.check",
    "Interval": "airflow_provider_dataeng.gaps.expected",
    "expected_intervals": "airflow_provider_dataeng.gaps.expected",
    "resolve_timetable": "airflow_provider_dataeng.gaps.expected",
    "to_utc": "airflow_provider_dataeng.gaps.expected",
    "GapReport": "airflow_provider_dataeng.gaps.report",
    "Hole": "airflow_provider_dataeng.gaps.report",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
