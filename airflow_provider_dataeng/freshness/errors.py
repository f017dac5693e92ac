"""Freshness errors."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowFailException


class FreshnessConfigError(AirflowFailException):
    """The probe can never succeed as configured (missing table or column, bad SQL): fail without retry."""
