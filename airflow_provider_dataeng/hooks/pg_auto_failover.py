"""Hook for the pg_auto_failover monitor: typed node states, the primary, the formation URI, recent events.

The Airflow connection (conn type ``pg_auto_failover``) points at the monitor's Postgres: host/port of the
monitor, database ``pg_auto_failover`` (the default when the connection has none), login ``autoctl_node``
(the default when the connection has none; that role may read the monitor's state). Connection extras are
those of :class:`~airflow_provider_dataeng.hooks.postgres.FailoverPostgresHook` (``connect_timeout``,
``connect_deadline``, ``sslmode``, ...); the connect deadline defaults to 10 s here so an unreachable
monitor is reported quickly, as :class:`MonitorUnreachableError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook, format_host, is_connection_error
from airflow_provider_dataeng.values import first_line

MONITOR_DBNAME = "pg_auto_failover"
MONITOR_LOGIN = "autoctl_node"
DEFAULT_MONITOR_CONNECT_DEADLINE = 10.0
NOTIFY_CHANNEL = "state"

# Health as the monitor records it (pgautofailover.node.health).
HEALTH_LABELS = {1: "good", 0: "bad", -1: "unknown"}

# Node states and goal states, from current_state() joined with the node table for what current_state()
# leaves out (the primary's replication state, whether Postgres runs, age of the keeper's last report).
NODE_STATES_SQL = """
select s.node_id, s.nodename, s.nodehost, s.nodeport, s.group_id,
       s.current_group_state::text as reported_state, s.assigned_group_state::text as goal_state,
       s.health, s.reported_lsn::text as reported_lsn,
       pg_wal_lsn_diff(s.reported_lsn, '0/0')::bigint as reported_lsn_bytes,
       s.reported_tli, s.candidate_priority, s.replication_quorum, s.formation_kind, s.nodecluster,
       n.reportedrepstate as reported_rep_state, n.reportedpgisrunning as pg_running,
       extract(epoch from now() - n.reporttime)::float8 as report_age_s,
       n.formationid as formation
  from pgautofailover.current_state(%s, %s) s
  left join pgautofailover.node n on n.nodeid = s.node_id
 order by s.node_id
"""
FORMATION_EXISTS_SQL = "select 1 from pgautofailover.formation where formationid = %s"
PRIMARY_SQL = "select * from pgautofailover.get_primary(%s, %s)"
FORMATION_URI_SQL = "select pgautofailover.formation_uri(%s, 'default', %s)"
EVENTS_SQL = """
select eventid, eventtime, formationid, nodeid, groupid, nodename, nodehost, nodeport,
       reportedstate::text, goalstate::text, reportedrepstate, reportedtli, reportedlsn::text,
       candidatepriority, replicationquorum, description
  from pgautofailover.last_events(%s, %s, %s)
 order by eventid  -- the function orders by eventtime (transaction start): ids give the commit order
