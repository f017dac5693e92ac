"""Health of a streaming-replication cluster without a monitor (plain replicas, Patroni, ...).

Every host of a multi-host connection (``h1:5432,h2:5433``) is probed on its own (target_session_attrs
``any``): ``pg_is_in_recovery()`` says primary or standby; on the primary ``pg_stat_replication`` lists
the walsenders and their sync state; on a standby the WAL receiver status and the replayed LSN give its
lag (bytes behind the primary's current LSN). The login needs ``pg_monitor`` (or superuser) to see
other sessions' replication rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_dataeng.failover.verdict import HealthCriteria, HealthVerdict, NodeRow, format_bytes
from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook
from airflow_provider_dataeng.values import first_line

PROBE_SQL = """
select pg_is_in_recovery() as in_recovery,
       case when pg_is_in_recovery() then null
            else pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint end as current_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint as receive_lsn,
       pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint as replay_lsn,
       (select status from pg_stat_wal_receiver limit 1) as receiver_status
"""
WALSENDERS_SQL = """
select application_name, client_addr::text as client_addr, state, sync_state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint as replay_lag_bytes
  from pg_stat_replication
 order by application_name
"""
PROBE_CONNECT_TIMEOUT = 3


@dataclass
class HostProbe:
    """What one host said (or that it said nothing)."""

    host: str
    port: int
    reachable: bool
    error: str | None = None
    in_recovery: bool | None = None
    current_lsn: int | None = None
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    receiver_status: str | None = None
    walsenders: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


def probe_host(params: dict[str, Any], host: str, port: int) -> HostProbe:
    """Connect to exactly ``host:port`` (any role) and read its replication status."""
    import psycopg
    from psycopg.rows import dict_row

    one = dict(params)
    one.update(
        host=host, port=str(port), target_session_attrs="any",
        connect_timeout=min(int(params.get("connect_timeout", PROBE_CONNECT_TIMEOUT)), PROBE_CONNECT_TIMEOUT),
    )
    try:
        with psycopg.connect(**one, autocommit=True, row_factory=dict_row) as conn:
            row = conn.execute(PROBE_SQL).fetchone()
            assert row is not None
            probe = HostProbe(host=host, port=port, reachable=True, **row)
            if not probe.in_recovery:
                probe.walsenders = list(conn.execute(WALSENDERS_SQL).fetchall())
            return probe
    except psycopg.Error as exc:
        return HostProbe(host=host, port=port, reachable=False, error=first_line(exc))


def probe_hosts(hook: FailoverPostgresHook) -> list[HostProbe]:
    """Probe every host named by the hook's connection, in order."""
    params = hook.conn_params()
    return [probe_host(params, host, port) for host, port in hook.hosts]


def classify_replication(probes: Sequence[HostProbe], criteria: HealthCriteria) -> HealthVerdict:
    """Healthy when every host answers, exactly one is a primary, at least ``min_secondaries`` standbys
    stream within ``max_lag_bytes`` of it, the primary sees that many walsenders, and (when set) that many
    report ``expected_sync_state``."""
    reasons: list[str] = []
    for probe in probes:
        if not probe.reachable:
            reasons.append(f"{probe.name} is unreachable: {probe.error}")
    primaries = [p for p in probes if p.reachable and not p.in_recovery]
    primary = primaries[0] if len(primaries) == 1 else None
    if not primaries:
        reasons.append("no primary: no reachable host is out of recovery")
    elif len(primaries) > 1:
        reasons.append(f"{len(primaries)} hosts are primaries ({', '.join(p.name for p in primaries)}): split brain")

    rows: list[NodeRow] = []
    secondaries = 0
    for probe in probes:
        if not probe.reachable:
            rows.append(NodeRow(name=probe.name, host=probe.host, port=probe.port, state="unreachable",
                                health="unreachable", note=probe.error or ""))
            continue
        if not probe.in_recovery:
            sync = ",".join(sorted({w["sync_state"] for w in probe.walsenders if w["sync_state"]})) or None
            rows.append(NodeRow(name=probe.name, host=probe.host, port=probe.port, state="primary", sync_state=sync,
                                note=f"{len(probe.walsenders)} walsender(s)"))
            continue
        lag = None
        if primary is not None and primary.current_lsn is not None and probe.replay_lsn is not None:
            lag = max(0, primary.current_lsn - probe.replay_lsn)
        streaming = probe.receiver_status == "streaming"
        notes = [f"wal receiver {probe.receiver_status or 'not running'}"]
        if not streaming:
            reasons.append(f"standby {probe.name} is not streaming (wal receiver: {probe.receiver_status or 'none'})")
        elif lag is not None and lag > criteria.max_lag_bytes:
            reasons.append(
                f"standby {probe.name} replay is {format_bytes(lag)} behind the primary "
                f"(max_lag_bytes {format_bytes(criteria.max_lag_bytes)})"
            )
        elif primary is not None:
            secondaries += 1
        rows.append(NodeRow(name=probe.name, host=probe.host, port=probe.port, state="standby", lag_bytes=lag,
                            note="; ".join(notes)))

    if secondaries < criteria.min_secondaries:
        reasons.append(
            f"{secondaries} streaming standby(s) within lag, at least {criteria.min_secondaries} required "
            "(min_secondaries)"
        )
    if primary is not None:
        streaming_senders = [w for w in primary.walsenders if w["state"] == "streaming"]
        if len(streaming_senders) < criteria.min_secondaries:
            reasons.append(
                f"primary {primary.name} has {len(streaming_senders)} streaming walsender(s) in "
                f"pg_stat_replication, at least {criteria.min_secondaries} required"
            )
        if criteria.expected_sync_state is not None:
            matching = [w for w in streaming_senders if w["sync_state"] == criteria.expected_sync_state]
            if len(matching) < max(1, criteria.min_secondaries):
                seen = ", ".join(f"{w['application_name']}={w['sync_state']}" for w in primary.walsenders) or "none"
                reasons.append(
                    f"primary {primary.name}: {len(matching)} standby(s) in sync_state "
                    f"{criteria.expected_sync_state!r} (expected_sync_state), walsenders: {seen}"
                )
    return HealthVerdict(
        healthy=not reasons, source="replication", reasons=reasons, nodes=rows,
        primary=primary.name if primary else None, secondaries=secondaries,
    )


def check_replication_health(hook: FailoverPostgresHook, criteria: HealthCriteria) -> HealthVerdict:
    """Probe every host of ``hook``'s multi-host connection and classify."""
    return classify_replication(probe_hosts(hook), criteria)
