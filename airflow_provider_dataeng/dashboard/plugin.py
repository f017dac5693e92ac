"""The Airflow plugin the provider registers (provider info ``plugins``): the dashboard app and its UI entry.

* ``fastapi_apps`` (Airflow 3.0+): the app at ``<base_url>/dataeng/`` (page: ``dataeng/dashboard/``).
* ``external_views`` (Airflow 3.1+): an "Ingestion" entry under Browse that shows the page in the UI.
  Airflow 3.0 ignores it: users there open ``<base_url>/dataeng/dashboard/`` directly.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_dataeng.dashboard.app import LazyApp

URL_PREFIX = "/dataeng"
PAGE = "dataeng/dashboard/"  # relative to the UI's <base href>, so it works under any base_url or proxy path


class DataengDashboardPlugin(AirflowPlugin):
    """Ingestion dashboard: ledger calendar, rows, checks, freshness, failover; fill holes from the page."""

    name = "dataeng_dashboard"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Ingestion dashboard"}]
    external_views = [
        {
            "name": "Ingestion",
            "href": PAGE,
            "url_route": "dataeng-ingestion",
            "destination": "nav",
            "category": "browse",
            "icon": "dataeng/static/icon.svg",
        }
    ]