"""


class MonitorUnreachableError(AirflowException):
    """The pg_auto_failover monitor cannot be reached (nothing can be said about the formation)."""


class FormationNotFoundError(AirflowException):
    """The monitor knows no such formation (or no node in that group)."""


@dataclass(frozen=True)
class NodeState:
    """One node as the monitor sees it (``pgautofailover.current_state``)."""

    node_id: int
    name: str
    host: str
    port: int
    group_id: int
    reported_state: str
    goal_state: str
    health: int
    reported_lsn: str
    reported_lsn_bytes: int
    reported_tli: int
    candidate_priority: int
    replication_quorum: bool
    reported_rep_state: str | None = None
    pg_running: bool | None = None
    report_age_s: float | None = None
    formation: str = "default"

    @property
    def health_label(self) -> str:
        return HEALTH_LABELS.get(self.health, str(self.health))

    @property
    def settled(self) -> bool:
        """Reported state equals the goal the monitor assigned (no transition in progress)."""
        return self.reported_state == self.goal_state

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> NodeState:
        """Build from a :data:`NODE_STATES_SQL` row (also used by the async trigger)."""
        return cls(
            node_id=int(row["node_id"]),
            name=row["nodename"],
            host=row["nodehost"],
            port=int(row["nodeport"]),
            group_id=int(row["group_id"]),
            reported_state=row["reported_state"],
            goal_state=row["goal_state"],
            health=int(row["health"]),
            reported_lsn=row["reported_lsn"],
            reported_lsn_bytes=int(row["reported_lsn_bytes"]),
            reported_tli=int(row["reported_tli"]),
            candidate_priority=int(row["candidate_priority"]),
            replication_quorum=bool(row["replication_quorum"]),
            reported_rep_state=row.get("reported_rep_state"),
            pg_running=row.get("pg_running"),
            report_age_s=None if row.get("report_age_s") is None else float(row["report_age_s"]),
            formation=row.get("formation") or "default",
        )


@dataclass(frozen=True)
class FormationEvent:
    """One row of ``pgautofailover.last_events``."""

    event_id: int
    event_time: datetime
    formation: str
    node_id: int
    group_id: int
    node_name: str
    node_host: str
    node_port: int
    reported_state: str
    goal_state: str
    reported_rep_state: str | None
    reported_tli: int
    reported_lsn: str
    candidate_priority: int
    replication_quorum: bool
    description: str


class PgAutoFailoverHook(FailoverPostgresHook):
    """Reads a pg_auto_failover monitor.

    :param monitor_conn_id: Airflow connection (conn type ``pg_auto_failover``) to the monitor.
    :param connect_deadline: seconds to keep retrying a connect (default 10, or the ``connect_deadline``
        extra).
    """

    conn_name_attr = "monitor_conn_id"
    default_conn_name = "pg_auto_failover_default"
    conn_type = "pg_auto_failover"
    hook_name = "pg_auto_failover monitor"

    def __init__(self, monitor_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        kwargs.setdefault("driver", "psycopg")
        super().__init__(monitor_conn_id=monitor_conn_id, **kwargs)

    # -- connection defaults for a monitor ------------------------------------------------------------
    @property
    def dbname(self) -> str | None:
        return self.database or self.connection.schema or MONITOR_DBNAME

    @property
    def login(self) -> str:
        return self.connection.login or MONITOR_LOGIN

    @property
    def target_session_attrs(self) -> str:
        # The monitor is a single server: do not ask libpq for read-write checks unless configured.
        if self._target_session_attrs is None and "target_session_attrs" not in self.connection.extra_dejson:
            return "any"
        return super().target_session_attrs

    @property
    def connect_deadline(self) -> float:
        if self._connect_deadline is not None:
            return float(self._connect_deadline)
        return float(self.connection.extra_dejson.get("connect_deadline", DEFAULT_MONITOR_CONNECT_DEADLINE))

    def conn_params(self, *, include_password: bool = True) -> dict[str, Any]:
        params = super().conn_params(include_password=include_password)
        params["user"] = self.login
        params["dbname"] = self.dbname
        return params

    def describe(self) -> str:
        hosts = ",".join(format_host(h, p) for h, p in self.hosts)
        return f"pg_auto_failover monitor {hosts}/{self.dbname} as {self.login}"

    # -- querying -------------------------------------------------------------------------------------
    def _monitor_conn(self) -> Any:
        try:
            return self.get_conn()
        except Exception as exc:
            if is_connection_error(exc):
                raise MonitorUnreachableError(
                    f"Cannot reach the {self.describe()} (connection {self.get_conn_id()!r}) within "
                    f"{self.connect_deadline:.0f}s: {first_line(exc)}. Check that the monitor runs and that "
                    "the connection's host, port and login (autoctl_node) are right."
                ) from exc
            raise

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        conn = self._monitor_conn()
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(sql, params)
                rows = list(cur.fetchall()) if cur.description else []
            conn.rollback()
            return rows
        except Exception as exc:
            if is_connection_error(exc):
                raise MonitorUnreachableError(
                    f"Lost the connection to the {self.describe()}: {first_line(exc)}"
                ) from exc
            raise
        finally:
            conn.close()

    def get_node_states(self, formation: str = "default", group_id: int = 0) -> list[NodeState]:
        """Every node of ``formation`` / ``group_id`` as the monitor sees it, ordered by node id.

        Raises :class:`FormationNotFoundError` when the monitor does not know the formation.
        """
        rows = self._query(NODE_STATES_SQL, (formation, group_id))
        if not rows and not self._query(FORMATION_EXISTS_SQL, (formation,)):
            raise FormationNotFoundError(
                f"formation={formation!r}: the {self.describe()} has no such formation"
            )
        return [NodeState.from_row(row) for row in rows]

    def get_primary(self, formation: str = "default", group_id: int = 0) -> NodeState | None:
        """The node ``pgautofailover.get_primary`` names: the writable node, or the old primary while it is
        being demoted during a failover (check its ``goal_state``); None when the group has no such node."""
        import psycopg

        try:
            rows = self._query(PRIMARY_SQL, (formation, group_id))
        except psycopg.Error as exc:
            if "no writable node" in str(exc) or "no primary" in str(exc).lower():
                return None
            raise
        if not rows or rows[0]["primary_node_id"] is None:
            return None
        node_id = int(rows[0]["primary_node_id"])
        for node in self.get_node_states(formation, group_id):
            if node.node_id == node_id:
                return node
        return None

    def formation_uri(self, formation: str = "default", sslmode: str = "prefer") -> str:
        """The client URI of the formation (multi-host, ``target_session_attrs=read-write``)."""
        rows = self._query(FORMATION_URI_SQL, (formation, sslmode))
        uri = rows[0]["formation_uri"] if rows else None
        if not uri:
            raise FormationNotFoundError(f"formation={formation!r}: the monitor returned no URI")
        return uri

    def last_events(self, count: int = 10, formation: str = "default", group_id: int = 0) -> list[FormationEvent]:
        """The ``count`` most recent events of the formation's group, oldest first."""
        if count < 1:
            raise ValueError(f"count={count!r}: expected a positive number of events")
        rows = self._query(EVENTS_SQL, (formation, group_id, count))
        return [
            FormationEvent(
                event_id=int(r["eventid"]), event_time=r["eventtime"], formation=r["formationid"],
                node_id=int(r["nodeid"]), group_id=int(r["groupid"]), node_name=r["nodename"],
                node_host=r["nodehost"], node_port=int(r["nodeport"]), reported_state=r["reportedstate"],
                goal_state=r["goalstate"], reported_rep_state=r["reportedrepstate"],
                reported_tli=int(r["reportedtli"]), reported_lsn=r["reportedlsn"],
                candidate_priority=int(r["candidatepriority"]), replication_quorum=bool(r["replicationquorum"]),
                description=r["description"],
            )
            for r in rows
        ]

    def test_connection(self) -> tuple[bool, str]:
        try:
            rows = self._query("select extversion from pg_extension where extname = 'pgautofailover'", ())
        except Exception as exc:  # noqa: BLE001 - reported to the UI
            return False, str(exc)
        if not rows:
            return False, "connected, but the pgautofailover extension is not installed there (not a monitor?)"
        return True, f"pg_auto_failover monitor, extension version {rows[0]['extversion']}"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Database (default pg_auto_failover)", "login": "Login (default autoctl_node)"},
            "placeholders": {
                "host": "pg-monitor",
                "schema": MONITOR_DBNAME,
                "login": MONITOR_LOGIN,
                "extra": '{"connect_timeout": 5, "connect_deadline": 10}',
            },
        }


async def aget_node_states(aconn: Any, formation: str = "default", group_id: int = 0) -> list[NodeState]:
    """:meth:`PgAutoFailoverHook.get_node_states` on a psycopg 3 ``AsyncConnection`` (for triggers)."""
    from psycopg.rows import dict_row

    async with aconn.cursor(row_factory=dict_row) as cur:
        await cur.execute(NODE_STATES_SQL, (formation, group_id))
        rows = await cur.fetchall()
        if not rows:
            await cur.execute(FORMATION_EXISTS_SQL, (formation,))
            if not await cur.fetchall():
                raise FormationNotFoundError(f"formation={formation!r}: the monitor has no such formation")
    return [NodeState.from_row(row) for row in rows]
