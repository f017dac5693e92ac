"""Ride-through: loads keep writing while the formation's primary is SIGKILLed.

One failover event (the costly part: ~50 s with pg_auto_failover's default timeouts) serves every test of
this module. While it happens:

- a hook-level load (``FailoverPostgresHook.run_with_reconnect``, idempotent batches, multi-host
  connection with ``target_session_attrs=read-write``) keeps writing batches;
- an ``IdempotentExtractOperator`` run (source: a plain cluster) is in the middle of its COPY into the
  formation when the primary dies; it fails on the lost connection and is retried, as Airflow would;
- the health sensor is poked throughout.

The crashed node is restarted once the new primary serves writes and rejoins as a secondary.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook
from airflow_provider_dataeng.sensors.failover_health import PostgresFailoverHealthSensor
from devstack.airflow_env import register_cluster_connection, unregister_connection
from devstack.formation import (
    Formation,
    FormationNode,
    register_formation_connection,
    register_monitor_connection,
    shared_formation,
)
from tests.fixtures.extract import run_extract

pytestmark = pytest.mark.slow

BATCHES = 30
ROWS_PER_BATCH = 500
SOURCE_ROWS = 300_000
D1 = datetime(2024, 1, 1, tzinfo=timezone.utc)
D2 = datetime(2024, 1, 2, tzinfo=timezone.utc)


@dataclass
class RideThrough:
    """What happened during the failover event."""

    formation: Formation
    crashed: FormationNode
    crash_at: float
    load_table: sql.Identifier
    target_table: str
    health: list[bool] = field(default_factory=list)
    batch_finished_at: list[float] = field(default_factory=list)
    load_errors: list[BaseException] = field(default_factory=list)
    copied_at_crash: int | None = None
    interrupted_error: BaseException | None = None
    retried: dict[str, Any] | None = None
    first_extract: dict[str, Any] | None = None

    def writer_uri(self) -> str:
        return self.formation.formation_uri.replace("postgres://", "postgres://postgres@", 1)


def _compress(values: list[bool]) -> list[bool]:
    out: list[bool] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


def _wait_for_copy(node: FormationNode, dbname: str, min_tuples: int, timeout: float) -> int | None:
    """Tuples processed by a ``COPY FROM`` on ``node`` once it passed ``min_tuples`` (None on timeout)."""
    with psycopg.connect(node.dsn(dbname), autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = conn.execute(
                "select tuples_processed from pg_stat_progress_copy where command = 'COPY FROM' "
                "and tuples_processed >= %s", (min_tuples,),
            ).fetchone()
            if row:
                return int(row[0])
            time.sleep(0.01)
    return None


@pytest.fixture(scope="module")
def ride_through(source_cluster) -> Iterator[RideThrough]:
    formation = shared_formation()
    formation.wait_until_stable(timeout=180)
    tag = uuid.uuid4().hex[:8]
    source_db = source_cluster.create_database(f"ride_src_{tag}")
    source_cluster.psql(
        f"""create table orders (id bigint primary key, customer_id int, amount numeric(12,2), note text);
            insert into orders select g, g % 1000, (g % 10000) / 100.0, md5(g::text)
            from generate_series(1, {SOURCE_ROWS}) g""",
        source_db,
    )
    conn_ids = [
        register_formation_connection(f"ride_wh_{tag}", formation, connect_deadline=240),
        register_monitor_connection(f"ride_monitor_{tag}", formation),
        register_cluster_connection(f"ride_src_{tag}", source_cluster, source_db),
    ]
    wh_conn_id, monitor_conn_id, source_conn_id = conn_ids
    hook = FailoverPostgresHook(postgres_conn_id=wh_conn_id)
    sensor = PostgresFailoverHealthSensor(task_id="failover_health", monitor_conn_id=monitor_conn_id)
    extract_params = {"source_conn_id": source_conn_id, "target_conn_id": wh_conn_id, "source_table": "orders",
                      "target_table": f"raw.ride_orders_{tag}", "task_id": "extract_orders"}
    load_table = sql.Identifier(f"ride_through_{tag}")
    primary = formation.primary()
    event = RideThrough(formation=formation, crashed=primary, crash_at=0.0, load_table=load_table,
                        target_table=extract_params["target_table"])

    def poke() -> bool:
        healthy = bool(sensor.poke({}).is_done)
        event.health.append(healthy)
        return healthy

    hook.run_with_reconnect(lambda conn: conn.execute(
        sql.SQL("create table {} (batch int not null, seq int not null, payload text not null)").format(load_table)
    ))
    event.first_extract = run_extract(D1, **extract_params)
    batches_started = threading.Event()

    def load() -> None:
        try:
            for batch in range(BATCHES):

                def write_batch(conn: Any, batch: int = batch) -> None:
                    # idempotent as a whole: a retry after an ambiguous commit replaces, never duplicates
                    conn.execute(sql.SQL("delete from {} where batch = %s").format(load_table), (batch,))
                    conn.execute(
                        sql.SQL("insert into {} select %s, g, md5(g::text) from generate_series(1, %s) g").format(
                            load_table
                        ),
                        (batch, ROWS_PER_BATCH),
                    )

                hook.run_with_reconnect(write_batch, max_attempts=30, deadline=300, description=f"batch {batch}")
                event.batch_finished_at.append(time.monotonic())
                if batch == 3:
                    batches_started.set()
                time.sleep(0.3)
        except BaseException as exc:  # asserted by the tests
            event.load_errors.append(exc)
        finally:
            batches_started.set()

    def crash_mid_copy() -> None:
        try:
            event.copied_at_crash = _wait_for_copy(primary, formation.dbname, 10_000, timeout=120)
        finally:
            event.crash_at = time.monotonic()
            formation.crash_node(primary)

    # The first extract wrote ~20 MiB of WAL: the monitor may briefly see the secondary's last reported LSN
    # behind the primary's (keepers report every second). The sensor waits for that; so do we.
    deadline = time.monotonic() + 60
    while not poke() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert event.health[-1], "formation must start healthy"
    event.health[:] = [True]
    loader = threading.Thread(target=load, name="ride-through-load", daemon=True)
    loader.start()
    try:
        assert batches_started.wait(timeout=120)
        killer = threading.Thread(target=crash_mid_copy, daemon=True)
        killer.start()
        try:
            run_extract(D2, **extract_params)
        except Exception as exc:  # noqa: BLE001 - the interrupted attempt; asserted by a test
            event.interrupted_error = exc
        killer.join(timeout=130)
        # The monitor notices and fails over; the sensor must see the outage.
        deadline = time.monotonic() + 120
        while poke() and time.monotonic() < deadline:
            time.sleep(0.5)
        # Airflow's retry of the extract: its connect waits until the new primary serves writes.
        retry = threading.Thread(target=lambda: setattr(event, "retried", run_extract(D2, **extract_params)),
                                 daemon=True)
        retry.start()
        formation.wait_for_state(
            lambda states: any(s["name"] != primary.name and s["reported_state"] in ("wait_primary", "primary")
                               for s in states),
            timeout=180,
        )
        poke()
        formation.start_node(primary)  # the crashed host comes back and rejoins as a secondary
        formation.wait_until_stable(timeout=180)
        deadline = time.monotonic() + 60
        while not poke() and time.monotonic() < deadline:
            time.sleep(0.5)
        loader.join(timeout=300)
        retry.join(timeout=300)
        yield event
    finally:
        formation.start_node(primary)
        formation.wait_until_stable(timeout=180)
        for conn_id in conn_ids:
            unregister_connection(conn_id)
        source_cluster.drop_database(source_db)


def test_hook_load_has_exactly_the_expected_rows(ride_through: RideThrough) -> None:
    assert not ride_through.load_errors, ride_through.load_errors
    assert len(ride_through.batch_finished_at) == BATCHES
    assert any(at > ride_through.crash_at for at in ride_through.batch_finished_at), "no batch after the crash"
    assert any(at < ride_through.crash_at for at in ride_through.batch_finished_at), "no batch before the crash"
    table = ride_through.load_table
    with psycopg.connect(ride_through.writer_uri()) as conn:
        counts = conn.execute(
            sql.SQL("select count(*), count(distinct (batch, seq)), count(distinct batch) from {}").format(table)
        ).fetchone()
        assert counts == (BATCHES * ROWS_PER_BATCH, BATCHES * ROWS_PER_BATCH, BATCHES)
        assert conn.execute(
            sql.SQL("select batch from {} group by batch having count(*) <> %s").format(table), (ROWS_PER_BATCH,)
        ).fetchall() == []


def test_health_sensor_goes_healthy_unhealthy_healthy(ride_through: RideThrough) -> None:
    assert _compress(ride_through.health) == [True, False, True], ride_through.health
    assert ride_through.formation.primary().name != ride_through.crashed.name


def test_extract_interrupted_mid_copy_then_retry_is_exact(ride_through: RideThrough) -> None:
    assert ride_through.first_extract is not None and ride_through.first_extract["status"] == "published"
    assert ride_through.copied_at_crash is not None, "the primary was not crashed during the extract's COPY"
    assert ride_through.interrupted_error is not None, "the interrupted extract did not fail"
    assert ride_through.retried is not None, "the extract retry did not finish"
    assert ride_through.retried["status"] == "published" and ride_through.retried["rows"] == SOURCE_ROWS
    schema, table = ride_through.target_table.split(".")
    with psycopg.connect(ride_through.writer_uri()) as conn:
        per_interval = conn.execute(
            sql.SQL("select _interval_start, count(*), count(distinct id) from {} group by 1 order by 1").format(
                sql.Identifier(schema, table)
            )
        ).fetchall()
        assert per_interval == [(D1, SOURCE_ROWS, SOURCE_ROWS), (D2, SOURCE_ROWS, SOURCE_ROWS)]
        leftovers = conn.execute(
            "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relname like %s and c.relname like '%%staging%%'",
            (schema, f"{table}%"),
        ).fetchall()
        assert leftovers == [], leftovers


def test_rejoined_node_serves_the_same_rows(ride_through: RideThrough) -> None:
    """The old primary rejoined (pg_rewind if it had diverged) and has exactly the new primary's data."""
    count_sql = sql.SQL("select count(*), count(distinct (batch, seq)) from {}").format(ride_through.load_table)
    with psycopg.connect(ride_through.writer_uri()) as conn:
        expected = conn.execute(count_sql).fetchone()
        lsn = conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]
    node = ride_through.crashed
    with psycopg.connect(node.dsn(ride_through.formation.dbname, connect_timeout=3), autocommit=True) as standby:
        assert standby.execute("select pg_is_in_recovery()").fetchone()[0] is True
        deadline = time.monotonic() + 60
        while not standby.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            assert time.monotonic() < deadline, "rejoined node did not catch up"
            time.sleep(0.2)
        assert standby.execute(count_sql).fetchone() == expected
