"""Freshness engine on real PostgreSQL: durations, the one-query probe (and its index use), status rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from airflow_provider_dataeng.freshness import (
    FreshnessCheck,
    FreshnessConfigError,
    FreshnessQuery,
    FreshnessResult,
    FreshnessSLA,
    FreshnessStatus,
    format_duration,
    parse_duration,
)
from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

SLA = FreshnessSLA(warn_after=timedelta(minutes=30), error_after=timedelta(hours=6))


@pytest.fixture
def wh(pg_cluster, pg_db) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        conn.execute("create schema raw")
        conn.execute("create table raw.events (id bigserial primary key, loaded_at timestamptz, kind text)")
        conn.execute("create index on raw.events (loaded_at)")
        yield conn


@pytest.fixture
def hook(warehouse_conn_id) -> FailoverPostgresHook:
    return FailoverPostgresHook(postgres_conn_id=warehouse_conn_id, driver="psycopg")


def check(column: str = "loaded_at", sla: FreshnessSLA = SLA, **kw) -> FreshnessCheck:
    return FreshnessCheck(FreshnessQuery(schema="raw", table="events", timestamp_column=column, **kw), sla)


# -- durations ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(minutes=90)),
        (" 90s ", timedelta(seconds=90)),
        ("1w", timedelta(weeks=1)),
        (45, timedelta(seconds=45)),
        (timedelta(hours=1), timedelta(hours=1)),
        ({"count": 12, "period": "hour"}, timedelta(hours=12)),
        (None, None),
    ],
)
def test_parse_duration_accepts_the_documented_forms(value, expected):
    assert parse_duration(value, field="warn_after") == expected


@pytest.mark.parametrize("value", ["", "6", "6 hours", "h6", "-1h", True, [1], {"count": 1, "period": "year"}, -5])
def test_parse_duration_rejects_bad_input_naming_the_field(value):
    with pytest.raises(ValueError, match="error_after"):
        parse_duration(value, field="error_after")


def test_format_duration_is_compact():
    assert format_duration(timedelta(hours=7, minutes=2, seconds=5)) == "7h 2m 5s"
    assert format_duration(timedelta(days=2, hours=3)) == "2d 3h"
    assert format_duration(0.25) == "250ms"
    assert format_duration(None) == "-"


def test_sla_needs_a_threshold_and_warn_before_error():
    with pytest.raises(ValueError, match="warn_after and/or error_after"):
        FreshnessSLA()
    with pytest.raises(ValueError, match="longer than error_after"):
        FreshnessSLA(warn_after=timedelta(hours=2), error_after=timedelta(hours=1))


# -- the probe on real PostgreSQL --------------------------------------------------------------------
def test_fresh_warn_error_follow_the_lag(wh, hook):
    wh.execute("insert into raw.events (loaded_at) values (now() - interval '10 minutes')")
    fresh = check().run(hook)
    assert fresh.status is FreshnessStatus.FRESH
    assert 590 <= fresh.lag_seconds <= 660

    wh.execute("truncate raw.events")
    wh.execute("insert into raw.events (loaded_at) values (now() - interval '2 hours')")
    warn = check().run(hook)
    assert warn.status is FreshnessStatus.WARN
    assert "exceeds warn_after 30m" in warn.message()

    wh.execute("truncate raw.events")
    wh.execute("insert into raw.events (loaded_at) values (now() - interval '7 hours'), (now() - interval '9 hours')")
    error = check().run(hook)
    assert error.status is FreshnessStatus.ERROR
    # The breach message carries what an on-call person needs: lag, threshold and the max timestamp.
    text = error.breach_message(60)
    assert "raw.events" in text and "exceeds error_after 6h" in text and "7h" in text
    assert error.max_loaded_at.isoformat() in text
    assert error.as_xcom()["status"] == "error"
    assert error.as_xcom()["max_loaded_at"] == error.max_loaded_at.isoformat()


def test_only_warn_after_never_errors(wh, hook):
    wh.execute("insert into raw.events (loaded_at) values (now() - interval '3 days')")
    result = check(sla=FreshnessSLA(warn_after=timedelta(hours=1))).run(hook)
    assert result.status is FreshnessStatus.WARN


def test_filter_limits_the_rows_considered(wh, hook):
    wh.execute(
        "insert into raw.events (loaded_at, kind) values (now() - interval '1 minute', 'test'),"
        " (now() - interval '8 hours', 'prod')"
    )
    assert check().run(hook).status is FreshnessStatus.FRESH
    assert check(filter="kind = 'prod'").run(hook).status is FreshnessStatus.ERROR


def test_loaded_at_query_replaces_the_column(wh, hook):
    wh.execute("insert into raw.events (loaded_at) values (now() - interval '2 hours')")
    query = FreshnessQuery(
        schema="raw", table="events", loaded_at_query="select max(loaded_at) + interval '100 minutes' from raw.events;"
    )
    result = FreshnessCheck(query, SLA).run(hook)
    assert result.status is FreshnessStatus.FRESH
    assert 1150 <= result.lag_seconds <= 1300


def test_empty_table_is_an_error_with_a_clear_message(wh, hook):
    result = check().run(hook)
    assert result.status is FreshnessStatus.ERROR and result.empty
    assert result.as_xcom() == {"max_loaded_at": None, "lag_seconds": None, "status": "error"}
    assert "raw.events has no rows" in result.message()
    assert "table raw.events is empty" in result.breach_message(30)


def test_missing_column_fails_at_once_naming_table_and_column(wh, hook):
    with pytest.raises(FreshnessConfigError, match=r"table raw\.events has no column 'updated_at'"):
        check("updated_at").run(hook)


def test_missing_table_fails_at_once(wh, hook):
    q = FreshnessQuery(schema="raw", table="nope", timestamp_column="loaded_at")
    with pytest.raises(FreshnessConfigError, match=r"table raw\.nope does not exist"):
        FreshnessCheck(q, SLA).run(hook)


def test_non_timestamp_column_is_rejected(wh, hook):
    wh.execute("insert into raw.events (loaded_at) values (now())")
    with pytest.raises(FreshnessConfigError, match=r"max\(id\) returned a int"):
        check("id").run(hook)


def test_naive_timestamps_and_dates_are_read_as_utc(wh, hook):
    wh.execute("create table raw.daily (day date, ts timestamp)")
    wh.execute("insert into raw.daily values (current_date - 1, (now() at time zone 'utc') - interval '1 hour')")
    ts = FreshnessCheck(FreshnessQuery(schema="raw", table="daily", timestamp_column="ts"), SLA).run(hook)
    assert ts.status is FreshnessStatus.WARN and 3500 <= ts.lag_seconds <= 3700
    day = FreshnessCheck(FreshnessQuery(schema="raw", table="daily", timestamp_column="day"), SLA).run(hook)
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    assert day.max_loaded_at == datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=timezone.utc)
    assert isinstance(day.max_loaded_at.date(), date)


def test_query_config_is_validated():
    with pytest.raises(ValueError, match="exactly one of timestamp_column or loaded_at_query"):
        FreshnessQuery(schema="raw", table="events")
    with pytest.raises(ValueError, match="filter only applies"):
        FreshnessQuery(schema="raw", table="events", loaded_at_query="select now()", filter="true")


def test_probe_quotes_identifiers(wh, hook):
    wh.execute('create table raw."Odd Name" ("Loaded At" timestamptz)')
    wh.execute('insert into raw."Odd Name" values (now())')
    q = FreshnessQuery(schema="raw", table="Odd Name", timestamp_column="Loaded At")
    assert FreshnessCheck(q, SLA).run(hook).status is FreshnessStatus.FRESH


def test_probe_plan_uses_the_index(wh):
    wh.execute(
        "insert into raw.events (loaded_at) select now() - g * interval '1 second' from generate_series(1, 50000) g"
    )
    wh.execute("analyze raw.events")
    q = FreshnessQuery(schema="raw", table="events", timestamp_column="loaded_at")
    plan = "\n".join(r[0] for r in wh.execute(psycopg.sql.SQL("explain ") + q.sql()).fetchall())
    assert "Index Only Scan Backward" in plan or "Index Scan Backward" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_result_payload_round_trips():
    now = datetime.now(timezone.utc)
    result = FreshnessResult(
        table="raw.events", measured="max(loaded_at)", status=FreshnessStatus.WARN,
        max_loaded_at=now - timedelta(hours=1), observed_at=now, sla=SLA,
    )
    assert FreshnessResult.from_payload(result.to_payload()) == result


def test_probe_session_keeps_one_connection_and_survives_a_killed_backend(wh, hook):
    from airflow_provider_dataeng.freshness import ProbeSession

    wh.execute("insert into raw.events (loaded_at) values (now())")
    session = ProbeSession(hook)
    try:
        assert session.run(check()).status is FreshnessStatus.FRESH
        pid = session.conn.info.backend_pid
        assert session.run(check()).status is FreshnessStatus.FRESH
        assert session.conn.info.backend_pid == pid  # the same connection: a poke is just the query
        wh.execute("select pg_terminate_backend(%s)", [pid])  # e.g. a restart or failover between pokes
        assert session.run(check()).status is FreshnessStatus.FRESH
        assert session.conn.info.backend_pid != pid
    finally:
        session.close()
