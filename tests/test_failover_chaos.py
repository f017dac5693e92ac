"""Ride-through: a load keeps writing while the primary is SIGKILLed; after the failover it completes with
exactly the expected rows, and the health sensor goes healthy -> unhealthy -> healthy across the event."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook
from airflow_provider_dataeng.sensors.failover_health import PostgresFailoverHealthSensor
from tests.support.airflow_env import unregister_connection
from tests.support.formation import (
    Formation,
    register_formation_connection,
    register_monitor_connection,
    shared_formation,
)

pytestmark = pytest.mark.slow

BATCHES = 30
ROWS_PER_BATCH = 500
CRASH_AFTER_BATCH = 8


@pytest.fixture(scope="module")
def formation() -> Formation:
    f = shared_formation()
    f.wait_until_stable(timeout=180)
    return f


def _compress(values: list[bool]) -> list[bool]:
    out: list[bool] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


def test_hook_load_rides_through_a_primary_crash(formation: Formation) -> None:
    tag = uuid.uuid4().hex[:8]
    conn_id = register_formation_connection(f"ride_{tag}", formation, connect_deadline=240)
    monitor_conn_id = register_monitor_connection(f"ride_monitor_{tag}", formation)
    table = sql.Identifier(f"ride_through_{tag}")
    hook = FailoverPostgresHook(postgres_conn_id=conn_id)
    sensor = PostgresFailoverHealthSensor(task_id="failover_health", monitor_conn_id=monitor_conn_id)
    health: list[bool] = []
    errors: list[BaseException] = []
    finished_batches: list[tuple[int, float]] = []
    crash_now = threading.Event()

    def poke() -> bool:
        healthy = bool(sensor.poke({}).is_done)
        health.append(healthy)
        return healthy

    hook.run_with_reconnect(
        lambda conn: conn.execute(
            sql.SQL("create table {} (batch int not null, seq int not null, payload text not null)").format(table)
        )
    )

    def load() -> None:
        try:
            for batch in range(BATCHES):

                def write_batch(conn: Any, batch: int = batch) -> None:
                    # idempotent as a whole: a retry after an ambiguous commit replaces, never duplicates
                    conn.execute(sql.SQL("delete from {} where batch = %s").format(table), (batch,))
                    conn.execute(
                        sql.SQL(
                            "insert into {} select %s, g, md5(g::text) from generate_series(1, %s) g"
                        ).format(table),
                        (batch, ROWS_PER_BATCH),
                    )

                hook.run_with_reconnect(write_batch, max_attempts=30, deadline=300, description=f"batch {batch}")
                finished_batches.append((batch, time.monotonic()))
                if batch == CRASH_AFTER_BATCH:
                    crash_now.set()
                time.sleep(0.2)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
            crash_now.set()

    assert poke(), "formation must start healthy"
    loader = threading.Thread(target=load, name="ride-through-load", daemon=True)
    loader.start()
    crashed = None
    try:
        assert crash_now.wait(timeout=120)
        assert not errors, errors
        crashed = formation.crash_primary()
        crash_at = time.monotonic()
        # The monitor notices and fails over; the sensor must see the outage.
        deadline = time.monotonic() + 120
        while poke() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not health[-1], "the sensor never reported the crashed primary"
        formation.wait_for_state(
            lambda states: any(s["name"] != crashed.name and s["reported_state"] in ("wait_primary", "primary")
                               for s in states),
            timeout=180,
        )
        assert not poke()  # new primary in wait_primary, old one down: not healthy yet
        formation.start_node(crashed)  # the crashed host comes back and rejoins as a secondary
        formation.wait_until_stable(timeout=180)
        deadline = time.monotonic() + 60
        while not poke() and time.monotonic() < deadline:
            time.sleep(0.5)
        loader.join(timeout=300)
        assert not loader.is_alive(), "the load did not finish"
        assert not errors, errors
    finally:
        if crashed is not None:
            formation.start_node(crashed)
        formation.wait_until_stable(timeout=180)
        unregister_connection(conn_id)
        unregister_connection(monitor_conn_id)

    assert _compress(health) == [True, False, True], health
    assert any(at > crash_at for _, at in finished_batches), "no batch was written after the crash"
    assert formation.primary().name != crashed.name

    count_sql = sql.SQL("select count(*), count(distinct (batch, seq)), count(distinct batch) from {}").format(table)
    expected = (BATCHES * ROWS_PER_BATCH, BATCHES * ROWS_PER_BATCH, BATCHES)
    with hook.connection_scope() as conn:
        assert conn.execute(count_sql).fetchone() == expected
        per_batch = conn.execute(
            sql.SQL("select batch, count(*) from {} group by batch having count(*) <> %s").format(table),
            (ROWS_PER_BATCH,),
        ).fetchall()
        assert per_batch == []
        lsn = conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]
    # The old primary rejoined (pg_rewind if it had diverged) and serves exactly the same rows.
    standby_dsn = crashed.dsn(formation.dbname, connect_timeout=3)
    with psycopg.connect(standby_dsn, autocommit=True) as standby:
        assert standby.execute("select pg_is_in_recovery()").fetchone()[0] is True
        deadline = time.monotonic() + 60
        while not standby.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            assert time.monotonic() < deadline, "rejoined node did not catch up"
            time.sleep(0.2)
        assert standby.execute(count_sql).fetchone() == expected


SOURCE_ROWS = 300_000


def test_extract_rides_through_a_primary_crash(formation: Formation, source_cluster, source_db) -> None:
    """IdempotentExtractOperator (source: a plain cluster) into the formation; the primary is SIGKILLed
    mid-COPY. The interrupted run fails on the lost connection; its retry (what Airflow's task retry does)
    waits for the new primary and publishes exactly the source rows, with no leftovers."""
    from datetime import datetime, timezone

    from tests.support.airflow_env import register_cluster_connection
    from tests.support.extract import run_extract

    tag = uuid.uuid4().hex[:8]
    source_cluster.psql(
        f"""create table orders (id bigint primary key, customer_id int, amount numeric(12,2), note text);
            insert into orders select g, g % 1000, (g % 10000) / 100.0, md5(g::text)
            from generate_series(1, {SOURCE_ROWS}) g""",
        source_db,
    )
    source_conn_id = register_cluster_connection(f"ride_src_{tag}", source_cluster, source_db)
    target_conn_id = register_formation_connection(f"ride_wh_{tag}", formation, connect_deadline=240)
    target = f"raw.ride_orders_{tag}"
    params = {"source_conn_id": source_conn_id, "target_conn_id": target_conn_id, "source_table": "orders",
              "target_table": target, "task_id": "extract_orders"}
    d1, d2 = datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 2, tzinfo=timezone.utc)
    crashed = None
    try:
        assert run_extract(d1, **params)["status"] == "published"
        primary = formation.primary()
        crash_done = threading.Event()
        copied_at_crash: list[int] = []

        def crash_mid_copy() -> None:
            nonlocal crashed
            try:
                with psycopg.connect(primary.dsn(formation.dbname), autocommit=True) as conn:
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline:
                        row = conn.execute(
                            "select tuples_processed from pg_stat_progress_copy "
                            "where command = 'COPY FROM' and tuples_processed >= 10000"
                        ).fetchone()
                        if row:
                            copied_at_crash.append(int(row[0]))
                            break
                        time.sleep(0.01)
                formation.crash_node(primary)
                crashed = primary
            finally:
                crash_done.set()

        killer = threading.Thread(target=crash_mid_copy, daemon=True)
        killer.start()
        with pytest.raises(Exception) as info:  # noqa: B017 - any error of the interrupted attempt
            run_extract(d2, **params)
        assert crash_done.wait(timeout=130)
        assert crashed is not None and copied_at_crash, "the COPY was not interrupted by the crash"
        assert copied_at_crash[0] < SOURCE_ROWS
        assert isinstance(info.value, psycopg.Error) or "connection" in str(info.value).lower(), info.value

        retried = run_extract(d2, **params)  # Airflow's retry: connects once the new primary serves writes
        assert retried["status"] == "published" and retried["rows"] == SOURCE_ROWS, retried
        assert formation.primary().name != crashed.name
    finally:
        if crashed is not None:
            formation.start_node(crashed)
        formation.wait_until_stable(timeout=180)
        unregister_connection(target_conn_id)
        unregister_connection(source_conn_id)

    uri = formation.formation_uri.replace("postgres://", "postgres://postgres@", 1)
    with psycopg.connect(uri) as conn:
        schema, table = target.split(".")
        per_interval = conn.execute(
            sql.SQL("select _interval_start, count(*), count(distinct id) from {} group by 1 order by 1").format(
                sql.Identifier(schema, table)
            )
        ).fetchall()
        assert [(r[0], r[1], r[2]) for r in per_interval] == [
            (d1, SOURCE_ROWS, SOURCE_ROWS), (d2, SOURCE_ROWS, SOURCE_ROWS)
        ]
        leftovers = conn.execute(
            "select relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = %s and relname like %s and relname like '%%staging%%'",
            (schema, f"ride_orders_{tag}%"),
        ).fetchall()
        assert leftovers == []
