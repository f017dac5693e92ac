"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_dataeng import __version__

_PKG = "airflow_provider_dataeng"
INTEGRATION = "Data engineering (PostgreSQL)"


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
            },
            {
                "hook-class-name": f"{_PKG}.hooks.pg_auto_failover.PgAutoFailoverHook",
                "connection-type": "pg_auto_failover",
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
                "python-modules": [f"{_PKG}.triggers.freshness", f"{_PKG}.triggers.failover_health"],
            }
        ],
        "notifications": [f"{_PKG}.notifications.webhook.SlaWebhookNotifier"],
        "cli": [f"{_PKG}.factory.cli.get_provider_cli_commands"],
        "plugins": [{"name": "dataeng_dashboard", "plugin-class": f"{_PKG}.dashboard.plugin.DataengDashboardPlugin"}],
    }
