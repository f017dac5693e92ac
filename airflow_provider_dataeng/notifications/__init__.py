"""Notifiers (SLA webhook), notifier specs in configs, and Deadline Alerts built from them."""

from __future__ import annotations

from typing import Any

__all__ = ["SlaWebhookNotifier"]


def __getattr__(name: str) -> Any:  # lazy: importing the specs must not import Airflow's notifier base
    if name == "SlaWebhookNotifier":
        from airflow_provider_dataeng.notifications.webhook import SlaWebhookNotifier

        return SlaWebhookNotifier
    raise AttributeError(name)
