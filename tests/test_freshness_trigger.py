"""FreshnessTrigger.run() driven in asyncio against the real cluster; serialization round trip."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest

from airflow_provider_dataeng.triggers.freshness import FreshnessTrigger


@pytest.fixture
def wh(pg_cluster, pg_db) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        conn.execute("create schema raw")
        conn.execute("create table raw.events (id bigserial primary key, loaded_at timestamptz)")
        conn.execute("create index on raw.events (loaded_at)")
        yield conn


def make(conn_id: str, **kw) -> FreshnessTrigger:
    args = dict(
        conn_id=conn_id, schema="raw", table="events", timestamp_column="loaded_at",
        warn_after_seconds=1800.0, error_after_seconds=3600.0, poke_interval=0.3, timeout_at=time.time() + 30,
    )
    args.update(kw)
    return FreshnessTrigger(**args)


async def first_event(trigger: FreshnessTrigger):
    return await asyncio.wait_for(anext(trigger.run()), timeout=60)


def test_serialize_round_trips(warehouse_conn_id):
    trigger = make(warehouse_conn_id, filter="id > 0")
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_dataeng.triggers.freshness.FreshnessTrigger"
    assert "password" not in str(kwargs)
    from airflow.sdk._shared.module_loading import import_string

    again = import_string(classpath)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert again.check == trigger.check


def test_fresh_table_fires_at_once(wh, warehouse_conn_id):
    wh.execute("insert into raw.events (loaded_at) values (now() - interval '5 minutes')")
    event = asyncio.run(first_event(make(warehouse_conn_id)))
    assert event.payload["status"] == "fresh"
    assert 290 <= event.payload["result"]["lag_seconds"] <= 360


def test_warn_is_a_success_event(wh, warehouse_conn_id):
    wh.execute("insert into raw.events (loaded_at) values (now() - interval '45 minutes')")
    event = asyncio.run(first_event(make(warehouse_conn_id)))
    assert event.payload["status"] == "warn"


def test_stale_table_polls_until_timeout_then_reports_the_breach(wh, warehouse_conn_id):
    wh.execute("insert into raw.events (loaded_at) values (now() - interval '2 hours')")
    started = time.monotonic()
    event = asyncio.run(first_event(make(warehouse_conn_id, timeout_at=time.time() + 1.5)))
    elapsed = time.monotonic() - started
    assert event.payload["status"] == "error" and event.payload["timed_out"] is True
    assert event.payload["result"]["status"] == "error"
    assert 7100 <= event.payload["result"]["lag_seconds"] <= 7300
    assert elapsed >= 1.4


def test_trigger_sees_data_that_arrives_while_it_waits(wh, warehouse_conn_id, pg_cluster, pg_db):
    wh.execute("insert into raw.events (loaded_at) values (now() - interval '3 hours')")

    async def scenario():
        trigger_task = asyncio.create_task(first_event(make(warehouse_conn_id)))
        await asyncio.sleep(1.0)
        assert not trigger_task.done(), "the trigger must keep polling while the table is stale"
        async with await psycopg.AsyncConnection.connect(pg_cluster.dsn(pg_db), autocommit=True) as aconn:
            await aconn.execute("insert into raw.events (loaded_at) values (now())")
        return await trigger_task

    event = asyncio.run(scenario())
    assert event.payload["status"] == "fresh"
    assert event.payload["result"]["lag_seconds"] < 30


def test_empty_table_waits_then_times_out(wh, warehouse_conn_id):
    event = asyncio.run(first_event(make(warehouse_conn_id, timeout_at=time.time() + 0.5)))
    assert event.payload["status"] == "error"
    assert event.payload["result"]["max_loaded_at"] is None


def test_missing_column_is_a_failed_event_at_once(wh, warehouse_conn_id):
    started = time.monotonic()
    event = asyncio.run(first_event(make(warehouse_conn_id, timestamp_column="updated_at")))
    assert event.payload["status"] == "failed"
    assert "raw.events" in event.payload["message"] and "'updated_at'" in event.payload["message"]
    assert time.monotonic() - started < 10


def test_unreachable_database_times_out_with_the_last_error(warehouse_conn_id):
    from devstack.airflow_env import register_connection, unregister_connection
    from devstack.pg import free_port

    register_connection("fresh_down", host="127.0.0.1", port=free_port(), schema="x", extra={"connect_timeout": 1})
    try:
        event = asyncio.run(first_event(make("fresh_down", timeout_at=time.time() + 1.0)))
    finally:
        unregister_connection("fresh_down")
    assert event.payload["status"] == "error" and event.payload["result"] is None
    assert event.payload["last_error"]
