"""Pooler handling without a PgBouncer: the refusal classification, the direct-connection verdict, and the
checked advisory unlock (a lock this session does not hold is reported, never raised)."""

from __future__ import annotations

import logging

import psycopg
import pytest

from airflow_provider_dataeng.connections import connect
from airflow_provider_dataeng.hooks import pooler
from airflow_provider_dataeng.hooks.pooler import StartupParameterRefusedError
from airflow_provider_dataeng.hooks.postgres import (
    FailoverPostgresHook,
    is_connection_error,
    is_fatal_connect_error,
)
from airflow_provider_dataeng.publish.locks import (
    advisory_lock,
    advisory_unlock,
    lock_key,
    release_advisory_lock,
)

PGBOUNCER_REFUSAL = ('connection failed: connection to server at "127.0.0.1", port 39829 failed: '
                     "FATAL:  unsupported startup parameter: options")


def test_a_refused_startup_parameter_is_fatal_and_names_the_fix():
    exc = psycopg.OperationalError(PGBOUNCER_REFUSAL)
    assert is_connection_error(exc) and is_fatal_connect_error(exc)
    assert pooler.refused_startup_parameter(exc) == "options"
    error = pooler.startup_refusal_error("wh", "127.0.0.1:6432/warehouse as postgres (read-write)", exc)
    assert isinstance(error, StartupParameterRefusedError) and not is_connection_error(error)
    assert "'wh'" in str(error) and '"session_settings": "set"' in str(error) and "Not retrying" in str(error)
    other = pooler.startup_refusal_error("wh", "h:1", psycopg.OperationalError("... unsupported startup parameter: "
                                                                             "search_path"))
    assert other is not None and "ignore_startup_parameters" in str(other) and "'search_path'" in str(other)
    assert pooler.startup_refusal_error("wh", "h:1", psycopg.OperationalError("server closed the connection")) is None
    assert not is_fatal_connect_error(psycopg.OperationalError("server closed the connection unexpectedly"))


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_a_direct_connection_is_probed_once_and_left_as_it_was(warehouse_conn_id: str, driver: str):
    pooler.clear_verdicts()
    peers: list[int] = []
    hook = FailoverPostgresHook(postgres_conn_id=warehouse_conn_id, driver=driver)
    conn = hook.get_conn()
    try:
        key = pooler.verdict_key(conn)
        assert pooler.cached_verdict(key) == pooler.DIRECT
        assert pooler.probe(conn, lambda: peers.append(1)) == pooler.DIRECT  # no second connection when direct
        assert peers == [] and conn.autocommit is False
        status = conn.info.transaction_status
        assert status == (psycopg.pq.TransactionStatus.IDLE if driver == "psycopg" else 0)  # no transaction left open
    finally:
        conn.close()


def test_an_unlock_of_a_lock_held_elsewhere_is_reported_not_raised(wh_hook: FailoverPostgresHook, dsn: str, caplog):
    key = lock_key("test", "pooler")
    holder, other = wh_hook.get_conn(), wh_hook.get_conn()
    try:
        holder.autocommit = other.autocommit = True
        advisory_lock(holder, key, "mart.t", wait=5)
        other_pid = other.info.backend_pid
        with caplog.at_level(logging.ERROR):
            assert advisory_unlock(other, key, "mart.t") is False
        assert "publish lock of mart.t" in caplog.text and f"backend {other_pid}" in caplog.text
        with psycopg.connect(dsn, autocommit=True) as watch:  # still held by the holder, as the log says
            held = watch.execute("select pid from pg_locks where locktype = 'advisory' and granted").fetchall()
        assert held == [(holder.info.backend_pid,)]
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert advisory_unlock(holder, key, "mart.t") is True
            assert release_advisory_lock(other, "select pg_advisory_unlock(%s, hashtext(%s)), pg_backend_pid()",
                                         [1, "raw.t"], "incremental_id lock of raw.t") is False
        assert "incremental_id lock of raw.t" in caplog.text and "publish lock" not in caplog.text
        other.close()
        assert release_advisory_lock(other, "select pg_advisory_unlock(%s), pg_backend_pid()", [key], "x") is False
    finally:
        holder.close()
        other.close()


def test_the_pooler_check_can_be_turned_off_and_is_validated(warehouse_conn_id: str):
    from devstack.airflow_env import register_connection, unregister_connection

    assert connect(warehouse_conn_id).pooler_check is True
    hook = connect(warehouse_conn_id)
    register_connection("pgb_off", host="127.0.0.1", port=hook.connection.port, schema=hook.dbname,
                        extra={"pooler_check": False})
    assert connect("pgb_off").pooler_check is False
    register_connection("pgb_bad", host="127.0.0.1", port=hook.connection.port, schema=hook.dbname,
                        extra={"pooler_check": "no"})
    try:
        with pytest.raises(ValueError, match="pooler_check"):
            connect("pgb_bad").get_conn()
    finally:
        unregister_connection("pgb_off")
        unregister_connection("pgb_bad")
