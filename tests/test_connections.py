"""connections.connect: the one way the provider connects, on real PostgreSQL clusters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from airflow_provider_dataeng.connections import connect, trigger_application_name
from airflow_provider_dataeng.hooks.pg_auto_failover import PgAutoFailoverHook
from airflow_provider_dataeng.hooks.postgres import (
    FailoverPostgresHook,
    backoff_delay,
    format_host,
    parse_hosts,
)
from devstack.airflow_env import register_connection, unregister_connection
from devstack.pg import PgCluster, free_port


@pytest.fixture
def conn_ids() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for conn_id in made:
        unregister_connection(conn_id)


def _register(conn_ids: list[str], host: str, dbname: str = "postgres", **kwargs) -> str:
    conn_id = f"conn_{uuid.uuid4().hex[:8]}"
    register_connection(conn_id, host=host, schema=dbname, **kwargs)
    conn_ids.append(conn_id)
    return conn_id


def _show(conn, setting: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"show {setting}")
        return cur.fetchone()[0]


def test_driver_psycopg2_extra_still_gives_psycopg3_with_its_copy_api(pg_cluster: PgCluster, conn_ids):
    conn_id = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}", extra={"driver": "psycopg2"})
    hook = connect(conn_id, role="source")
    assert hook.driver == "psycopg"
    with hook.connection_scope() as conn:
        assert isinstance(conn, psycopg.Connection)
        with conn.cursor() as cur, cur.copy("copy (select g from generate_series(1, 3) g) to stdout") as copy:
            rows = [row for row in copy.rows()]
        assert rows == [("1",), ("2",), ("3",)]
    # The extra still works for a hook built for psycopg2 on purpose (and is not passed to libpq).
    legacy = FailoverPostgresHook(postgres_conn_id=conn_id)
    assert legacy.driver == "psycopg2" and "driver" not in legacy.conn_params()
    with legacy.connection_scope() as conn:
        assert type(conn).__module__.startswith("psycopg2")
        cur = conn.cursor()
        cur.execute("show timezone")
        assert cur.fetchone()[0] == "UTC"


def test_connect_pins_psycopg3_whatever_the_postgres_providers_default(pg_cluster: PgCluster, conn_ids,
                                                                     monkeypatch):
    """Airflow 3.0 pins SQLAlchemy 1.4, so the postgres provider's USE_PSYCOPG3 is false there and a plain
    PostgresHook uses psycopg2; every hook connect() builds still uses psycopg 3 (the engines need it)."""
    from airflow_provider_dataeng.hooks import postgres

    monkeypatch.setattr(postgres, "USE_PSYCOPG3", False)  # what the lowest supported versions give
    conn_id = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}")
    assert FailoverPostgresHook(postgres_conn_id=conn_id).driver == "psycopg2"  # the provider's default
    assert connect(conn_id, role="monitor").driver == "psycopg"
    for role in ("warehouse", "source"):
        hook = connect(conn_id, role=role)
        assert hook.driver == "psycopg"
        with hook.connection_scope() as conn:
            assert isinstance(conn, psycopg.Connection)
            assert conn.execute("select 1").fetchone() == (1,)


def test_extras_that_are_not_libpq_options_never_reach_libpq(pg_cluster: PgCluster, conn_ids):
    junk = {
        "dbt_schema": "analytics", "dbt_connect_retries": 3, "connect_deadline": 5, "connect_backoff_max": 1,
        "driver": "psycopg2", "no_such_libpq_option": "x", "cursor": "dictcursor", "sslmode": "disable",
    }
    conn_id = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}", extra=junk)
    for role in ("warehouse", "source"):
        hook = connect(conn_id, role=role)
        params = hook.conn_params()
        assert params["sslmode"] == "disable"
        assert not {"dbt_schema", "dbt_connect_retries", "connect_deadline", "connect_backoff_max", "driver",
                    "no_such_libpq_option", "cursor"} & set(params)
        assert hook.connect_deadline == 5  # still read by the hook itself
        with hook.connection_scope() as conn:
            assert conn.info.get_parameters()["sslmode"] == "disable"
            assert conn.execute("select 1").fetchone() == (1,)
    # The same connection used as a pg_auto_failover monitor connection (junk filtered there too).
    monitor = connect(conn_id, role="monitor")
    assert isinstance(monitor, PgAutoFailoverHook)
    assert "dbt_schema" not in monitor.conn_params() and monitor.conn_params()["dbname"] == "postgres"


def test_session_time_zone_is_utc_even_when_the_server_says_otherwise(pg_cluster: PgCluster, pg_db: str, conn_ids):
    pg_cluster.psql(f"alter database \"{pg_db}\" set timezone = 'Europe/Berlin'")
    conn_id = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}", dbname=pg_db)
    with psycopg.connect(pg_cluster.dsn(pg_db)) as raw:
        assert _show(raw, "timezone") == "Europe/Berlin"
    with connect(conn_id).connection_scope() as conn:
        assert _show(conn, "timezone") == "UTC"
    # A caller (the extract's source_timezone) may set its own zone, and more settings; spaces survive.
    hook = connect(conn_id, role="source",
                   session_settings={"TimeZone": "America/New_York", "search_path": "public, pg_catalog"})
    with hook.connection_scope() as conn:
        assert _show(conn, "timezone") == "America/New_York"
        assert _show(conn, "search_path") == "public, pg_catalog"
    with pytest.raises(ValueError, match="setting name"):
        connect(conn_id, session_settings={"TimeZone = UTC; drop": "x"})


def test_tcp_keepalives_are_set_on_both_ends(pg_cluster: PgCluster, conn_ids):
    conn_id = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}")
    with connect(conn_id).connection_scope() as conn:
        # server side: the server drops a dead worker's session (and its advisory locks) in ~1 minute
        assert (_show(conn, "tcp_keepalives_idle"), _show(conn, "tcp_keepalives_interval"),
                _show(conn, "tcp_keepalives_count")) == ("30", "10", "3")
        params = conn.info.get_parameters()
        assert (params["keepalives"], params["keepalives_idle"], params["keepalives_interval"],
                params["keepalives_count"]) == ("1", "30", "10", "3")
    tuned = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}",
                      extra={"keepalives_idle": 45, "keepalives_interval": 5, "keepalives_count": 4})
    with connect(tuned).connection_scope() as conn:
        assert _show(conn, "tcp_keepalives_idle") == "45" and _show(conn, "tcp_keepalives_count") == "4"
        assert conn.info.get_parameters()["keepalives_interval"] == "5"
    bad = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}", extra={"keepalives_idle": "soon"})
    with pytest.raises(ValueError, match="keepalives_idle"):
        connect(bad).conn_params()


def test_session_settings_set_mode_sends_no_options_startup_parameter(pg_cluster: PgCluster, conn_ids):
    """``session_settings: set`` (for PgBouncer, which rejects the ``options`` startup parameter): no
    ``options`` reaches the server, and the same settings hold, applied with set_config after connecting and
    committed, so a rolled-back transaction keeps them. Both drivers; connect() and run_with_reconnect."""
    conn_id = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}", extra={"session_settings": "set"})
    hook = connect(conn_id, role="source", session_settings={"TimeZone": "Europe/Berlin", "work_mem": "8MB"})
    assert "options" not in hook.conn_params()
    with hook.connection_scope() as conn:
        assert "options" not in conn.info.get_parameters()  # nothing a pooler could reject
        conn.execute("set local work_mem = '1MB'")
        conn.rollback()
        assert (_show(conn, "timezone"), _show(conn, "work_mem"), _show(conn, "tcp_keepalives_idle")) == (
            "Europe/Berlin", "8MB", "30")
    assert hook.run_with_reconnect(lambda c: _show(c, "timezone")) == "Europe/Berlin"
    legacy = FailoverPostgresHook(postgres_conn_id=conn_id, driver="psycopg2")
    with legacy.connection_scope() as conn:
        assert _show(conn, "timezone") == "UTC"
    # the default sends them as the libpq options startup parameter (no extra round trip)
    default = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}")
    assert "-c TimeZone=UTC" in connect(default).conn_params()["options"]
    bad = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}", extra={"session_settings": "SET"})
    with pytest.raises(ValueError, match=r"session_settings='SET': expected one of options, set"):
        connect(bad).conn_params()


def _activity_name(pg_cluster: PgCluster, conn) -> str:
    pid = conn.info.backend_pid
    return pg_cluster.psql(f"select application_name from pg_stat_activity where pid = {pid}")


def test_application_name_names_the_task_in_pg_stat_activity(pg_cluster: PgCluster, conn_ids, monkeypatch):
    conn_id = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}")
    with connect(conn_id, application_name="orders/extract").connection_scope() as conn:
        assert _activity_name(pg_cluster, conn) == "orders/extract"
    # Derived from the running task (Airflow exports AIRFLOW_CTX_* in the task process).
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "payments")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "extract_payments")
    with connect(conn_id).connection_scope() as conn:
        assert _activity_name(pg_cluster, conn) == "payments/extract_payments"
    # Capped at 63 bytes (the server's limit), non-ASCII replaced, never an error.
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "d" * 50 + "é")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "t" * 50)
    with connect(conn_id).connection_scope() as conn:
        name = _activity_name(pg_cluster, conn)
        assert name == ("d" * 50 + "?/" + "t" * 50)[:63] and len(name.encode()) == 63
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID")
    monkeypatch.delenv("AIRFLOW_CTX_TASK_ID")
    named = _register(conn_ids, f"127.0.0.1:{pg_cluster.port}", extra={"application_name": "from-extra"})
    with connect(named).connection_scope() as conn:
        assert _activity_name(pg_cluster, conn) == "from-extra"

    class _TI:
        dag_id, task_id = "monitoring", "orders_fresh"

    class _Trigger:
        task_instance = _TI()

    assert trigger_application_name(_Trigger()) == "monitoring/orders_fresh (triggerer)"
    assert trigger_application_name(object()) is None


def test_ipv6_hosts_parse():
    assert parse_hosts("[::1]:5433,127.0.0.1:5434", None) == [("::1", 5433), ("127.0.0.1", 5434)]
    assert parse_hosts("::1", 6000) == [("::1", 6000)]
    assert parse_hosts("[fe80::1%eth0]", None) == [("fe80::1%eth0", 5432)]
    assert format_host("::1", 5432) == "[::1]:5432" and format_host("db", 1) == "db:1"
    for bad in ("[::1", "[::1]x", "[]:5432", "h:0", "h:99999"):
        with pytest.raises(ValueError, match="connection host"):
            parse_hosts(bad, None)


@pytest.fixture(scope="module")
def ipv6_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster.create("ipv6", settings={"listen_addresses": "'::1'"})
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_ipv6_cluster_reached_through_the_multi_host_field(ipv6_cluster: PgCluster, conn_ids):
    dead = free_port()
    conn_id = _register(conn_ids, f"127.0.0.1:{dead},[::1]:{ipv6_cluster.port}", extra={"connect_timeout": 2})
    hook = connect(conn_id)
    assert f"[::1]:{ipv6_cluster.port}" in hook.describe() and f"@127.0.0.1:{dead},[::1]:" in hook.get_uri()
    with hook.connection_scope() as conn:
        assert conn.execute("select inet_server_addr()::text, inet_server_port()").fetchone() == (
            "::1/128", ipv6_cluster.port)
    bare = _register(conn_ids, "::1", port=ipv6_cluster.port)
    with connect(bare).connection_scope() as conn:
        assert conn.execute("select inet_server_port()").fetchone() == (ipv6_cluster.port,)


def test_backoff_cannot_overflow():
    for attempt in (1, 2, 10, 1_100, 10**6, 10**18):
        delay = backoff_delay(attempt, base=0.25, cap=2.0)
        assert 0 < delay <= 2.0
    assert backoff_delay(1, base=0.25, cap=2.0) <= 0.25
    assert 1.0 <= backoff_delay(10**9, base=0.25, cap=2.0) <= 2.0  # capped, jitter in [0.5, 1] of the cap


def test_connect_refuses_unknown_roles_and_empty_ids():
    with pytest.raises(ValueError, match="role"):
        connect("x", role="dwh")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="connection id"):
        connect(" ")
