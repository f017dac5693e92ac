"""FreshnessTrigger: polls the freshness probe on a psycopg 3 ``AsyncConnection`` in the triggerer.

The deferrable :class:`~airflow_provider_dataeng.sensors.freshness.FreshnessSensor` hands its wait to this
trigger, so no worker slot is held. Events (``TriggerEvent.payload``):

- ``{"status": "fresh" | "warn", "result": {...}}``: the SLA is met (a warning is still a success);
- ``{"status": "error", "timed_out": true, "result": {...} | null, "waited_seconds": .., "last_error": ..}``:
  the table was still past ``error_after`` (or empty, or unreachable) when ``timeout_at`` came;
- ``{"status": "failed", "message": ..}``: the probe can never succeed (missing table/column, bad SQL,
  connection refused for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_dataeng.connections import trigger_application_name
from airflow_provider_dataeng.freshness import (
    FreshnessCheck,
    FreshnessConfigError,
    FreshnessQuery,
    FreshnessResult,
    FreshnessSLA,
    FreshnessStatus,
)
from airflow_provider_dataeng.values import first_line


def _resolve_conn_params(conn_id: str, application_name: str | None = None) -> tuple[dict[str, Any], list[Any]]:
    """libpq parameters and the statements to run after connecting (``session_settings: set``)."""
    from airflow_provider_dataeng.connections import connect

    hook = connect(conn_id, role="warehouse", application_name=application_name)
    return hook.conn_params(), hook.session_setup()


class FreshnessTrigger(BaseTrigger):
    """Poll ``max(timestamp_column)`` every ``poke_interval`` seconds until fresh/warn or ``timeout_at``.

    :param conn_id: Airflow connection to the warehouse (resolved in the triggerer, never serialized).
    :param schema: schema of the table.
    :param table: table name.
    :param timestamp_column: column whose max is the load time (or use ``loaded_at_query``).
    :param loaded_at_query: SQL returning one timestamp, instead of ``max(timestamp_column)``.
    :param filter: SQL boolean expression limiting the rows considered.
    :param warn_after_seconds: warn threshold in seconds.
    :param error_after_seconds: error threshold in seconds.
    :param poke_interval: seconds between probes.
    :param timeout_at: UNIX time after which an ``error`` event is sent; ``None`` waits forever.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        schema: str,
        table: str,
        timestamp_column: str | None = None,
        loaded_at_query: str | None = None,
        filter: str | None = None,
        warn_after_seconds: float | None = None,
        error_after_seconds: float | None = None,
        poke_interval: float = 60.0,
        timeout_at: float | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.schema = schema
        self.table = table
        self.timestamp_column = timestamp_column
        self.loaded_at_query = loaded_at_query
        self.filter = filter
        self.warn_after_seconds = warn_after_seconds
        self.error_after_seconds = error_after_seconds
        self.poke_interval = float(poke_interval)
        self.timeout_at = timeout_at
        self.check = FreshnessCheck(
            query=FreshnessQuery(
                schema=schema, table=table, timestamp_column=timestamp_column,
                loaded_at_query=loaded_at_query, filter=filter,
            ),
            sla=FreshnessSLA(
                warn_after=None if warn_after_seconds is None else timedelta(seconds=warn_after_seconds),
                error_after=None if error_after_seconds is None else timedelta(seconds=error_after_seconds),
            ),
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "schema": self.schema,
                "table": self.table,
                "timestamp_column": self.timestamp_column,
                "loaded_at_query": self.loaded_at_query,
                "filter": self.filter,
                "warn_after_seconds": self.warn_after_seconds,
                "error_after_seconds": self.error_after_seconds,
                "poke_interval": self.poke_interval,
                "timeout_at": self.timeout_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import psycopg

        from airflow_provider_dataeng.hooks.postgres import is_connection_error, is_fatal_connect_error

        started = time.time()
        table = self.check.query.display_table
        try:
            params, setup = await asyncio.to_thread(_resolve_conn_params, self.conn_id,
                                                    trigger_application_name(self))
        except Exception as exc:  # unknown connection id, bad host field: nothing to wait for
            yield TriggerEvent({"status": "failed", "message": f"connection {self.conn_id!r}: {exc}"})
            return
        aconn: psycopg.AsyncConnection | None = None
        last: FreshnessResult | None = None
        last_error: str | None = None
        polls = 0
        try:
            while True:
                polls += 1
                try:
                    if aconn is None or aconn.closed:
                        aconn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
                        for statement, args in setup:  # session settings under `session_settings: set`
                            await aconn.execute(statement, args)
                    last = await self.check.arun(aconn)
                    last_error = None
                except FreshnessConfigError as exc:
                    yield TriggerEvent({"status": "failed", "message": str(exc)})
                    return
                except Exception as exc:
                    if is_fatal_connect_error(exc) or not (is_connection_error(exc) or isinstance(exc, OSError)):
                        yield TriggerEvent(
                            {"status": "failed", "message": f"freshness probe on {table}: {type(exc).__name__}: {exc}"}
                        )
                        return
                    last_error = f"{type(exc).__name__}: {first_line(exc)}"
                    self.log.warning("Freshness probe on %s failed (%s); retrying", table, last_error)
                    if aconn is not None:
                        with contextlib.suppress(Exception):
                            await aconn.close()
                    aconn = None
                if last is not None and last.status is not FreshnessStatus.ERROR:
                    self.log.info("%s (after %d polls)", last.message(), polls)
                    yield TriggerEvent({"status": last.status.value, "result": last.to_payload()})
                    return
                now = time.time()
                if self.timeout_at is not None and now >= self.timeout_at:
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "timed_out": True,
                            "result": last.to_payload() if last is not None else None,
                            "waited_seconds": round(now - started, 3),
                            "last_error": last_error,
                        }
                    )
                    return
                if last is not None:
                    self.log.info("%s; polling again in %.0fs", last.message(), self.poke_interval)
                delay = self.poke_interval
                if self.timeout_at is not None:
                    delay = max(0.0, min(delay, self.timeout_at - now))
                await asyncio.sleep(delay)
        finally:
            if aconn is not None:
                with contextlib.suppress(Exception):
                    await aconn.close()
