"""FailoverHealthTrigger: waits in the triggerer until a failover cluster is healthy.

With a pg_auto_failover monitor it LISTENs on the monitor's ``state`` channel (one JSON payload per node
state change: ``{"type": "state", "formation": .., "groupId": .., "nodeId": .., "name": ..,
"reportedState": .., "goalState": .., "health": ..}``) with a psycopg 3 ``AsyncConnection`` and re-checks
on every notification for its formation and group; it also re-checks every ``poll_interval`` seconds, so a
lost notification or a dead LISTEN connection only delays the answer. Without a monitor it polls.

Events (``TriggerEvent.payload``):

- ``{"status": "healthy", "verdict": {...}, "notifications": n, "checks": n}``;
- ``{"status": "error", "message": .., "verdict": {...} | None}``: the check cannot work (unknown
  formation or connection, SQL error). Connection losses are retried, not reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_dataeng.connections import trigger_application_name
from airflow_provider_dataeng.failover.health_check import FailoverHealthCheck
from airflow_provider_dataeng.failover.verdict import HealthCriteria, HealthVerdict
from airflow_provider_dataeng.values import first_line

NOTIFY_DEBOUNCE_S = 0.1
RECONNECT_BACKOFF_MAX_S = 5.0


def _monitor_conn_params(monitor_conn_id: str, application_name: str | None = None) -> dict[str, Any]:
    from airflow_provider_dataeng.connections import connect

    return connect(monitor_conn_id, role="monitor", application_name=application_name).conn_params()


class FailoverHealthTrigger(BaseTrigger):
    """Fire once the cluster meets ``criteria``.

    :param criteria: :class:`HealthCriteria` as a dict.
    :param monitor_conn_id: pg_auto_failover monitor connection (LISTEN + poll).
    :param conn_id: multi-host connection to the nodes (poll only).
    :param poll_interval: seconds between checks when no notification arrives.
    :param listen: LISTEN on the monitor's ``state`` channel (monitor path).
    """

    def __init__(
        self,
        *,
        criteria: dict[str, Any],
        monitor_conn_id: str | None = None,
        conn_id: str | None = None,
        poll_interval: float = 30.0,
        listen: bool = True,
    ) -> None:
        super().__init__()
        self.criteria = dict(criteria)
        self.monitor_conn_id = monitor_conn_id
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.listen = listen
        self.check = FailoverHealthCheck(
            criteria=HealthCriteria.from_dict(self.criteria), monitor_conn_id=monitor_conn_id, conn_id=conn_id
        )
        self.notifications = 0
        self.checks = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "criteria": self.criteria,
                "monitor_conn_id": self.monitor_conn_id,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "listen": self.listen,
            },
        )

    def _event(self, status: str, verdict: HealthVerdict | None, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "verdict": verdict.as_xcom() if verdict else None,
                "notifications": self.notifications,
                "checks": self.checks,
                **extra,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.monitor_conn_id:
            async for event in self._run_monitor():
                yield event
            return
        async for event in self._run_polling():
            yield event

    # -- no monitor: poll host by host ------------------------------------------------------------
    async def _run_polling(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                verdict = await asyncio.to_thread(self.check.evaluate)
            except Exception as exc:  # bad connection id or host field: nothing to wait for
                yield self._event("error", None, message=f"connection {self.conn_id!r}: {exc}")
                return
            self.checks += 1
            if verdict.healthy:
                yield self._event("healthy", verdict)
                return
            self.log.info("Not healthy yet: %s", verdict.summary())
            await asyncio.sleep(self.poll_interval)

    # -- monitor: LISTEN state + poll -------------------------------------------------------------
    async def _run_monitor(self) -> AsyncIterator[TriggerEvent]:
        import psycopg

        from airflow_provider_dataeng.failover.formation_health import classify_formation
        from airflow_provider_dataeng.hooks.pg_auto_failover import FormationNotFoundError, aget_node_states
        from airflow_provider_dataeng.hooks.postgres import backoff_delay, is_connection_error

        criteria = self.check.criteria
        try:
            params = await asyncio.to_thread(_monitor_conn_params, self.monitor_conn_id, trigger_application_name(self))
        except Exception as exc:
            yield self._event("error", None, message=f"monitor connection {self.monitor_conn_id!r}: {exc}")
            return
        wakeup = asyncio.Event()
        listener: asyncio.Task | None = None
        aconn: psycopg.AsyncConnection | None = None
        verdict: HealthVerdict | None = None
        failures = 0
        try:
            while True:
                if self.listen and (listener is None or listener.done()):
                    listener = asyncio.create_task(self._listen(params, wakeup))
                wakeup.clear()  # changes from here on wake the wait below
                try:
                    if aconn is None or aconn.closed:
                        aconn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
                    states = await aget_node_states(aconn, criteria.formation, criteria.group_id)
                    failures = 0
                except FormationNotFoundError as exc:
                    yield self._event("error", verdict, message=str(exc))
                    return
                except psycopg.Error as exc:
                    if not is_connection_error(exc):
                        yield self._event("error", verdict, message=f"reading the monitor failed: {exc}")
                        return
                    failures += 1
                    self.log.warning("Monitor unreachable (%s); retrying", first_line(exc))
                    if aconn is not None:
                        with contextlib.suppress(Exception):
                            await aconn.close()
                    aconn = None
                    await asyncio.sleep(
                        backoff_delay(failures, base=0.5, cap=min(RECONNECT_BACKOFF_MAX_S, self.poll_interval))
                    )
                    continue
                self.checks += 1
                verdict = classify_formation(states, criteria)
                if verdict.healthy:
                    yield self._event("healthy", verdict)
                    return
                self.log.info("Not healthy yet: %s", verdict.summary())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=self.poll_interval)
                    await asyncio.sleep(NOTIFY_DEBOUNCE_S)  # a transition sends a burst of notifications
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(BaseException):
                    await listener
            if aconn is not None:
                with contextlib.suppress(Exception):
                    await aconn.close()

    async def _listen(self, params: dict[str, Any], wakeup: asyncio.Event) -> None:
        """LISTEN state on its own connection; set ``wakeup`` on our formation/group's changes."""
        import psycopg
        from psycopg import sql

        from airflow_provider_dataeng.hooks.pg_auto_failover import NOTIFY_CHANNEL

        criteria = self.check.criteria
        try:
            async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                wakeup.set()  # re-check once LISTEN is in place: nothing between check and LISTEN is lost
                async for notify in conn.notifies():
                    try:
                        payload = json.loads(notify.payload)
                    except ValueError:
                        payload = {}
                    if payload.get("formation", criteria.formation) != criteria.formation:
                        continue
                    if int(payload.get("groupId", criteria.group_id)) != criteria.group_id:
                        continue
                    self.notifications += 1
                    wakeup.set()
        except psycopg.Error as exc:
            # The poll keeps going; the main loop starts a new listener on its next round.
            self.log.warning("LISTEN on the monitor stopped (%s); polling every %ss", exc, self.poll_interval)
