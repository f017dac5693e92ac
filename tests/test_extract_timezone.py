"""Issue 14 item 1: the source session's time zone is set explicitly (UTC), naive timestamp columns need
``source_timezone``; sources whose server zone is not UTC (per database and per role), across a DST change."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from devstack.airflow_env import register_cluster_connection, unregister_connection
from tests.fixtures.extract import rows_of, run_extract

DAY = timedelta(days=1)
# (server zone, how it is set, a UTC day on which that zone changes its UTC offset)
ZONES = [
    ("Europe/Berlin", "database", datetime(2024, 10, 27, tzinfo=timezone.utc)),  # CEST -> CET
    ("America/New_York", "role", datetime(2024, 3, 10, tzinfo=timezone.utc)),  # EST -> EDT
    ("Australia/Lord_Howe", "database", datetime(2024, 4, 7, tzinfo=timezone.utc)),  # +11 -> +10:30
]


def _instants(day: datetime, zone: ZoneInfo) -> list[datetime]:
    """Every 20 minutes over three UTC days around ``day``, minus instants whose local wall-clock time is
    ambiguous (the repeated hour of a fall-back: a naive value cannot name one instant there)."""
    out, t = [], day - DAY
    while t < day + 2 * DAY:
        local = t.astimezone(zone).replace(tzinfo=None)
        if local.replace(tzinfo=zone, fold=0) == local.replace(tzinfo=zone, fold=1):
            out.append(t)
        t += timedelta(minutes=20)
    return out


@pytest.fixture
def zoned_source(source_cluster, source_db, warehouse_conn_id, request):
    zone_name, how, day = request.param
    zone = ZoneInfo(zone_name)
    instants = _instants(day, zone)
    values = ",\n".join(
        f"({i}, '{t.isoformat()}', '{t.astimezone(zone).replace(tzinfo=None).isoformat(sep=' ')}')"
        for i, t in enumerate(instants)
    )
    source_cluster.psql(
        f"create table events (id int primary key, at timestamptz not null, local_at timestamp not null);\n"
        f"insert into events values {values}", source_db)
    role = None
    conn_id = f"src_tz_{uuid.uuid4().hex[:8]}"
    if how == "database":
        source_cluster.psql(f"alter database {source_db} set timezone = '{zone_name}'", source_db)
        register_cluster_connection(conn_id, source_cluster, source_db)
    else:
        role = f"tz_{uuid.uuid4().hex[:8]}"
        source_cluster.psql(f"create role {role} login superuser; alter role {role} set timezone = '{zone_name}'",
                            source_db)
        register_cluster_connection(conn_id, source_cluster, source_db, login=role)
    shown = rows_of(source_cluster, source_db, "show timezone") if how == "database" else None
    assert shown is None or shown == [(zone_name,)]
    try:
        yield {"zone": zone_name, "day": day, "instants": instants, "params": {
            "source_conn_id": conn_id, "target_conn_id": warehouse_conn_id}}
    finally:
        unregister_connection(conn_id)
        if role:
            source_cluster.psql(f"drop role if exists {role}", source_db)


def _partition_ids(wh, wh_db, table: str, lower: datetime) -> list[int]:
    return [r[0] for r in rows_of(wh, wh_db, f"select id from {table} where _interval_start = '{lower.isoformat()}'"
                                            " order by id")]


@pytest.mark.parametrize("zoned_source", ZONES, indirect=True, ids=[z[0] for z in ZONES])
def test_naive_and_aware_timestamps_in_non_utc_source_zones(zoned_source, pg_cluster, pg_db):
    day, instants, params = zoned_source["day"], zoned_source["instants"], zoned_source["params"]
    base = {**params, "source_table": "events", "mode": "incremental_timestamp", "lag": "0s"}
    # a naive column without source_timezone is refused before anything is written
    with pytest.raises(AirflowFailException, match="timestamp without time zone: set source_timezone"):
        run_extract(day, **base, target_table="raw.naive_refused", timestamp_column="local_at")
    assert rows_of(pg_cluster, pg_db, "select count(*) from pg_class where relname like 'naive_refused%'") == [(0,)]

    for lower in (day - DAY, day, day + DAY):
        expected = [i for i, t in enumerate(instants) if lower <= t < lower + DAY]
        assert expected, "the fixture has rows in every interval"
        run_extract(lower, **base, target_table="raw.by_naive", timestamp_column="local_at",
                    source_timezone=zoned_source["zone"])
        run_extract(lower, **base, target_table="raw.by_aware", timestamp_column="at")
        assert _partition_ids(pg_cluster, pg_db, "raw.by_naive", lower) == expected, lower
        assert _partition_ids(pg_cluster, pg_db, "raw.by_aware", lower) == expected, lower
    # the three intervals together hold every row exactly once
    assert rows_of(pg_cluster, pg_db, "select count(*), count(distinct id) from raw.by_naive") == [
        (len(instants), len(instants))]
    # values arrive unchanged: the naive column keeps its wall-clock text, the aware one its instant
    got = rows_of(pg_cluster, pg_db, "select id, at, local_at from raw.by_aware order by id")
    zone = ZoneInfo(zoned_source["zone"])
    assert [(i, a, loc) for i, a, loc in got] == [
        (i, t, t.astimezone(zone).replace(tzinfo=None)) for i, t in enumerate(instants)]


@pytest.mark.parametrize("zoned_source", ZONES[:2], indirect=True, ids=[z[0] for z in ZONES[:2]])
def test_source_sql_is_evaluated_in_utc_whatever_the_server_zone(zoned_source, pg_cluster, pg_db):
    """Casts and date arithmetic in source_sql use the session zone: UTC, set by the extract, not the
    server's, database's or role's zone."""
    day, instants = zoned_source["day"], zoned_source["instants"]
    run_extract(day, **zoned_source["params"], target_table="raw.days",
                source_sql="select id, at::date as utc_day, at::text as at_text from events")
    got = rows_of(pg_cluster, pg_db, "select id, utc_day, at_text from raw.days order by id")
    assert got == [(i, date(t.year, t.month, t.day), t.strftime("%Y-%m-%d %H:%M:%S+00"))
                   for i, t in enumerate(instants)]
