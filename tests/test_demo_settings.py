"""What the demo reads from the configs and prints, without running it: settings a config leaves out take the
task spec's defaults, and the dashboard URL it prints last is where the provider's plugin puts the page."""

from __future__ import annotations

from datetime import timedelta

from airflow_provider_dataeng.durations import parse_duration
from airflow_provider_dataeng.extract.spec import ExtractSpec
from demo.run import extract_setting, parse_lag
from demo.standalone import dashboard_hint, dashboard_urls


def test_a_missing_lag_is_the_extract_specs_default_not_zero():
    default = parse_duration(ExtractSpec.model_fields["lag"].default, field="lag")
    assert default is not None and default > timedelta(0)
    assert parse_lag(None) == default
    assert extract_setting({"mode": "incremental_timestamp"}, "lag") == ExtractSpec.model_fields["lag"].default
    assert extract_setting({}, "timestamp_column") == ExtractSpec.model_fields["timestamp_column"].default
    assert parse_lag("2h") == timedelta(hours=2) and parse_lag(0) == timedelta(0)


def test_the_printed_dashboard_urls_are_the_plugins():
    from airflow_provider_dataeng.dashboard.plugin import PAGE, DataengDashboardPlugin

    (view,) = DataengDashboardPlugin.external_views
    in_ui, page = dashboard_urls("http://example.test:8080/")
    assert in_ui == f"http://example.test:8080/plugin/{view['url_route']}"
    assert page == f"http://example.test:8080/{PAGE}"
    assert DataengDashboardPlugin.fastapi_apps[0]["url_prefix"] == "/" + PAGE.split("/")[0]
    hint = dashboard_hint()
    assert "make airflow" in hint and dashboard_urls()[0] in hint and dashboard_urls()[1] in hint
