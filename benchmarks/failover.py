"""Benchmark: how long after a primary crash do writes work again, for pg_auto_failover and for our hook?

Run: ``.venv/bin/python benchmarks/failover.py``. Starts its own pg_auto_failover formation (monitor + 2
nodes, pg_auto_failover 2.0 default timeouts) via :mod:`devstack.formation`, and tears it down.

At ``t0`` the primary is crashed (SIGKILL of its pg_autoctl and Postgres). Measured from ``t0``:

- ``rw_available_s``: a tight raw client loop (psycopg connect with the multi-host URI and
  ``target_session_attrs=read-write``, ``connect_timeout=1``, one INSERT, retry every 0.1 s) writes on
  the new primary: when pg_auto_failover serves read-write again.
- ``hook_write_s``: a loop of ``FailoverPostgresHook.run_with_reconnect`` INSERTs, with the hook's
  default settings (connect backoff capped at 2 s), gets its first write onto the new primary.
- ``sensor_healthy_s``: the health check the sensor runs (monitor path, default criteria: one primary,
  one secondary, all good) says healthy again. The crashed node is restarted as soon as read-write is back
  (the host "comes back"), and rejoins as a secondary, so this includes its rejoin.
- ``extra_delay_s = hook_write_s - rw_available_s``: what our hook adds. Target <= 5.

The same loop with a 30 s backoff cap is measured too and printed for comparison. Every
write a client saw acknowledged is checked to be present afterwards (no acknowledged write lost).

Last line: ``{"rw_available_s": .., "hook_write_s": .., "sensor_healthy_s": .., "extra_delay_s": ..}``.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from devstack.airflow_env import configure_airflow_home
from devstack.formation import (
    Formation,
    register_formation_connection,
    register_monitor_connection,
)

configure_airflow_home(Path(tempfile.mkdtemp(prefix="dataeng-bench-home-")))

import psycopg  # noqa: E402

from airflow_provider_dataeng.connections import connect  # noqa: E402
from airflow_provider_dataeng.failover import FailoverHealthCheck, HealthCriteria  # noqa: E402
from airflow_provider_dataeng.hooks.postgres import (  # noqa: E402
    FailoverPostgresHook,
)

LONG_BACKOFF_MAX_S = 30.0
MEASURE_TIMEOUT_S = 300.0


def log(message: str) -> None:
    print(f"[failover-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_hook(conn_id: str, backoff_max: float | None) -> FailoverPostgresHook:
    """The hook as users get it (``backoff_max=None``: default cap) or with an explicit cap."""
    return connect(conn_id, role="warehouse", connect_backoff_max=backoff_max)


class Writer(threading.Thread):
    """Writes one row at a time; records (finish time, server port, id) of every acknowledged write."""

    def __init__(self, name: str, write: Any) -> None:
        super().__init__(name=name, daemon=True)
        self.write = write
        self.acked: list[tuple[float, int, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                port, row_id = self.write()
                self.acked.append((time.monotonic(), port, row_id))
            except Exception:  # noqa: BLE001 - a failed write is just not acknowledged
                pass
            time.sleep(0.1)

    def first_write_after(self, t0: float, not_port: int) -> float | None:
        for at, port, _ in self.acked:
            if at > t0 and port != not_port:
                return at - t0
        return None


def main() -> None:
    tag = uuid.uuid4().hex[:6]
    log("starting a pg_auto_failover formation (monitor + 2 nodes)")
    t_start = time.monotonic()
    with Formation("bench-failover") as formation:
        log(f"formation up in {time.monotonic() - t_start:.1f}s: {formation.describe_states()}")
        conn_id = register_formation_connection(f"bench_wh_{tag}", formation, connect_deadline=MEASURE_TIMEOUT_S)
        monitor_conn_id = register_monitor_connection(f"bench_monitor_{tag}", formation)
        uri = formation.formation_uri.replace("postgres://", "postgres://postgres@", 1)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("create table bench_writes (id bigserial primary key, writer text not null, "
                         "at timestamptz not null default clock_timestamp())")
        insert = "insert into bench_writes (writer) values (%s) returning inet_server_port(), id"

        def raw_write() -> tuple[int, int]:
            with psycopg.connect(uri, connect_timeout=1, autocommit=True) as conn:
                row = conn.execute(insert, ("raw",)).fetchone()
                assert row is not None
                return int(row[0]), int(row[1])

        def hook_writer(label: str, hook: FailoverPostgresHook) -> Any:
            def write() -> tuple[int, int]:
                row = hook.run_with_reconnect(
                    lambda conn: conn.execute(insert, (label,)).fetchone(), max_attempts=100,
                    deadline=MEASURE_TIMEOUT_S, description=f"{label} write",
                )
                return int(row[0]), int(row[1])

            return write

        writers = {
            "raw": Writer("raw", raw_write),
            "hook": Writer("hook", hook_writer("hook", make_hook(conn_id, None))),
            "hook_stock": Writer("hook_stock", hook_writer("hook_stock", make_hook(conn_id, LONG_BACKOFF_MAX_S))),
        }
        for writer in writers.values():
            writer.start()
        check = FailoverHealthCheck(criteria=HealthCriteria(), monitor_conn_id=monitor_conn_id)
        assert check.evaluate().healthy, "formation must start healthy"
        time.sleep(2.0)  # every writer is writing

        crashed = formation.primary()
        log(f"t0: SIGKILL primary {crashed.name} (port {crashed.port})")
        t0 = time.monotonic()
        formation.crash_node(crashed)

        rw_available = hook_write = sensor_healthy = None
        seen_unhealthy = False
        restarted = False
        stock_write = None
        while time.monotonic() - t0 < MEASURE_TIMEOUT_S:
            rw_available = rw_available or writers["raw"].first_write_after(t0, crashed.port)
            hook_write = hook_write or writers["hook"].first_write_after(t0, crashed.port)
            stock_write = stock_write or writers["hook_stock"].first_write_after(t0, crashed.port)
            if rw_available is not None and not restarted:
                log(f"read-write back after {rw_available:.1f}s; restarting {crashed.name} (it rejoins)")
                formation.start_node(crashed)
                restarted = True
            if sensor_healthy is None:
                try:
                    verdict = check.evaluate()
                except Exception as exc:  # noqa: BLE001 - the monitor stays up; report and go on
                    log(f"health check failed: {exc}")
                else:
                    if not verdict.healthy and not seen_unhealthy:
                        seen_unhealthy = True
                        log(f"sensor unhealthy after {time.monotonic() - t0:.1f}s: {verdict.summary()}")
                    elif verdict.healthy and seen_unhealthy:
                        sensor_healthy = time.monotonic() - t0
                        log(f"sensor healthy after {sensor_healthy:.1f}s")
            if None not in (rw_available, hook_write, sensor_healthy, stock_write):
                break
            time.sleep(0.25)
        for writer in writers.values():
            writer.halt.set()
        for writer in writers.values():
            writer.join(timeout=MEASURE_TIMEOUT_S)
        if None in (rw_available, hook_write, sensor_healthy):
            raise SystemExit(
                f"did not recover within {MEASURE_TIMEOUT_S:.0f}s: rw={rw_available} hook={hook_write} "
                f"sensor={sensor_healthy}; {formation.describe_states()}"
            )
        log(f"hook with a 30 s backoff cap wrote after {stock_write:.1f}s" if stock_write else
            "hook with a 30 s backoff cap did not write in time")

        acked = {row_id for w in writers.values() for _, _, row_id in w.acked}
        with psycopg.connect(uri, autocommit=True) as conn:
            present = {r[0] for r in conn.execute("select id from bench_writes").fetchall()}
        lost = acked - present
        log(f"{len(acked)} acknowledged writes, {len(lost)} lost after the failover")
        log("final states: " + "; ".join(
            f"{e['name']}={e['reported_state']}" for e in formation.states()
        ))

    result = {
        "rw_available_s": round(rw_available, 2),
        "hook_write_s": round(hook_write, 2),
        "sensor_healthy_s": round(sensor_healthy, 2),
        "extra_delay_s": round(hook_write - rw_available, 2),
    }
    if lost:
        log(f"ERROR: acknowledged writes lost: {sorted(lost)[:10]}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
