"""Partition gap check: expected intervals (Airflow timetables) vs. the ledger and the catalog's partitions."""

from airflow_provider_dataeng.gaps.check import classify, find_gaps
from airflow_provider_dataeng.gaps.expected import Interval, expected_intervals, resolve_timetable, to_utc
from airflow_provider_dataeng.gaps.report import GapReport, Hole

__all__ = [
    "GapReport",
    "Hole",
    "Interval",
    "classify",
    "expected_intervals",
    "find_gaps",
    "resolve_timetable",
    "to_utc",
]
