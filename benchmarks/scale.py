"""Benchmark: cost grows with the interval's work, not with the table's history (issue 14 item 12).

Run: ``.venv/bin/python benchmarks/scale.py`` (a few minutes). Starts its own PostgreSQL cluster.

- (a) ``incremental_id_ratio``: an incremental_id run loading 10k new rows over a history of 10M rows vs
  over 10k rows (``bench_incremental_id``, the extract's part).
- (b) ``publish_3000_vs_10_ratio``: a partition publish (1,000 rows; a new interval and a re-publish of an
  existing one, interleaved) into a table with 3,000 existing daily partitions vs one with 10: median
  wall time of ``PublishEngine.publish_partition`` on the big table / on the small one
  (``bench_publish``).

Target: both <= 2. Last line: ``{"incremental_id_ratio": .., "publish_3000_vs_10_ratio": ..}`` (a part
that is not written yet is left out, never guessed).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from devstack.airflow_env import configure_airflow_home, register_cluster_connection
from devstack.pg import running_cluster

configure_airflow_home(Path(tempfile.mkdtemp(prefix="dataeng-bench-home-")))

from airflow_provider_dataeng.connections import connect  # noqa: E402
from airflow_provider_dataeng.publish import PublishEngine  # noqa: E402

START = datetime(2018, 1, 1, tzinfo=timezone.utc)
SIZES = (10, 3000)  # existing daily partitions
ROUNDS = 7  # per size: one new interval and one re-publish each round
ROWS = 1000
SELECT = ("select g::bigint as id, md5(g::text) as payload, (g % 100)::numeric(10,2) as amount "
          f"from generate_series(1, {ROWS}) g")


def log(message: str) -> None:
    print(f"[scale-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def bench_incremental_id() -> dict:
    """Part (a), the extract's: fills ``incremental_id_ratio``. Not written yet."""
    raise NotImplementedError("part (a) (incremental_id over 10M vs 10k rows of history) is not written yet")


def _create_history(cluster, table: str, partitions: int) -> None:
    """``bench.<table>``: range-partitioned by day with a primary key, ``partitions`` days of 10 rows each."""
    cluster.psql(f"""
        set timezone = 'UTC';
        create table bench.{table} (id bigint, payload text, amount numeric(10,2),
                                    _interval_start timestamptz not null, primary key (id, _interval_start))
            partition by range (_interval_start);
        do $$ begin
          for i in 0..{partitions - 1} loop
            execute format('create table bench.%I partition of bench.{table} for values from (%L) to (%L)',
                           '{table}__p_' || to_char(timestamptz '{START.isoformat()}' + i * interval '1 day', 'YYYYMMDD'),
                           timestamptz '{START.isoformat()}' + i * interval '1 day',
                           timestamptz '{START.isoformat()}' + (i + 1) * interval '1 day');
          end loop;
        end $$;
        insert into bench.{table}
          select g, md5(g::text), 1, timestamptz '{START.isoformat()}' + (g / 10) * interval '1 day'
          from generate_series(0, {partitions * 10 - 1}) g;""", "bench")
    cluster.psql(f"vacuum analyze bench.{table}", "bench")


class StepClock:
    """``on_step`` callback: milliseconds between the engine's steps, per table size."""

    def __init__(self) -> None:
        self.last = 0.0
        self.phases: dict[str, list[float]] = {}

    def start(self) -> None:
        self.last = time.monotonic()

    def __call__(self, step: str, conn) -> None:
        now = time.monotonic()
        self.phases.setdefault(step, []).append((now - self.last) * 1000)
        self.last = now


def _publish(engine: PublishEngine, table: str, day: int) -> float:
    lower = START + timedelta(days=day)
    started = time.monotonic()
    engine.on_step.start()
    engine.publish_partition(f"bench.{table}", partition_column="_interval_start", lower=lower,
                             upper=lower + timedelta(days=1), select_sql=SELECT,
                             checks=[{"check": "row_count", "min": ROWS}])
    return time.monotonic() - started


def bench_publish() -> dict:
    """Part (b): partition publishes into a table with 3,000 existing partitions vs 10."""
    settings = {"max_locks_per_transaction": "128"}
    with running_cluster("scale-bench", settings=settings) as cluster:
        cluster.create_database("bench")
        cluster.psql("create schema bench", "bench")
        register_cluster_connection("scale_bench", cluster, "bench")
        engines = {size: PublishEngine(connect("scale_bench"), pipeline="benchmark", task_id="scale",
                                       on_step=StepClock()) for size in SIZES}
        for size in SIZES:
            started = time.monotonic()
            _create_history(cluster, f"h{size}", size)
            log(f"bench.h{size}: {size} daily partitions of 10 rows in {time.monotonic() - started:.1f}s")
        for size in SIZES:  # warm-up: first publish of each (ledger, caches)
            _publish(engines[size], f"h{size}", size + 100)
            engines[size].on_step.phases.clear()
        times: dict[int, list[float]] = {size: [] for size in SIZES}
        for r in range(ROUNDS):
            for size in SIZES:  # interleaved, so both see the same background load
                new = _publish(engines[size], f"h{size}", size + r)  # a new interval after the history
                again = _publish(engines[size], f"h{size}", size // 2)  # re-publish one in the middle
                times[size] += [new, again]
                log(f"round {r + 1}/{ROUNDS}: bench.h{size}: new interval {new * 1000:.0f} ms, "
                    f"re-publish {again * 1000:.0f} ms")
        for size in SIZES:
            phases = engines[size].on_step.phases
            log(f"bench.h{size}: median ms up to each step: " + ", ".join(
                f"{step} {statistics.median(ms):.0f}" for step, ms in phases.items()))
    small, big = (statistics.median(times[size]) for size in SIZES)
    log(f"median partition publish of {ROWS:,} rows: {small * 1000:.0f} ms with {SIZES[0]} partitions, "
        f"{big * 1000:.0f} ms with {SIZES[1]:,}")
    return {"publish_ms_10": round(small * 1000, 1), "publish_ms_3000": round(big * 1000, 1),
            "publish_3000_vs_10_ratio": round(big / small, 3)}


def main() -> None:
    results: dict = {}
    try:
        results.update(bench_incremental_id())
    except NotImplementedError as exc:
        log(f"incremental_id_ratio: not measured ({exc})")
    results.update(bench_publish())
    print(json.dumps({k: results[k] for k in ("incremental_id_ratio", "publish_3000_vs_10_ratio") if k in results}),
          flush=True)


if __name__ == "__main__":
    main()
