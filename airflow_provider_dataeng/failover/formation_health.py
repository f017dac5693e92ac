"""Health of a pg_auto_failover formation, judged from the monitor's node states."""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_dataeng.failover.verdict import HealthCriteria, HealthVerdict, NodeRow, format_bytes
from airflow_provider_dataeng.hooks.pg_auto_failover import NodeState, PgAutoFailoverHook


def primary_states(criteria: HealthCriteria) -> frozenset[str]:
    """Reported states that count as "the primary" under ``criteria``."""
    states = {"primary"}
    if criteria.accept_wait_primary:
        states.add("wait_primary")
    if criteria.min_secondaries == 0:
        states.add("single")  # a one-node formation
    return frozenset(states)


def classify_formation(states: Sequence[NodeState], criteria: HealthCriteria) -> HealthVerdict:
    """Healthy when exactly one node is primary, >= ``min_secondaries`` nodes are ``secondary``, every node
    is settled (reported == goal state), health-checked good, running and reporting, secondaries are within
    ``max_lag_bytes`` of the primary, and the primary reports ``expected_sync_state`` (when set)."""
    reasons: list[str] = []
    if not states:
        return HealthVerdict(
            healthy=False, source="monitor", nodes=[], formation=criteria.formation, group_id=criteria.group_id,
            reasons=[f"formation {criteria.formation!r} group {criteria.group_id} has no nodes on the monitor"],
        )
    accepted = primary_states(criteria)
    primaries = [n for n in states if n.reported_state in accepted]
    primary = primaries[0] if len(primaries) == 1 else None
    if not primaries:
        waiting = [n.name for n in states if n.reported_state == "wait_primary"]
        detail = ", ".join(f"{n.name}={n.reported_state}" for n in states)
        hint = (
            f" ({', '.join(waiting)} in wait_primary: writable but no secondary in sync; "
            "accept_wait_primary=True accepts that)" if waiting else ""
        )
        reasons.append(f"no primary: {detail}{hint}")
    elif len(primaries) > 1:
        reasons.append(f"{len(primaries)} nodes report a primary state ({', '.join(n.name for n in primaries)})")

    rows: list[NodeRow] = []
    secondaries = 0
    for node in states:
        notes: list[str] = []
        if not node.settled:
            notes.append(f"in transition {node.reported_state} -> {node.goal_state}")
            reasons.append(f"{node.name} is in transition: {node.reported_state} -> {node.goal_state}")
        if node.health != 1:
            reasons.append(f"{node.name} health is {node.health_label} (monitor health checks)")
        if node.pg_running is False:
            notes.append("postgres not running")
            reasons.append(f"{node.name}: its keeper reports Postgres is not running")
        if node.report_age_s is not None and node.report_age_s > criteria.max_report_age_s:
            notes.append(f"last report {node.report_age_s:.0f}s ago")
            reasons.append(
                f"{node.name}: keeper last reported {node.report_age_s:.0f}s ago "
                f"(more than {criteria.max_report_age_s:.0f}s)"
            )
        lag = None
        if node is not primary and primary is not None:
            lag = max(0, primary.reported_lsn_bytes - node.reported_lsn_bytes)
        is_secondary = node.reported_state == "secondary" and node.settled and node.health == 1
        if is_secondary and lag is not None and lag > criteria.max_lag_bytes:
            notes.append("lagging")
            reasons.append(
                f"{node.name} is {format_bytes(lag)} behind the primary (max_lag_bytes {format_bytes(criteria.max_lag_bytes)})"
            )
            is_secondary = False
        if is_secondary and node.report_age_s is not None and node.report_age_s > criteria.max_report_age_s:
            is_secondary = False
        secondaries += int(is_secondary)
        rows.append(
            NodeRow(
                name=node.name, host=node.host, port=node.port, state=node.reported_state,
                goal_state=node.goal_state, health=node.health_label, lag_bytes=lag,
                sync_state=node.reported_rep_state if node is primary else None, note="; ".join(notes),
            )
        )

    if secondaries < criteria.min_secondaries:
        reasons.append(
            f"{secondaries} node(s) in state secondary, at least {criteria.min_secondaries} required (min_secondaries)"
        )
    if (
        primary is not None and criteria.min_secondaries > 0
        and primary.reported_rep_state in (None, "", "unknown") and secondaries > 0
    ):
        # The primary's keeper sees no walsender: the standby is gone even if the monitor has not noticed.
        reasons.append(f"primary {primary.name} reports no streaming standby (replication state unknown)")
    if criteria.expected_sync_state is not None and primary is not None:
        if primary.reported_rep_state != criteria.expected_sync_state:
            reasons.append(
                f"primary {primary.name} reports replication state {primary.reported_rep_state!r}, "
                f"expected {criteria.expected_sync_state!r} (expected_sync_state)"
            )
    return HealthVerdict(
        healthy=not reasons, source="monitor", reasons=reasons, nodes=rows,
        primary=primary.name if primary else None, secondaries=secondaries,
        formation=criteria.formation, group_id=criteria.group_id,
    )


def check_formation_health(hook: PgAutoFailoverHook, criteria: HealthCriteria) -> HealthVerdict:
    """Read the monitor through ``hook`` and classify (raises MonitorUnreachableError if it cannot)."""
    return classify_formation(hook.get_node_states(criteria.formation, criteria.group_id), criteria)
