"""What the installed Airflow supports, for the features that degrade on older Airflow 3 releases.

The provider supports Airflow 3.0.6+ (docs/deploying.md, "Supported versions"). On older releases:

- ``retry_exponential_backoff`` is a boolean (backoff x2) before Airflow 3.1; a configured multiplier becomes
  ``true`` there (any multiplier > 0) and the DAG docs say so;
- Deadline Alerts (``notifications.sla_breach``) need Airflow 3.1: before that the DAG is built without them,
  its docs and an ERROR log say the SLA is not monitored (freshness sensors still are);
- the ``airflow dataeng ...`` CLI group needs Airflow 3.2 (provider CLI commands); the ``dataeng`` console
  script works everywhere.
"""

from __future__ import annotations

from functools import cache


@cache
def backoff_multiplier_supported() -> bool:
    """True when ``retry_exponential_backoff`` accepts a number (Airflow 3.1+), not only a boolean."""
    try:
        from airflow.sdk.bases.operator import BASEOPERATOR_ARGS_EXPECTED_TYPES
    except ImportError:
        return True
    expected = BASEOPERATOR_ARGS_EXPECTED_TYPES.get("retry_exponential_backoff", (int, float))
    expected = expected if isinstance(expected, tuple) else (expected,)
    return float in expected


def backoff_value(value: float) -> float | bool:
    """The ``retry_exponential_backoff`` argument for this Airflow (a boolean before 3.1)."""
    return value if backoff_multiplier_supported() else value > 0


@cache
def provider_cli_supported() -> bool:
    """True when Airflow loads providers' CLI commands (``airflow dataeng ...``; Airflow 3.2+)."""
    try:
        from airflow.providers_manager import ProvidersManager
    except ImportError:
        return False
    return hasattr(ProvidersManager, "cli_command_functions")


def timetable_expression(timetable: object) -> str | None:
    """The cron expression of a cron timetable (``expression`` from Airflow 3.1, ``_expression`` before)."""
    return getattr(timetable, "expression", None) or getattr(timetable, "_expression", None)
