"""Property: for generated source histories (inserts, updates, deletes, late rows) and run orders (reruns,
out-of-order backfills), every loaded interval equals a reference computed from the source at its last
run, other intervals are untouched by a run, and there are no duplicates."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.extract import run_extract

DAY0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
DAYS = 3
_counter = itertools.count()

# hours cluster around day boundaries so lag windows (6h) and late rows are exercised often
when = st.tuples(st.integers(0, DAYS - 1), st.sampled_from([0, 3, 12, 19, 23]))
step = st.one_of(
    st.tuples(st.just("insert"), when),
    st.tuples(st.just("update"), st.integers(0, 1000), when),  # may move a row into an already-loaded day
    st.tuples(st.just("delete"), st.integers(0, 1000)),
    st.tuples(st.just("run"), st.integers(0, DAYS - 1)),
    st.tuples(st.just("run"), st.integers(0, DAYS - 1)),
)


def _ts(day_hour: tuple[int, int]) -> datetime:
    return DAY0 + timedelta(days=day_hour[0], hours=day_hour[1])


@pytest.fixture
def conns(source_cluster, source_db, pg_cluster, pg_db, source_conn_id, warehouse_conn_id):
    with psycopg.connect(source_cluster.dsn(source_db), autocommit=True) as src, \
            psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as wh:
        yield src, wh, {"source_conn_id": source_conn_id, "target_conn_id": warehouse_conn_id}


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["full_snapshot", "incremental_timestamp", "incremental_id"]),
    lag_hours=st.sampled_from([0, 6]),
    initial=st.lists(when, max_size=6),
    steps=st.lists(step, min_size=1, max_size=12),
    final_runs=st.permutations(range(DAYS)),
)
def test_every_interval_matches_the_source_reference(conns, mode, lag_hours, initial, steps, final_runs):
    src, wh, params = conns
    n = next(_counter)
    table = f"ev_{n}"
    src.execute(f"create table {table} (id int primary key, val text, updated_at timestamptz not null)")
    next_id = itertools.count(1)
    for w in initial:
        src.execute(f"insert into {table} values (%s, 'v0', %s)", [next(next_id), _ts(w)])
    lag = timedelta(hours=lag_hours)
    expected: dict[int, list[tuple]] = {}
    kw = {"source_table": table, "target_table": f"raw.{table}", "mode": mode, "progress_interval": "60s"}
    if mode == "incremental_timestamp":
        kw.update(timestamp_column="updated_at", lag=f"{lag_hours}h", key_columns=["id"])
    # the generated history, then every interval (re)run once more in a random order (backfill)
    for i, action in enumerate([*steps, *(("run", d) for d in final_runs)]):
        ids = [r[0] for r in src.execute(f"select id from {table} order by id").fetchall()]
        if action[0] == "insert":
            src.execute(f"insert into {table} values (%s, 'v0', %s)", [next(next_id), _ts(action[1])])
        elif action[0] == "update" and ids:
            src.execute(f"update {table} set val = %s, updated_at = %s where id = %s",
                        [f"v{i}", _ts(action[2]), ids[action[1] % len(ids)]])
        elif action[0] == "delete" and ids:
            src.execute(f"delete from {table} where id = %s", [ids[action[1] % len(ids)]])
        elif action[0] == "run":
            day = action[1]
            lower, upper = DAY0 + timedelta(days=day), DAY0 + timedelta(days=day + 1)
            source_rows = src.execute(f"select id, val, updated_at from {table} order by id").fetchall()
            if mode == "full_snapshot":
                want = source_rows
            elif mode == "incremental_timestamp":
                want = [r for r in source_rows if lower - lag <= r[2] < upper]
            else:
                other = set() if not expected else {
                    r[0] for r in wh.execute(
                        f"select id from raw.{table} where _interval_start <> %s", [lower]).fetchall()}
                want = [r for r in source_rows if r[0] not in other]
            out = run_extract(lower, upper, **params, **kw)
            assert out["status"] == "published" and out["rows"] == len(want)
            expected[day] = want
            # every interval run so far holds exactly its reference; no duplicates anywhere they matter
            for d, rows in expected.items():
                got = wh.execute(
                    f"select id, val, updated_at from raw.{table} where _interval_start = %s order by id",
                    [DAY0 + timedelta(days=d)],
                ).fetchall()
                assert got == rows, (mode, d, action)
            unloaded = wh.execute(
                f"select count(*) from raw.{table} where not (_interval_start = any(%s))",
                [[DAY0 + timedelta(days=d) for d in expected]],
            ).fetchone()[0]
            assert unloaded == 0
            if mode == "incremental_id":
                dupes = wh.execute(f"select count(*) - count(distinct id) from raw.{table}").fetchone()[0]
                assert dupes == 0
            if mode == "incremental_timestamp":
                latest = wh.execute(f"select id, val from raw.{table}__latest order by id").fetchall()
                assert len(latest) == len({r[0] for r in latest})
                newest: dict[int, tuple] = {}
                for d in sorted(expected):
                    for r in expected[d]:
                        if r[0] not in newest or (r[2], d) >= newest[r[0]][0]:
                            newest[r[0]] = ((r[2], d), r[1])
                assert latest == sorted((k, v[1]) for k, v in newest.items())


BERLIN = "Europe/Berlin"
DST_DAY0 = datetime(2024, 3, 30, tzinfo=timezone.utc)  # Berlin springs forward on 2024-03-31


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(
    naive=st.booleans(),
    lag_hours=st.sampled_from([0, 6]),
    initial=st.lists(when, max_size=5),
    steps=st.lists(st.one_of(step, st.tuples(st.just("late"), st.integers(0, DAYS - 1))), min_size=1, max_size=10),
    final_runs=st.permutations(range(DAYS)),
)
def test_latest_with_deletes_late_rows_and_zones_matches_the_source(conns, source_cluster, source_db, naive,
                                                                    lag_hours, initial, steps, final_runs):
    """Issue 14 item 14: incremental_timestamp with delete detection, on a source whose server zone is
    America/New_York, the modified-at column naive Berlin wall-clock time (source_timezone) or timestamptz,
    across Berlin's DST change; rows committed late (backdated into an interval already run, within the lag);
    runs in any order. After every run each loaded partition is exactly the source rows of its window (plus
    tombstones), and after a final rerun of every interval in random order, <table>__latest is exactly the
    source's current rows: no deleted key, no stale version."""
    from zoneinfo import ZoneInfo

    src, wh, params = conns
    source_cluster.psql(f"alter database {source_db} set timezone = 'America/New_York'", source_db)
    berlin = ZoneInfo(BERLIN)
    n = next(_counter)
    table = f"tz_{n}"
    col_type = "timestamp" if naive else "timestamptz"
    src.execute(f"create table {table} (id int primary key, val text, modified {col_type} not null)")

    def stored(instant: datetime) -> datetime:
        return instant.astimezone(berlin).replace(tzinfo=None) if naive else instant

    def at(day_hour: tuple[int, int]) -> datetime:
        return DST_DAY0 + timedelta(days=day_hour[0], hours=day_hour[1])

    source: dict[int, tuple[str, datetime]] = {}  # id -> (val, instant): the reference model of the source
    next_id = itertools.count(1)

    def write(key: int, val: str, instant: datetime) -> None:
        src.execute(f"insert into {table} values (%s, %s, %s) on conflict (id) do update set val = excluded.val,"
                    " modified = excluded.modified", [key, val, stored(instant)])
        source[key] = (val, instant)

    for w in initial:
        write(next(next_id), "v0", at(w))
    lag = timedelta(hours=lag_hours)
    kw = {"source_table": table, "target_table": f"raw.{table}", "mode": "incremental_timestamp",
          "timestamp_column": "modified", "lag": f"{lag_hours}h", "key_columns": ["id"], "detect_deletes": True,
          "progress_interval": "60s", **({"source_timezone": BERLIN} if naive else {})}
    loaded: set[int] = set()
    for i, action in enumerate([*steps, *(("run", d) for d in final_runs)]):
        ids = sorted(source)
        if action[0] == "insert":
            write(next(next_id), "v0", at(action[1]))
        elif action[0] == "update" and ids:
            write(ids[action[1] % len(ids)], f"v{i}", at(action[2]))
        elif action[0] == "delete" and ids:
            key = ids[action[1] % len(ids)]
            src.execute(f"delete from {table} where id = %s", [key])
            del source[key]
        elif action[0] == "late":
            # committed now, stamped an hour before the end of a day that may have been run already
            write(next(next_id), f"late{i}", DST_DAY0 + timedelta(days=action[1] + 1, hours=-1))
        elif action[0] == "run":
            day = action[1]
            lower, upper = DST_DAY0 + timedelta(days=day), DST_DAY0 + timedelta(days=day + 1)
            out = run_extract(lower, upper, **params, **kw)
            assert out["status"] == "published"
            loaded.add(day)
            want = sorted((k, v, stored(t)) for k, (v, t) in source.items() if lower - lag <= t < upper)
            got = wh.execute(f"select id, val, modified from raw.{table} where _interval_start = %s and "
                             "not coalesce(_deleted, false) order by id", [lower]).fetchall()
            assert got == want, (naive, day, action)
    latest = wh.execute(f"select id, val, modified from raw.{table}__latest order by id").fetchall()
    assert latest == sorted((k, v, stored(t)) for k, (v, t) in source.items()
                            if DST_DAY0 - lag <= t < DST_DAY0 + timedelta(days=DAYS))
