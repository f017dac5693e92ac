"""A configured freshness check: what to probe plus the SLA, run sync (sensor) or async (trigger)."""

from __future__ import annotations

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
        """Probe through a :class:`FailoverPostgresHook` (psycopg 3), reconnecting across a failover."""
        observation = hook.run_with_reconnect(
            lambda conn: probe(conn, self.query), description=f"freshness probe on {self.query.display_table}"
        )
        return evaluate(self.query.display_table, self.query.measured, observation, self.sla)

    async def arun(self, aconn: Any) -> FreshnessResult:
        """Probe on an open psycopg 3 ``AsyncConnection`` (autocommit)."""
        observation = await aprobe(aconn, self.query)
        return evaluate(self.query.display_table, self.query.measured, observation, self.sla)
