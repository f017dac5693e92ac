"""Scale benchmark (issue 14 item 12): cost grows with the interval's work, not with the table's history.

Run: ``.venv/bin/python benchmarks/scale.py``. Part (a), ``bench_incremental_id()``: an ``incremental_id``
run that loads 10k new rows over a history of 10M rows, against the same run over a history of 10k rows
(each history loaded by the extract itself in ``--chunks`` daily partitions, so the ledger holds its id
watermark). Part (b), the publish engine's partition publish into a table with 3,000 partitions against 10,
is ``bench_publish_partitions()`` (the publish side). The last line is one JSON object:
``{"incremental_id_ratio": .., "publish_3000_vs_10_ratio": ..}``; target: both <= 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from devstack.airflow_env import configure_airflow_home, register_cluster_connection
from devstack.pg import PgCluster, running_cluster

if "AIRFLOW_HOME" not in os.environ:
    configure_airflow_home(Path(tempfile.mkdtemp(prefix="dataeng-bench-airflow-")))

DAY0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _extract_run(source_conn: str, target_conn: str, day: int) -> tuple[float, dict[str, Any]]:
    from airflow_provider_dataeng.extract.job import ExtractJob
    from airflow_provider_dataeng.extract.spec import ExtractSpec

    spec = ExtractSpec(source_conn_id=source_conn, target_conn_id=target_conn, source_table="events",
                       target_table="raw.events", mode="incremental_id", progress_interval="30s")
    lower = DAY0 + timedelta(days=day)
    t0 = time.perf_counter()
    result = ExtractJob(spec).run(lower, lower + timedelta(days=1), pipeline="scale", task_id="extract",
                                  run_id=f"scale_{day}")
    return time.perf_counter() - t0, result.as_xcom()


def _incremental_id_case(src: PgCluster, wh: PgCluster, label: str, history: int, new: int,
                         chunks: int, repeat: int = 3) -> dict[str, Any]:
    """Load ``history`` rows in ``chunks`` runs, then time the run that loads ``new`` rows (best of ``repeat``
    runs, each loading ``new`` more rows into the next interval)."""
    src_db, wh_db = f"scale_src_{label}", f"scale_wh_{label}"
    src.create_database(src_db)
    wh.create_database(wh_db)
    source_conn, target_conn = f"scale_src_{label}", f"scale_wh_{label}"
    register_cluster_connection(source_conn, src, src_db)
    register_cluster_connection(target_conn, wh, wh_db)
    src.psql("create table events (id bigint primary key, customer_id int not null, payload text not null,"
             " created_at timestamptz not null)", src_db)
    per_chunk = history // chunks
    insert = ("insert into events select g, g % 100000, md5(g::text), timestamptz '2025-01-01' + g * interval '1 ms'"
              " from generate_series({lo}, {hi}) g")
    t0 = time.perf_counter()
    for day in range(chunks):
        lo, hi = day * per_chunk + 1, (day + 1) * per_chunk if day < chunks - 1 else history
        src.psql(insert.format(lo=lo, hi=hi), src_db)
        src.psql("vacuum analyze events", src_db)
        seconds, out = _extract_run(source_conn, target_conn, day)
        assert out["rows"] == hi - lo + 1, out
    say(f"{label}: history of {history} rows in {chunks} partitions loaded in {time.perf_counter() - t0:.0f}s")
    times = []
    for i in range(repeat):  # each timed run loads `new` new rows into a new interval
        top = history + i * new
        src.psql(insert.format(lo=top + 1, hi=top + new), src_db)
        src.psql("vacuum analyze events", src_db)
        seconds, out = _extract_run(source_conn, target_conn, chunks + i)
        assert out["rows"] == new, out
        times.append(seconds)
        details = json.loads(wh.psql("select details from dataeng.load_ledger order by id desc limit 1", wh_db))
        say(f"{label}: {new} new rows over {top} in {seconds:.2f}s (known ids shipped: {details['known_ids']}, "
            f"watermark {details['id_watermark']})")
    return {"seconds": min(times), "known_ids": details["known_ids"]}


def bench_incremental_id(history: int = 10_000_000, new: int = 10_000, chunks: int = 10) -> dict[str, Any]:
    """Part (a): the same incremental_id run over a long and a short history; ratio of their times."""
    src = PgCluster.create("scale-source")
    wh = PgCluster.create("scale-warehouse")
    try:
        small = _incremental_id_case(src, wh, "small", new, new, chunks)
        big = _incremental_id_case(src, wh, "big", history, new, chunks)
    finally:
        src.destroy()
        wh.destroy()
    return {"history": history, "new": new, "small_s": round(small["seconds"], 3), "big_s": round(big["seconds"], 3),
            "known_ids_small": small["known_ids"], "known_ids_big": big["known_ids"],
            "ratio": round(big["seconds"] / small["seconds"], 3)}


# -- part (b): the publish side --------------------------------------------------------------------------------
START = datetime(2018, 1, 1, tzinfo=timezone.utc)
SIZES = (10, 3000)  # existing daily partitions
ROUNDS = 7  # per size: one new interval and one re-publish each round
ROWS = 1000
SELECT = ("select g::bigint as id, md5(g::text) as payload, (g % 100)::numeric(10,2) as amount "
          f"from generate_series(1, {ROWS}) g")


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


def _publish(engine: Any, table: str, day: int) -> float:
    lower = START + timedelta(days=day)
    started = time.monotonic()
    engine.on_step.start()
    engine.publish_partition(f"bench.{table}", partition_column="_interval_start", lower=lower,
                             upper=lower + timedelta(days=1), select_sql=SELECT,
                             checks=[{"check": "row_count", "min": ROWS}])
    return time.monotonic() - started


def bench_publish_partitions() -> dict:
    """Part (b): partition publishes (1,000 rows; a new interval and a re-publish of an existing one,
    interleaved) into a table with 3,000 existing daily partitions vs 10: median wall time ratio."""
    from airflow_provider_dataeng.connections import connect
    from airflow_provider_dataeng.publish import PublishEngine

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
            say(f"bench.h{size}: {size} daily partitions of 10 rows in {time.monotonic() - started:.1f}s")
        for size in SIZES:  # warm-up: first publish of each (ledger, caches)
            _publish(engines[size], f"h{size}", size + 100)
            engines[size].on_step.phases.clear()
        times: dict[int, list[float]] = {size: [] for size in SIZES}
        for r in range(ROUNDS):
            for size in SIZES:  # interleaved, so both see the same background load
                new = _publish(engines[size], f"h{size}", size + r)  # a new interval after the history
                again = _publish(engines[size], f"h{size}", size // 2)  # re-publish one in the middle
                times[size] += [new, again]
                say(f"round {r + 1}/{ROUNDS}: bench.h{size}: new interval {new * 1000:.0f} ms, "
                    f"re-publish {again * 1000:.0f} ms")
        for size in SIZES:
            phases = engines[size].on_step.phases
            say(f"bench.h{size}: median ms up to each step: " + ", ".join(
                f"{step} {statistics.median(ms):.0f}" for step, ms in phases.items()))
    small, big = (statistics.median(times[size]) for size in SIZES)
    say(f"median partition publish of {ROWS:,} rows: {small * 1000:.0f} ms with {SIZES[0]} partitions, "
        f"{big * 1000:.0f} ms with {SIZES[1]:,}")
    return {"publish_ms_10": round(small * 1000, 1), "publish_ms_3000": round(big * 1000, 1),
            "ratio": round(big / small, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=10_000_000, help="rows of history for part (a)")
    parser.add_argument("--new", type=int, default=10_000, help="new rows the timed incremental_id run loads")
    parser.add_argument("--chunks", type=int, default=10, help="partitions the history is loaded in")
    args = parser.parse_args()
    part_a = bench_incremental_id(args.history, args.new, args.chunks)
    say(f"part (a): {json.dumps(part_a)}")
    part_b = globals().get("bench_publish_partitions")  # part (b), written by the publish side
    ratio_b = part_b()["ratio"] if part_b is not None else None
    print(json.dumps({"incremental_id_ratio": part_a["ratio"], "publish_3000_vs_10_ratio": ratio_b}), flush=True)


if __name__ == "__main__":
    main()
