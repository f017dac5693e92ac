"""Notifiers for SLA breaches."""

from airflow_provider_dataeng.notifications.webhook import SlaWebhookNotifier

__all__ = ["SlaWebhookNotifier"]
