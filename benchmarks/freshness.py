"""Freshness benchmark: the cost of one FreshnessSensor poke on a 10M-row table with an index on the column.

Run: ``.venv/bin/python benchmarks/freshness.py [--rows 10000000] [--pokes 200]``. Starts a throwaway
cluster, fills ``raw.events`` with ``generate_series`` (one row per second back from now), builds a btree
index on ``loaded_at``, VACUUM ANALYZE, then in one run measures:

- the probe's plan (``EXPLAIN``): uses_index = an index scan on the ``loaded_at`` index, no Seq Scan;
- ``poke_ms``: median wall time of a poke as ``FreshnessSensor.poke`` does it in poke mode: the probe
  query on the connection the sensor keeps for its wait, plus evaluating the SLA (the deferred trigger
  also keeps its connection, so its polls cost the same);
- for comparison (progress lines only): the first poke (connection lookup + connect), a poke on a new
  connection every time (reschedule mode), and the same probe with index scans disabled (what a poke
  would cost without the index: a full scan).

The last line is one JSON object: ``{"rows": .., "poke_ms": .., "uses_index": true|false}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from devstack.airflow_env import configure_airflow_home, register_cluster_connection
from devstack.pg import PgCluster

configure_airflow_home(Path(tempfile.mkdtemp(prefix="dataeng-bench-airflow-")))


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median_ms(fn, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--pokes", type=int, default=200)
    args = parser.parse_args()

    import psycopg
    from psycopg import sql

    from airflow_provider_dataeng.connections import connect
    from airflow_provider_dataeng.freshness import (
        FreshnessCheck,
        FreshnessQuery,
        FreshnessSLA,
        ProbeSession,
        parse_duration,
    )
    from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

    cluster = PgCluster.create(
        "bench-freshness", settings={"maintenance_work_mem": "'256MB'", "max_wal_size": "'4GB'"}
    )
    try:
        cluster.create_database("warehouse")
        dsn = cluster.dsn("warehouse")
        t0 = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("create schema raw")
            conn.execute("create table raw.events (id bigint, kind text, loaded_at timestamptz not null)")
            conn.execute(
                "insert into raw.events select g, case when g %% 10 = 0 then 'refund' else 'order' end,"
                " now() - (%s - g) * interval '1 second' from generate_series(1, %s) g",
                [args.rows, args.rows],
            )
            say(f"loaded {args.rows:,} rows in {time.perf_counter() - t0:.1f}s")
            t1 = time.perf_counter()
            conn.execute("create index events_loaded_at on raw.events (loaded_at)")
            conn.execute("vacuum analyze raw.events")
            say(f"index + vacuum analyze in {time.perf_counter() - t1:.1f}s")
            rows = conn.execute("select count(*) from raw.events").fetchone()[0]

        query = FreshnessQuery(schema="raw", table="events", timestamp_column="loaded_at")
        with psycopg.connect(dsn, autocommit=True) as conn:
            plan = [r[0] for r in conn.execute(sql.SQL("explain ") + query.sql()).fetchall()]
        say("EXPLAIN " + query.sql().as_string(None) + "\n    " + "\n    ".join(plan))
        plan_text = "\n".join(plan)
        uses_index = "events_loaded_at" in plan_text and "Index" in plan_text and "Seq Scan" not in plan_text

        register_cluster_connection("bench_wh", cluster, "warehouse")
        check = FreshnessCheck(query, FreshnessSLA(warn_after=parse_duration("1h", field="warn_after")))

        def new_hook() -> FailoverPostgresHook:
            return connect("bench_wh", role="warehouse")

        session = ProbeSession(new_hook())
        t2 = time.perf_counter()
        result = session.run(check)
        say(f"first poke (connection lookup + connect + query): {(time.perf_counter() - t2) * 1000:.2f} ms; "
            f"{result.message()}")
        for _ in range(10):  # warm-up
            session.run(check)
        poke_ms = median_ms(lambda: session.run(check), args.pokes)
        session.close()
        say(f"poke (FreshnessSensor.poke's probe on its kept connection): median {poke_ms:.3f} ms "
            f"over {args.pokes} pokes")
        fresh_ms = median_ms(lambda: check.run(new_hook()), max(20, args.pokes // 5))
        say(f"poke on a new connection each time (reschedule mode: lookup + connect + query): median "
            f"{fresh_ms:.2f} ms")

        # Without the index (index scans disabled for this session; prepare=False so no cached plan is reused).
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
            conn.execute("set enable_indexscan = off")
            conn.execute("set enable_indexonlyscan = off")
            conn.execute("set enable_bitmapscan = off")
            stmt = query.sql()
            scan_plan = " / ".join(r[0].strip() for r in conn.execute(sql.SQL("explain ") + stmt).fetchall())
            scan_ms = median_ms(lambda: conn.execute(stmt).fetchone(), 5)
        say(f"same probe without the index ({'Seq Scan' if 'Seq Scan' in scan_plan else scan_plan}): median "
            f"{scan_ms:.1f} ms = {scan_ms / max(poke_ms, 1e-6):,.0f}x the indexed poke")
    finally:
        cluster.destroy()

    print(json.dumps({"rows": rows, "poke_ms": round(poke_ms, 2), "uses_index": uses_index}))


if __name__ == "__main__":
    main()
