"""Dashboard benchmark: the per-request "did the ledger change?" check, on a large ledger.

Run: ``.venv/bin/python benchmarks/dashboard_version.py [--rows 1000000] [--repeat 21]``.
Starts a throwaway warehouse cluster and fills ``dataeng.load_ledger`` with ``rows`` rows (100 pipelines x 4
targets x daily intervals). Then, in one run, interleaved:

- ``count_version_ms``: median time of the former check, ``select max(id), count(*)`` (reads the whole ledger);
- ``version_ms``: median time of :meth:`LoadsCache.version` (index lookups of ``max(id)``/``min(id)`` and of
  the remembered id gaps, the table's file node and deleted-rows counter), after one first call;
- ``first_version_ms``: that first call (it also looks for id gaps among the newest ids);
- ``ratio``: ``count_version_ms / version_ms``.

Each check runs on the same open connection, as the API server's pooled connection does. Last line:
``{"rows": .., "count_version_ms": .., "version_ms": .., "first_version_ms": .., "ratio": ..}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone

import psycopg

from airflow_provider_dataeng.dashboard.loads_cache import LoadsCache
from airflow_provider_dataeng.publish.ledger import ensure_ledger
from devstack.pg import PgCluster


def _ms(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    days = max(1, args.rows // 400)
    cluster = PgCluster.create("bench-dash-version")
    try:
        cluster.create_database("wh")
        with psycopg.connect(cluster.dsn("wh"), autocommit=True) as conn:
            ensure_ledger(conn)
            t0 = time.perf_counter()
            conn.execute(
                """insert into dataeng.load_ledger (pipeline, task_id, target_schema, target_table, partition_start,
                       partition_end, run_id, mode, rows, status, started_at, finished_at)
                   select 'pipe_' || p, 'extract', 'raw', 't_' || p || '_' || t, %(t0)s + d * interval '1 day',
                          %(t0)s + (d + 1) * interval '1 day', 'scheduled__' || d, 'partition_swap', 10,
                          'published', now(), now()
                   from generate_series(0, %(d)s - 1) d, generate_series(1, 100) p, generate_series(1, 4) t""",
                {"t0": datetime(2000, 1, 1, tzinfo=timezone.utc), "d": days})
            conn.execute("vacuum analyze dataeng.load_ledger")
            rows = conn.execute("select count(*) from dataeng.load_ledger").fetchone()[0]
            print(f"ledger: {rows} rows in {time.perf_counter() - t0:.1f} s", flush=True)
        with psycopg.connect(cluster.dsn("wh")) as conn:  # a pooled connection: not autocommit
            cache = LoadsCache()

            def old() -> None:
                conn.execute("select coalesce(max(id), 0), count(*) from dataeng.load_ledger").fetchone()
                conn.rollback()

            def new() -> None:
                cache.version(conn, "wh")
                conn.rollback()

            first = _ms(new)
            olds, news = [], []
            for _ in range(args.repeat):
                olds.append(_ms(old))
                news.append(_ms(new))
            result = {"rows": rows, "count_version_ms": round(statistics.median(olds), 2),
                      "version_ms": round(statistics.median(news), 2), "first_version_ms": round(first, 2)}
            result["ratio"] = round(result["count_version_ms"] / max(result["version_ms"], 0.01), 1)
        print(json.dumps(result))
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
