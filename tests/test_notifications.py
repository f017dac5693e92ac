"""SlaWebhookNotifier against a real local HTTP endpoint; the Deadline Alerts helper with Airflow's own code."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_dataeng.freshness import FreshnessResult, FreshnessSLA, FreshnessStatus
from airflow_provider_dataeng.freshness.deadline import add_freshness_deadline, deadline_alerts_supported
from airflow_provider_dataeng.notifications import SlaWebhookNotifier
from devstack.webhook_receiver import webhook_receiver

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
needs_deadlines = pytest.mark.skipif(
    not deadline_alerts_supported(),
    reason="native Deadline Alerts need Airflow 3.1+; below, the helper adds the sla_deadline_watch task "
           "(tests/test_deadline_watch.py)")


def breach_context() -> dict:
    result = FreshnessResult(
        table="raw.orders", measured="max(loaded_at)", status=FreshnessStatus.ERROR,
        max_loaded_at=NOW - timedelta(hours=7, minutes=5), observed_at=NOW,
        sla=FreshnessSLA(warn_after=timedelta(hours=1), error_after=timedelta(hours=6)),
    )
    info = result.breach_info()
    info.update(dag_id="shop_daily", run_id="scheduled__2024-03-01T00:00:00+00:00", task_id="orders_fresh")
    from airflow.sdk import DAG

    # a task's context carries its DAG (Airflow 3.0's notifier renders its templates with it)
    return {"freshness": info, "run_id": "scheduled__2024-03-01T00:00:00+00:00", "dag": DAG("shop_daily", schedule=None)}


def test_posts_json_naming_table_lag_sla_and_run():
    with webhook_receiver() as rx:
        SlaWebhookNotifier(webhook_url=rx.url + "/services/T000/B000/secret", headers={"X-Team": "data"})(
            breach_context()
        )
        (request,) = rx.requests
    body = request["json"]
    assert request["path"] == "/services/T000/B000/secret"
    assert request["headers"]["Content-Type"] == "application/json" and request["headers"]["X-Team"] == "data"
    assert body["event"] == "freshness_sla" and body["status"] == "error"
    assert body["table"] == "raw.orders" and body["lag"] == "7h 5m" and body["lag_seconds"] == 25500.0
    assert body["sla"] == "warn after 1h, error after 6h" and body["threshold"] == "6h"
    assert body["run_id"] == "scheduled__2024-03-01T00:00:00+00:00" and body["dag_id"] == "shop_daily"
    assert body["text"] == (
        "[freshness error] raw.orders: lag 7h 5m (max timestamp 2024-03-01T04:55:00+00:00); "
        "SLA: warn after 1h, error after 6h; run shop_daily / scheduled__2024-03-01T00:00:00+00:00 / orders_fresh"
    )


def test_templated_message_is_rendered_from_the_context():
    with webhook_receiver() as rx:
        SlaWebhookNotifier(webhook_url=rx.url, message="{{ freshness.table }} is {{ freshness.lag }} late")(
            breach_context()
        )
        assert rx.payloads()[0]["text"] == "raw.orders is 7h 5m late"


def test_without_a_url_it_only_logs(caplog, capfd):
    caplog.set_level(logging.WARNING)
    SlaWebhookNotifier()(breach_context())
    assert "SLA notification: [freshness error] raw.orders" in caplog.text + capfd.readouterr().out


def test_http_error_raises_without_leaking_the_url_path():
    with webhook_receiver(status=500) as rx:
        notifier = SlaWebhookNotifier(webhook_url=rx.url + "/hooks/very-secret-token")
        with pytest.raises(RuntimeError, match=r"POST to http://127\.0\.0\.1:\d+ failed: 500") as err:
            notifier.notify(breach_context())  # Airflow 3.0's __call__ logs and swallows a send error
        assert "very-secret-token" not in str(err.value)
        SlaWebhookNotifier(webhook_url=rx.url, raise_on_error=False)(breach_context())  # logs only
        assert len(rx.requests) == 2


def test_only_http_urls_are_posted_to():
    with pytest.raises(ValueError, match="webhook_url"):
        SlaWebhookNotifier(webhook_url="file:///etc/passwd").notify(breach_context())


# -- Deadline Alerts --------------------------------------------------------------------------------
@needs_deadlines
def test_deadline_alert_is_added_and_serialized():
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    assert deadline_alerts_supported()  # Airflow 3.3 here
    with DAG("deadline_probe", schedule="@daily", start_date=NOW) as dag:
        alert = add_freshness_deadline(
            dag, table="raw.orders", error_after="6h", notifier_kwargs={"webhook_url": "http://127.0.0.1:9/x"}
        )
    assert dag.deadline == [alert]
    assert alert.interval == timedelta(hours=6) and alert.name == "freshness:raw.orders"
    assert alert.callback.path == "airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier"
    serialized = DagSerialization.to_dict(dag)["dag"]["deadline"]
    assert serialized[0]["reference"] == {"reference_type": "DagRunQueuedAtDeadline"}
    assert serialized[0]["callback"]["__data__"]["kwargs"]["table"] == "raw.orders"
    again = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert again.deadline is not None


@needs_deadlines
def test_deadline_callback_runs_our_notifier_through_airflows_callback_trigger():
    """What the triggerer does when the deadline passes: CallbackTrigger imports and awaits the notifier."""
    from airflow.sdk import DAG
    from airflow.triggers.callback import CallbackTrigger

    with webhook_receiver() as rx:
        with DAG("deadline_run", schedule="@daily", start_date=NOW) as dag:
            alert = add_freshness_deadline(
                dag, table="raw.orders", error_after="2h", reference="dagrun_logical_date",
                notifier_kwargs={"webhook_url": rx.url + "/deadline"},
            )
        kwargs = {
            **alert.callback.kwargs,
            "context": {  # the shape models.deadline.Deadline.handle_miss sends
                "dag_run": {"dag_id": "deadline_run", "dag_run_id": "scheduled__2024-03-01T00:00:00+00:00"},
                "deadline": {"id": "1", "deadline_time": "2024-03-01T02:00:00+00:00"},
            },
        }
        trigger = CallbackTrigger(callback_path=alert.callback.path, callback_kwargs=kwargs)

        async def run_all():
            return [event async for event in trigger.run()]

        events = asyncio.run(run_all())
        assert [e.payload["state"] for e in events][-1] == "success", events
        (body,) = rx.payloads()
    assert body["event"] == "deadline_missed" and body["table"] == "raw.orders"
    assert body["sla"] == "finished within 2h of logical_date"
    assert body["run_id"] == "scheduled__2024-03-01T00:00:00+00:00" and body["dag_id"] == "deadline_run"
    assert "[deadline missed] raw.orders" in body["text"]


def test_deadline_helper_validates_input():
    from airflow.sdk import DAG

    with DAG("bad_deadline", schedule="@daily", start_date=NOW) as dag:
        with pytest.raises(ValueError, match="error_after"):
            add_freshness_deadline(dag, table="raw.orders", error_after="0s")
        with pytest.raises(ValueError, match="reference"):
            add_freshness_deadline(dag, table="raw.orders", error_after="1h", reference="start")


@needs_deadlines
def test_other_notifiers_get_exactly_their_kwargs():
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    from airflow.sdk import DAG

    with DAG("deadline_smtp", schedule="@daily", start_date=NOW) as dag:
        alert = add_freshness_deadline(
            dag, table="raw.orders", error_after="6h", notifier=SmtpNotifier,
            notifier_kwargs={"to": "oncall@example.com", "subject": "raw.orders missed its SLA"},
        )
    assert alert.callback.path == "airflow.providers.smtp.notifications.smtp.SmtpNotifier"
    assert alert.callback.kwargs == {"to": "oncall@example.com", "subject": "raw.orders missed its SLA"}
    SmtpNotifier(**alert.callback.kwargs)  # the triggerer will be able to build it
