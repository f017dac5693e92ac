"""SlaWebhookNotifier: log an SLA breach and optionally POST it as JSON to a webhook (stdlib ``urllib``).

Works in three places:

- the :class:`~airflow_provider_dataeng.sensors.freshness.FreshnessSensor` calls it on a warning or a
  breach with ``context["freshness"]`` (table, lag, SLA, max timestamp, message);
- as any task/DAG callback (``on_failure_callback=SlaWebhookNotifier(...)``);
- as a Deadline Alert callback (``AsyncCallback(SlaWebhookNotifier, kwargs={...})``, run in the triggerer,
  context ``{"dag_run": {...}, "deadline": {...}}``) - see :mod:`airflow_provider_dataeng.freshness.deadline`;
  before Airflow 3.1 the ``sla_deadline_watch`` task calls it the same way, with ``unfinished_tasks`` too.

The JSON body carries a ``text`` field, so a Slack/Mattermost/Teams-style incoming webhook shows the message
as is. The URL is never logged beyond its scheme and host (incoming-webhook URLs embed secrets).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import BaseNotifier


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


class SlaWebhookNotifier(BaseNotifier):
    """Log an SLA breach; POST it as JSON to ``webhook_url`` when one is given.

    :param webhook_url: where to POST (templated); ``None`` only logs.
    :param table: the table the SLA is about (templated); default: from ``context["freshness"]``.
    :param sla: the SLA in words, e.g. ``"error after 6h"`` (templated); default: from the context.
    :param message: override the message text (templated).
    :param headers: extra HTTP headers (e.g. an ``Authorization`` header from a Variable).
    :param timeout: HTTP timeout in seconds.
    :param raise_on_error: raise when the POST fails (default); ``False`` logs the failure only.
    """

    template_fields: Sequence[str] = ("webhook_url", "table", "sla", "message")

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        table: str | None = None,
        sla: str | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        raise_on_error: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.webhook_url = webhook_url
        self.table = table
        self.sla = sla
        self.message = message
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.raise_on_error = raise_on_error

    # -- message ---------------------------------------------------------------------------------
    def build_payload(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body: event, status, table, lag, SLA, max timestamp, DAG/run/task and a ``text`` line."""
        fresh = dict(context.get("freshness") or {})
        dag_run = context.get("dag_run")
        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        deadline = context.get("deadline")
        dag_id = fresh.get("dag_id") or _get(dag_run, "dag_id") or _get(dag, "dag_id") or _get(ti, "dag_id")
        run_id = (
            fresh.get("run_id") or _get(dag_run, "run_id") or _get(dag_run, "dag_run_id") or context.get("run_id")
            or _get(ti, "run_id")
        )
        task_id = fresh.get("task_id") or _get(ti, "task_id")
        table = self.table or fresh.get("table")
        sla = self.sla or fresh.get("sla")
        status = fresh.get("status") or ("deadline_missed" if deadline else "breach")
        payload: dict[str, Any] = {
            "event": "freshness_sla" if fresh else ("deadline_missed" if deadline else "sla_breach"),
            "status": status,
            "table": table,
            "lag_seconds": fresh.get("lag_seconds"),
            "lag": fresh.get("lag"),
            "sla": sla,
            "threshold": fresh.get("threshold"),
            "max_loaded_at": fresh.get("max_loaded_at"),
            "observed_at": fresh.get("observed_at"),
            "dag_id": dag_id,
            "run_id": run_id,
            "task_id": task_id,
        }
        if deadline:
            payload["deadline_time"] = str(_get(deadline, "deadline_time"))
            payload["deadline_name"] = _get(deadline, "name")
        if context.get("unfinished_tasks") is not None:  # the deadline watcher (Airflow < 3.1) says which
            payload["unfinished_tasks"] = list(context["unfinished_tasks"])
        if context.get("failed_tasks"):  # ... and that the run failed before its deadline
            payload["failed_tasks"] = list(context["failed_tasks"])
        payload["text"] = self.message or self._default_text(payload, fresh)
        return payload

    @staticmethod
    def _default_text(payload: dict[str, Any], fresh: Mapping[str, Any]) -> str:
        run = f"{payload['dag_id'] or '?'} / {payload['run_id'] or '?'}"
        if payload["task_id"]:
            run += f" / {payload['task_id']}"
        if payload["event"] == "deadline_missed":
            unfinished, failed = payload.get("unfinished_tasks"), payload.get("failed_tasks")
            return (
                f"[deadline missed] {payload['table'] or 'data'} was not published in time (SLA: "
                f"{payload['sla'] or '-'}, deadline {payload.get('deadline_time')}); run {run}"
                + (f"; unfinished: {', '.join(unfinished)}" if unfinished else "")
                + (f"; the run failed: {', '.join(failed)}" if failed else "")
            )
        if fresh.get("empty"):
            detail = "table is empty"
        else:
            detail = f"lag {payload['lag'] or '-'} (max timestamp {payload['max_loaded_at'] or '-'})"
        return (
            f"[freshness {payload['status']}] {payload['table'] or '?'}: {detail}; "
            f"SLA: {payload['sla'] or '-'}; run {run}"
        )

    # -- sending ---------------------------------------------------------------------------------
    def _target(self) -> str:
        parts = urlsplit(self.webhook_url or "")
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def notify(self, context: Mapping[str, Any]) -> None:  # type: ignore[override]
        payload = self.build_payload(context)
        self.log.warning("SLA notification: %s", payload["text"])
        if not self.webhook_url:
            return
        if urlsplit(self.webhook_url).scheme not in ("http", "https"):
            raise ValueError(f"webhook_url: expected an http(s) URL, got scheme {urlsplit(self.webhook_url).scheme!r}")
        body = json.dumps(payload, default=str).encode()
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "airflow-provider-dataeng", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "code", None) or getattr(exc, "reason", None) or type(exc).__name__
            message = f"SLA webhook POST to {self._target()} failed: {reason}"
            if self.raise_on_error:
                raise RuntimeError(message) from None
            self.log.error(message)
            return
        self.log.info("SLA webhook POST to %s: HTTP %s", self._target(), status)

    async def async_notify(self, context: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Triggerer path (Deadline Alerts): the blocking POST runs in a thread."""
        await asyncio.to_thread(self.notify, context)
