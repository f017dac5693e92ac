"""A configured freshness check: what to probe plus the SLA, run sync (sensor) or async (trigger)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from airflow_provider_dataeng.freshness.probe import FreshnessQuery, aprobe, probe
from airflow_provider_dataeng.freshness.status import FreshnessResult, FreshnessSLA, evaluate


@dataclass(frozen=True)
class FreshnessCheck:
    """``query`` evaluated against ``sla``; one database round trip per :meth:`run`."""

    query: FreshnessQuery
    sla: FreshnessSLA

    def run(self, hook: Any) -> FreshnessResult:
        """Probe on a fresh connection of a :class:`FailoverPostgresHook` (psycopg 3), reconnecting across a
        failover; the connection is closed afterwards."""
        observation = hook.run_with_reconnect(
            lambda conn: probe(conn, self.query), description=f"freshness probe on {self.query.display_table}"
        )
        return self.evaluate(observation)

    async def arun(self, aconn: Any) -> FreshnessResult:
        """Probe on an open psycopg 3 ``AsyncConnection`` (autocommit)."""
        return self.evaluate(await aprobe(aconn, self.query))

    def evaluate(self, observation: Any) -> FreshnessResult:
        return evaluate(self.query.display_table, self.query.measured, observation, self.sla)


class ProbeSession:
    """One autocommit connection kept across pokes (a poke-mode sensor waits in one process): each poke is
    then just the one query. A connection-level error (failover, restart) reconnects once and retries."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook
        self.conn: Any = None

    def run(self, check: FreshnessCheck) -> FreshnessResult:
        from airflow_provider_dataeng.hooks.postgres import is_connection_error

        for attempt in (1, 2):
            if self.conn is None or self.conn.closed:
                self.conn = self.hook.get_conn()  # retries with backoff until connect_deadline
                self.conn.autocommit = True
            try:
                return check.evaluate(probe(self.conn, check.query))
            except Exception as exc:
                if attempt == 2 or not is_connection_error(exc):
                    raise
                self.hook.log.warning(
                    "Freshness probe on %s lost its connection (%s); reconnecting",
                    check.query.display_table, type(exc).__name__,
                )
                self.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
