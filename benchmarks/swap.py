"""Benchmark: table swap wall time on a 10k-row and a 5M-row table, and the longest reader stall.

Run: ``.venv/bin/python benchmarks/swap.py`` (about 4 minutes). Starts its own PostgreSQL cluster. A swap is metadata only
(renames + view re-binding + ledger row in one transaction), so its time should not grow with the table:
target ``ratio = swap_ms_large / swap_ms_small <= 2``. ``swap_ms_*`` is the median duration of the swap
transaction over every swap of that table: publishes (staging from a SELECT, checked, swapped in) and
rollbacks (the same transaction exchanging live and ``__previous``, for the large table two 5M-row
tables); the progress lines show publish-only and rollback-only medians. Small and large swaps are
interleaved so both see the same background load. A reader loops a cheap query on the live table
through every swap; its longest single-query wait is ``max_reader_stall_ms`` (target: <= lock_timeout +
100 ms). It includes one contended swap: a long transaction holds a lock on the table for longer than
lock_timeout, so the swap times out, backs off and retries while the reader queues behind it.

Last line: ``{"swap_ms_small": .., "swap_ms_large": .., "ratio": .., "max_reader_stall_ms": ..}``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from devstack.airflow_env import configure_airflow_home, register_cluster_connection
from devstack.pg import running_cluster

configure_airflow_home(Path(tempfile.mkdtemp(prefix="dataeng-bench-home-")))

import psycopg  # noqa: E402

from airflow_provider_dataeng.connections import connect  # noqa: E402
from airflow_provider_dataeng.publish import PublishEngine  # noqa: E402

LOCK_TIMEOUT = 2.0
SMALL, LARGE = 10_000, 5_000_000
ROUNDS, SMALL_PUBLISHES, ROLLBACKS = 3, 3, 4  # per round and size: publishes (large: 1), rollback swaps
SELECT = ("select g::bigint as id, md5(g::text) as payload, (g % 1000)::numeric(10,2) as amount, "
          "timestamptz '2026-01-01' + g * interval '1 second' as created_at from generate_series(1, {n}) g")


def log(message: str) -> None:
    print(f"[swap-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Reader(threading.Thread):
    """Loops a cheap query on the live table; records the longest single-query wall time."""

    def __init__(self, dsn: str, table: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.table = dsn, table
        self.max_stall = 0.0
        self.queries = 0
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            query = psycopg.sql.SQL("select count(*) from (select 1 from {} limit 100) x").format(
                psycopg.sql.Identifier("bench", self.table))
            while not self.halt.is_set():
                started = time.monotonic()
                try:
                    conn.execute(query).fetchone()
                except psycopg.Error as exc:
                    self.errors.append(str(exc))
                self.max_stall = max(self.max_stall, time.monotonic() - started)
                self.queries += 1
                time.sleep(0.002)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


def prepare_live(engine: PublishEngine, dsn: str, table: str, rows: int) -> None:
    """First publish + what a real table carries (PK, index, view, grant), so swaps do the same work."""
    started = time.monotonic()
    engine.publish_table(f"bench.{table}", select_sql=SELECT.format(n=rows))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL(
            "alter table bench.{t} add primary key (id); create index on bench.{t} (created_at); "
            "create view bench.{v} as select amount, count(*) as n from bench.{t} group by amount; "
            "grant select on bench.{t} to bench_reader; grant select on bench.{v} to bench_reader").format(
            t=psycopg.sql.Identifier(table), v=psycopg.sql.Identifier(table + "_by_amount")))
    log(f"bench.{table}: first publish of {rows:,} rows + PK, index, view, grant in {time.monotonic() - started:.1f}s")


def measure(engine: PublishEngine, dsn: str) -> tuple[dict, dict, float]:
    """Interleave small and large swaps (same background load for both); readers on both tables.

    Each round: publishes (staging built from SELECT, checked, swapped) and rollbacks (the same swap
    transaction, exchanging live and ``__previous``: for the large table two 5M-row tables). Returns
    ``{"publish": [ms...], "rollback": [ms...]}`` per size and the longest reader stall.
    """
    readers = [Reader(dsn, "small"), Reader(dsn, "large")]
    for reader in readers:
        reader.start()
    times: dict[str, dict[str, list[float]]] = {t: {"publish": [], "rollback": []} for t in ("small", "large")}
    plan = (("small", SMALL, SMALL_PUBLISHES), ("large", LARGE, 1))
    try:
        for round_ in range(1, ROUNDS + 1):
            for table, rows, publishes in plan:
                for _ in range(publishes):
                    started = time.monotonic()
                    engine.publish_table(f"bench.{table}", select_sql=SELECT.format(n=rows))
                    times[table]["publish"].append(engine.last_swap_seconds * 1000)
                    log(f"round {round_}/{ROUNDS}: bench.{table} ({rows:,} rows) published in "
                        f"{time.monotonic() - started:.1f}s, swap transaction {times[table]['publish'][-1]:.1f} ms")
                for _ in range(ROLLBACKS):
                    engine.rollback(f"bench.{table}")
                    times[table]["rollback"].append(engine.last_swap_seconds * 1000)
                log(f"round {round_}/{ROUNDS}: bench.{table}: {ROLLBACKS} rollback swaps, transaction ms "
                    + ", ".join(f"{t:.1f}" for t in times[table]["rollback"][-ROLLBACKS:]))
    finally:
        for reader in readers:
            reader.stop()
    for reader in readers:
        if reader.errors:
            raise SystemExit(f"reader errors during swaps: {reader.errors[:3]}")
        log(f"reader of bench.{reader.table}: {reader.queries} queries, longest {reader.max_stall * 1000:.1f} ms")
    return times["small"], times["large"], max(r.max_stall for r in readers)


def contended_swap(engine: PublishEngine, dsn: str, table: str) -> float:
    """A transaction holds ACCESS SHARE for 3 s (> lock_timeout): the swap times out, retries, succeeds."""
    reader = Reader(dsn, table)
    holder = psycopg.connect(dsn)
    holder.execute(psycopg.sql.SQL("select count(*) from {}").format(psycopg.sql.Identifier("bench", table)))
    reader.start()
    release = threading.Timer(3.0, holder.close)
    release.start()
    started = time.monotonic()
    try:
        engine.publish_table(f"bench.{table}", select_sql=SELECT.format(n=SMALL))
    finally:
        release.join()
        reader.stop()
    log(f"contended swap: done in {time.monotonic() - started:.1f}s; reader ran {reader.queries} queries, longest "
        f"{reader.max_stall * 1000:.1f} ms (lock_timeout {LOCK_TIMEOUT * 1000:.0f} ms)")
    return reader.max_stall


def main() -> None:
    settings = {"max_wal_size": "4GB", "maintenance_work_mem": "'256MB'", "work_mem": "'64MB'"}
    with running_cluster("swap-bench", settings=settings) as cluster:
        cluster.create_database("bench")
        cluster.psql("create role bench_reader; create schema bench", "bench")
        register_cluster_connection("swap_bench", cluster, "bench")
        dsn = cluster.dsn("bench")
        engine = PublishEngine(connect("swap_bench", role="warehouse"), lock_timeout=LOCK_TIMEOUT,
                               pipeline="benchmark", task_id="swap")
        prepare_live(engine, dsn, "small", SMALL)
        prepare_live(engine, dsn, "large", LARGE)
        small, large, stall = measure(engine, dsn)
        stall_contended = contended_swap(engine, dsn, "small")
    for name, t in (("10k", small), ("5M", large)):
        log(f"{name}: median swap transaction {statistics.median(t['publish']):.1f} ms over {len(t['publish'])} "
            f"publishes, {statistics.median(t['rollback']):.1f} ms over {len(t['rollback'])} rollbacks")
    swap_small = statistics.median(small["publish"] + small["rollback"])
    swap_large = statistics.median(large["publish"] + large["rollback"])
    log(f"median swap transaction: {swap_small:.1f} ms at {SMALL:,} rows, {swap_large:.1f} ms at {LARGE:,} rows; "
        f"reader stall without lock contention: {stall * 1000:.1f} ms")
    print(json.dumps({
        "swap_ms_small": round(swap_small, 2),
        "swap_ms_large": round(swap_large, 2),
        "ratio": round(swap_large / swap_small, 3),
        "max_reader_stall_ms": round(max(stall, stall_contended) * 1000, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
