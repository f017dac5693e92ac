"""FailoverPostgresHook on real clusters: multi-host DSN, failover-aware connects, reconnecting work."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook, is_connection_error, parse_hosts
from devstack.airflow_env import register_connection, unregister_connection
from devstack.pg import PgCluster, free_port

DRIVERS = ["psycopg", "psycopg2"]


def _conn(host: str, dbname: str = "postgres", **kwargs) -> str:
    conn_id = f"hook_{uuid.uuid4().hex[:8]}"
    register_connection(conn_id, host=host, schema=dbname, **kwargs)
    return conn_id


def _port_of(conn) -> int:
    cur = conn.cursor()
    cur.execute("select inet_server_port()")
    return cur.fetchone()[0]


@pytest.fixture(scope="module")
def standby(pg_cluster: PgCluster):
    replica = pg_cluster.make_standby("hook-standby")
    yield replica
    replica.destroy()


def test_parse_hosts_forms():
    assert parse_hosts("h1:5432,h2:5433", None) == [("h1", 5432), ("h2", 5433)]
    assert parse_hosts("h1, h2:7", 6000) == [("h1", 6000), ("h2", 7)]
    with pytest.raises(ValueError, match="not a number"):
        parse_hosts("h1:abc", None)
    with pytest.raises(ValueError, match="empty"):
        parse_hosts("", None)


def test_conn_params_build_a_multi_host_dsn_without_leaking_the_password():
    conn_id = _conn("db1:5432,db2:5433", dbname="wh", login="etl", password="s3cr3t-pw",
                    extra={"connect_timeout": 3, "sslmode": "disable"})
    hook = FailoverPostgresHook(postgres_conn_id=conn_id)
    params = hook.conn_params()
    assert params["host"] == "db1,db2" and params["port"] == "5432,5433"
    assert params["target_session_attrs"] == "read-write" and params["connect_timeout"] == 3
    assert params["sslmode"] == "disable" and params["password"] == "s3cr3t-pw"
    assert "password" not in hook.conn_params(include_password=False)
    assert "s3cr3t-pw" not in hook.describe()
    assert hook.get_uri().startswith("postgresql://etl:s3cr3t-pw@db1:5432,db2:5433/wh?")
    assert FailoverPostgresHook(postgres_conn_id=conn_id, target_session_attrs="any").conn_params()[
        "target_session_attrs"] == "any"
    with pytest.raises(ValueError, match="expected one of"):
        FailoverPostgresHook(postgres_conn_id=conn_id, target_session_attrs="writable")
    unregister_connection(conn_id)


@pytest.mark.parametrize("driver", DRIVERS)
def test_first_host_down_connects_to_second(pg_cluster: PgCluster, driver: str):
    dead = free_port()
    conn_id = _conn(f"127.0.0.1:{dead},127.0.0.1:{pg_cluster.port}", extra={"connect_timeout": 2})
    hook = FailoverPostgresHook(postgres_conn_id=conn_id, driver=driver)
    with hook.connection_scope() as conn:
        assert _port_of(conn) == pg_cluster.port
    assert hook.get_first("select 1")[0] == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_read_only_standby_first_picks_the_writable_host(pg_cluster: PgCluster, standby: PgCluster, driver: str):
    assert standby.psql("select pg_is_in_recovery()") == "t"
    conn_id = _conn(f"127.0.0.1:{standby.port},127.0.0.1:{pg_cluster.port}")
    with FailoverPostgresHook(postgres_conn_id=conn_id, driver=driver).connection_scope() as conn:
        assert _port_of(conn) == pg_cluster.port
    # prefer-standby takes the standby when it is up
    with FailoverPostgresHook(
        postgres_conn_id=conn_id, driver=driver, target_session_attrs="prefer-standby"
    ).connection_scope() as conn:
        assert _port_of(conn) == standby.port


@pytest.mark.parametrize("driver", DRIVERS)
def test_connect_retries_until_the_server_comes_up(driver: str, capfd):
    cluster = PgCluster(name="late")
    cluster.init()
    cluster.write_conf()
    conn_id = _conn(f"127.0.0.1:{cluster.port}", extra={"connect_timeout": 1})
    starter = threading.Timer(2.0, cluster.start)
    starter.start()
    try:
        hook = FailoverPostgresHook(postgres_conn_id=conn_id, driver=driver, connect_deadline=30)
        assert hook.get_first("select 42")[0] == 42
        logs = "".join(capfd.readouterr())
        assert "Connect attempt 1" in logs and "Connection refused" in logs
    finally:
        starter.join()
        cluster.destroy()


@pytest.mark.parametrize("driver", DRIVERS)
def test_work_is_retried_on_a_fresh_connection_after_a_restart(driver: str):
    cluster = PgCluster.create("restart")
    try:
        conn_id = _conn(f"127.0.0.1:{cluster.port}", extra={"connect_timeout": 2})
        FailoverPostgresHook(postgres_conn_id=conn_id).run("create table batch(id int primary key)")
        attempts: list[int] = []

        def work(conn) -> int:
            attempts.append(1)
            cur = conn.cursor()
            cur.execute("insert into batch select generate_series(1, 1000) on conflict do nothing")
            if len(attempts) == 1:  # the server restarts while this unit of work is in flight
                threading.Thread(target=cluster.restart, daemon=True).start()
                cur.execute("select pg_sleep(30)")
            cur.execute("select count(*) from batch")
            return cur.fetchone()[0]

        hook = FailoverPostgresHook(postgres_conn_id=conn_id, driver=driver, connect_deadline=60)
        assert hook.run_with_reconnect(work, description="load batch") == 1000
        assert len(attempts) == 2
        assert cluster.psql("select count(*) from batch") == "1000"
    finally:
        cluster.destroy()


@pytest.mark.parametrize("driver", DRIVERS)
def test_sql_errors_are_not_retried(warehouse_conn_id: str, driver: str):
    calls: list[int] = []

    def work(conn):
        calls.append(1)
        conn.cursor().execute("select * from no_such_table")

    with pytest.raises(Exception, match="no_such_table") as info:
        FailoverPostgresHook(postgres_conn_id=warehouse_conn_id, driver=driver).run_with_reconnect(work)
    assert len(calls) == 1 and not is_connection_error(info.value)


@pytest.fixture
def password_role(pg_cluster: PgCluster):
    """A role whose password the server checks (scram) on 127.0.0.1, ahead of the trust rule."""
    role = f"pw_{uuid.uuid4().hex[:8]}"
    pg_cluster.psql(f"create role {role} login password 'Right-Pa55word'")
    hba = pg_cluster.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
    pg_cluster.psql("select pg_reload_conf()")
    yield role
    hba.write_text(original)
    pg_cluster.psql("select pg_reload_conf()")
    pg_cluster.psql(f"drop role {role}")


@pytest.mark.parametrize("driver", DRIVERS)
def test_wrong_password_fails_fast_without_leaking_it(pg_cluster: PgCluster, password_role: str, driver: str,
                                                       capfd, caplog):
    secret = "Wr0ng-Secret-Passw0rd"
    conn_id = _conn(f"127.0.0.1:{pg_cluster.port}", login=password_role, password=secret)
    hook = FailoverPostgresHook(postgres_conn_id=conn_id, driver=driver, connect_deadline=60)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(Exception) as info:
        hook.get_conn()
    assert time.monotonic() - started < 20, "a bad password must not be retried until the deadline"
    assert "password authentication failed" in str(info.value)
    logs = "".join(capfd.readouterr()) + caplog.text
    assert "not retrying" in logs
    assert secret not in str(info.value) and secret not in logs
    assert "Connect attempt" not in logs  # no retries
    ok = _conn(f"127.0.0.1:{pg_cluster.port}", login=password_role, password="Right-Pa55word")
    assert FailoverPostgresHook(postgres_conn_id=ok, driver=driver).get_first("select current_user")[0] == password_role
