"""Freshness SLAs: duration parsing, the one-query probe, status evaluation and the Deadline Alerts helper."""

from airflow_provider_dataeng.durations import format_duration, parse_duration
from airflow_provider_dataeng.freshness.check import FreshnessCheck, ProbeSession
from airflow_provider_dataeng.freshness.errors import FreshnessConfigError
from airflow_provider_dataeng.freshness.probe import FreshnessQuery, Observation, split_table_name
from airflow_provider_dataeng.freshness.status import FreshnessResult, FreshnessSLA, FreshnessStatus, evaluate

__all__ = [
    "FreshnessCheck",
    "FreshnessConfigError",
    "FreshnessQuery",
    "FreshnessResult",
    "FreshnessSLA",
    "FreshnessStatus",
    "Observation",
    "ProbeSession",
    "evaluate",
    "format_duration",
    "parse_duration",
    "split_table_name",
]
