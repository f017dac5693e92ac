"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_dataeng import __version__
from airflow_provider_dataeng.settings import provider_config

_PKG = "airflow_provider_dataeng"
INTEGRATION = "Data engineering (PostgreSQL)"

# The connection forms (Airflow 3.2+ reads them from here without importing the hooks).
_POSTGRES_FIELDS: dict[str, Any] = {
    "target_session_attrs": {
        "label": "Target session attrs",
        "description": "Which host of the list to use: read-write finds the primary (writes), "
                       "prefer-standby/standby/any for reads (libpq target_session_attrs)",
        "schema": {"type": ["string", "null"], "default": "read-write",
                   "enum": ["read-write", "primary", "any", "read-only", "standby", "prefer-standby", None]},
    },
    "connect_deadline": {
        "label": "Connect deadline (s)",
        "description": "Total seconds to keep retrying a connect (failover in progress) before failing",
        "schema": {"type": ["number", "null"], "default": 120, "minimum": 0},
    },
    "connect_backoff_max": {
        "label": "Connect backoff max (s)",
        "description": "Longest pause between two connect attempts",
        "schema": {"type": ["number", "null"], "default": 2, "minimum": 0},
    },
    "driver": {
        "label": "Driver",
        "description": "DB-API driver: psycopg (3, the default) or psycopg2",
        "schema": {"type": ["string", "null"], "enum": ["psycopg", "psycopg2", None]},
    },
}
_POSTGRES_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": [],
    "relabeling": {"host": "Hosts (comma-separated host[:port] list)", "schema": "Database"},
    "placeholders": {"host": "pg-a.internal:5432,pg-b.internal:5432", "port": "5432", "schema": "warehouse",
                     "target_session_attrs": "read-write", "connect_deadline": "120", "driver": "psycopg"},
}
_MONITOR_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": [],
    "relabeling": {"host": "Monitor host", "schema": "Database (pg_auto_failover)"},
    "placeholders": {"host": "monitor.internal", "port": "5432", "schema": "pg_auto_failover"},
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata: connection types, hooks, operators, sensors, triggers, CLI."""
    return {
        "package-name": "airflow-provider-dataeng",
        "name": "Data engineering pipelines",
        "description": (
            "Idempotent partition-targeted extracts, quality-gated atomic publishes, dbt, freshness SLAs "
            "and pg_auto_failover health for PostgreSQL warehouses, plus a YAML DAG factory."
        ),
        "versions": [__version__],
        "integrations": [
            {"integration-name": INTEGRATION, "external-doc-url": "https://www.postgresql.org/", "tags": ["software"]}
        ],
        "connection-types": [
            {
                "hook-class-name": f"{_PKG}.hooks.postgres.FailoverPostgresHook",
                "connection-type": "dataeng_postgres",
                "hook-name": "PostgreSQL (failover-aware, multi-host)",
                "conn-fields": _POSTGRES_FIELDS,
                "ui-field-behaviour": _POSTGRES_BEHAVIOUR,
            },
            {
                "hook-class-name": f"{_PKG}.hooks.pg_auto_failover.PgAutoFailoverHook",
                "connection-type": "pg_auto_failover",
                "hook-name": "pg_auto_failover monitor",
                "conn-fields": {k: v for k, v in _POSTGRES_FIELDS.items() if k != "target_session_attrs"},
                "ui-field-behaviour": _MONITOR_BEHAVIOUR,
            },
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    f"{_PKG}.hooks.postgres",
                    f"{_PKG}.hooks.pg_auto_failover",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    f"{_PKG}.operators.extract",
                    f"{_PKG}.operators.publish",
                    f"{_PKG}.operators.quality",
                    f"{_PKG}.operators.dbt",
                    f"{_PKG}.operators.dbt_pod",
                    f"{_PKG}.operators.gap_check",
                    f"{_PKG}.operators.failover_health",
                    f"{_PKG}.operators.deadline_watch",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [f"{_PKG}.sensors.freshness", f"{_PKG}.sensors.failover_health"],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [f"{_PKG}.triggers.freshness", f"{_PKG}.triggers.failover_health",
                                   f"{_PKG}.triggers.deadline_watch"],
            }
        ],
        "notifications": [f"{_PKG}.notifications.webhook.SlaWebhookNotifier"],
        "cli": [f"{_PKG}.factory.cli.get_provider_cli_commands"],
        "config": provider_config(),
        "plugins": [{"name": "dataeng_dashboard", "plugin-class": f"{_PKG}.dashboard.plugin.DataengDashboardPlugin"}],
    }
