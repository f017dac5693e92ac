"""Partition gap check on real PostgreSQL: planted holes, failed/rejected ledger rows, backfill commands."""

from __future__ import annotations

import inspect
import shlex
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from airflow_provider_dataeng.gaps import expected_intervals, find_gaps, resolve_timetable
from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook
from tests.fixtures.ledger import attach_partition, create_partitioned_table, plant_ledger_row

JAN = [datetime(2024, 1, d, tzinfo=timezone.utc) for d in range(1, 13)]  # JAN[i] = 2024-01-(i+1)


def day(n: int) -> tuple[datetime, datetime]:
    """The interval of 2024-01-n."""
    return JAN[n - 1], JAN[n]


@pytest.fixture
def warehouse(pg_cluster, pg_db) -> Iterator[psycopg.Connection]:
    """raw.orders partitioned by day over 2024-01-01..11 with planted holes.

    day 1, 2, 8: published + partition           -> ok
    day 3:       nothing                         -> missing
    day 4:       published, partition dropped    -> missing
    day 5:       failed, no partition            -> failed
    day 6:       published then rejected (partition of the earlier load still attached) -> rejected
    day 7:       partition, no ledger row        -> ok (present)
    day 9, 10:   nothing                         -> missing
    """
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        create_partitioned_table(conn, "raw", "orders")
        for n in (1, 2, 6, 7, 8):
            attach_partition(conn, "raw", "orders", *day(n))
        for n in (1, 2, 4, 6, 8):
            plant_ledger_row(conn, "raw", "orders", *day(n), "published", run_id=f"scheduled__d{n}", pipeline="shop")
        plant_ledger_row(conn, "raw", "orders", *day(5), "failed", error="connection reset\ntraceback...",
                         run_id="scheduled__d5", pipeline="shop")
        plant_ledger_row(conn, "raw", "orders", *day(6), "rejected", error="row_count 0 < min 1",
                         run_id="scheduled__d6", pipeline="shop")
        # Noise: another table's failure, and a failure by another pipeline on day 1.
        plant_ledger_row(conn, "raw", "customers", *day(2), "failed", pipeline="shop")
        plant_ledger_row(conn, "raw", "orders", *day(1), "failed", pipeline="adhoc")
        yield conn


@pytest.fixture
def hook(warehouse_conn_id) -> FailoverPostgresHook:
    return FailoverPostgresHook(postgres_conn_id=warehouse_conn_id, driver="psycopg")


def gaps(hook, **kw):
    args = dict(schema="raw", table="orders", timetable=resolve_timetable("@daily"), start=JAN[0], end=JAN[10],
                pipeline="shop")
    args.update(kw)
    return find_gaps(hook, **args)


def test_expected_intervals_follow_the_cron_schedule():
    tt = resolve_timetable("0 */6 * * *")
    ivs = expected_intervals(tt, datetime(2024, 1, 1, 3, tzinfo=timezone.utc), datetime(2024, 1, 2, tzinfo=timezone.utc))
    assert [(i.start.hour, i.end.hour) for i in ivs] == [(6, 12), (12, 18), (18, 0)]
    assert all(i.end - i.start == timedelta(hours=6) for i in ivs)


def test_expected_intervals_from_a_dag_timetable_and_a_timedelta():
    from airflow.sdk import DAG

    with DAG("tt_probe", schedule="0 * * * *", start_date=JAN[0]) as dag:  # CronTriggerTimetable: zero-length
        pass
    ivs = expected_intervals(resolve_timetable(None, dag_timetable=dag.timetable), JAN[0], JAN[0] + timedelta(hours=3))
    assert [(i.start.hour, i.end.hour) for i in ivs] == [(0, 1), (1, 2), (2, 3)]
    ivs = expected_intervals(resolve_timetable(timedelta(hours=12)), JAN[0], JAN[1])
    assert len(ivs) == 2


@pytest.mark.parametrize(("cron", "days"), [
    ("@daily", 200), ("@hourly", 10), ("@weekly", 900), ("@monthly", 1500), ("*/7 * * * *", 1), ("0 3 * * 1-5", 200),
    ("15 */6 * * *", 40), ("0 0 29 2 *", 3000), ("0 0 31 * *", 1500), ("0 12 1,15 * *", 1000)])
def test_utc_cron_fast_path_gives_airflows_own_intervals(cron, days):
    """The dashboard's and gap check's one-croniter walk for UTC cron timetables equals Airflow's iteration."""
    import random

    from airflow_provider_dataeng.gaps import expected

    rng = random.Random(cron)
    tt = resolve_timetable(cron)
    for _ in range(4):
        start = datetime(2023, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))
        if rng.random() < 0.5:
            start = start.replace(minute=0, second=0)  # often right on a fire time
        end = start + timedelta(days=days) * rng.random()
        fast = expected._utc_cron_intervals(tt, start, end)
        assert fast is not None and fast == expected._timetable_intervals(tt, start, end), (cron, start, end)
    assert expected._utc_cron_intervals(resolve_timetable(cron, tz="Europe/Berlin"), start, end) is None


def test_bad_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="schedule='every day'"):
        resolve_timetable("every day")


def test_finds_missing_failed_and_rejected_intervals(warehouse, hook):
    report = gaps(hook)
    assert len(report.expected) == 10
    holes = {h.interval.start.day: h for h in report.holes}
    assert {d: h.kind for d, h in holes.items()} == {
        3: "missing", 4: "missing", 5: "failed", 6: "rejected", 9: "missing", 10: "missing",
    }
    assert "connection reset" in holes[5].detail and "traceback" not in holes[5].detail
    assert holes[5].run_id == "scheduled__d5"
    assert "row_count 0 < min 1" in holes[6].detail and "orders__p_20240106 still attached" in holes[6].detail
    assert "says published but no partition" in holes[4].detail
    assert report.counts() == {"missing": 4, "failed": 1, "rejected": 1}


def test_pipeline_filter_and_other_tables_are_respected(warehouse, hook):
    # Without the pipeline filter, the adhoc pipeline's later failure on day 1 counts.
    assert {h.interval.start.day for h in gaps(hook, pipeline=None).holes} == {1, 3, 4, 5, 6, 9, 10}
    # raw.customers has no partitions and only a failed row on day 2: every day is a hole.
    cust = gaps(hook, table="customers")
    assert not cust.table_exists and len(cust.holes) == 10
    assert next(h for h in cust.holes if h.interval.start.day == 2).kind == "failed"


def test_log_table_and_backfill_commands_target_only_the_holes(warehouse, hook):
    report = gaps(hook)
    table = report.table()
    assert table.splitlines()[0].split() == ["interval_start", "interval_end", "hole", "ledger_id", "run_id", "detail"]
    assert len(table.splitlines()) == 2 + 6
    assert report.backfill_ranges() == [(JAN[2], JAN[5]), (JAN[8], JAN[9])]
    assert report.backfill_commands("shop") == [
        "airflow backfill create --dag-id shop --from-date 2024-01-03T00:00:00+00:00 "
        "--to-date 2024-01-06T00:00:00+00:00 --reprocess-behavior completed",
        "airflow backfill create --dag-id shop --from-date 2024-01-09T00:00:00+00:00 "
        "--to-date 2024-01-10T00:00:00+00:00 --reprocess-behavior completed",
    ]


def test_no_holes_when_everything_is_published(pg_cluster, pg_db, hook):
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        create_partitioned_table(conn, "raw", "orders")
        for n in (1, 2, 3):
            attach_partition(conn, "raw", "orders", *day(n))
            plant_ledger_row(conn, "raw", "orders", *day(n), "published")
    report = gaps(hook, end=JAN[3], pipeline=None)
    assert report.holes == [] and len(report.expected) == 3


def test_partitions_without_a_ledger_count_as_present(pg_cluster, pg_db, hook):
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        create_partitioned_table(conn, "raw", "orders")
        attach_partition(conn, "raw", "orders", *day(1))
        conn.execute("create table raw.orders__default partition of raw.orders default")
    report = gaps(hook, end=JAN[2], pipeline=None)
    assert not report.ledger_present
    assert [h.interval.start.day for h in report.holes] == [2]
    assert any("orders__default" in n for n in report.notes)


# -- the operator in a real DAG run, and the backfill command checked by Airflow itself -------------------
def test_operator_fails_or_warns_and_its_backfill_command_covers_exactly_the_holes(warehouse, warehouse_conn_id):
    from airflow.sdk import DAG
    try:
        from airflow.sdk import CronDataIntervalTimetable
    except ImportError:  # Airflow 3.0: the timetables are not in the Task SDK yet
        from airflow.timetables.interval import CronDataIntervalTimetable

    from airflow_provider_dataeng.operators.gap_check import PartitionGapCheckOperator
    from devstack.airflow_env import run_dag

    dag_id = f"shop_{uuid.uuid4().hex[:6]}"
    with DAG(dag_id, schedule=CronDataIntervalTimetable("@daily", "UTC"), start_date=JAN[0], catchup=False) as dag:
        PartitionGapCheckOperator(task_id="gaps_fail", conn_id=warehouse_conn_id, target_table="raw.orders",
                                  pipeline="shop")
        PartitionGapCheckOperator(task_id="gaps_warn", conn_id=warehouse_conn_id, target_table="raw.orders",
                                  pipeline="shop", on_holes="warn")
        PartitionGapCheckOperator(task_id="gaps_window", conn_id=warehouse_conn_id, target_table="raw.orders",
                                  pipeline="shop", start="2024-01-07", end="{{ macros.ds_add(ds, -2) }}")
    # A manual run at Jan 12 has the data interval [Jan 11, Jan 12): the check covers Jan 1 .. Jan 10.
    states = run_dag(dag, logical_date=JAN[11])
    assert states == {"gaps_fail": "failed", "gaps_warn": "success", "gaps_window": "failed"}

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        values = {
            x.task_id: x.value
            for x in session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.key == "return_value")
        }
    assert [(h["start"][:10], h["kind"]) for h in values["gaps_warn"]] == [
        ("2024-01-03", "missing"), ("2024-01-04", "missing"), ("2024-01-05", "failed"),
        ("2024-01-06", "rejected"), ("2024-01-09", "missing"), ("2024-01-10", "missing"),
    ]
    assert values["gaps_fail"] == values["gaps_warn"]  # also pushed when failing
    # start/end templated: 2024-01-07 .. ds - 2 days (2024-01-10) -> only day 9 is a hole there.
    assert [h["start"][:10] for h in values["gaps_window"]] == ["2024-01-09"]

    # Feed our command to Airflow's own CLI parser and backfill dry run: it must plan exactly the holes.
    import airflow

    if airflow.__version__.startswith("3.0."):
        pytest.skip("Airflow 3.0's dag.test() does not store the DAG where its backfill dry run looks it up")
    from airflow.cli.cli_parser import get_parser
    from airflow.models.backfill import ReprocessBehavior, _do_dry_run

    report = find_gaps(
        FailoverPostgresHook(postgres_conn_id=warehouse_conn_id, driver="psycopg"), schema="raw", table="orders",
        timetable=resolve_timetable("@daily"), start=JAN[0], end=JAN[10], pipeline="shop",
    )
    planned = []
    for command in report.backfill_commands(dag_id):
        args = get_parser().parse_args(shlex.split(command)[1:])
        assert args.reprocess_behavior == "completed"
        with create_session() as session:
            optional = {"dag_run_conf": None} if "dag_run_conf" in inspect.signature(_do_dry_run).parameters else {}
            infos = _do_dry_run(  # Airflow 3.0 has no dag_run_conf here
                dag_id=args.dag_id, from_date=args.from_date, to_date=args.to_date, reverse=False,
                reprocess_behavior=ReprocessBehavior(args.reprocess_behavior), session=session, **optional,
            )
        planned += [info.logical_date.day for info in infos]
    assert planned == [3, 4, 5, 6, 9, 10]


def test_operator_validates_its_config_at_parse_time():
    from airflow_provider_dataeng.operators.gap_check import PartitionGapCheckOperator

    with pytest.raises(ValueError, match="on_holes='ignore'"):
        PartitionGapCheckOperator(task_id="g", conn_id="c", target_table="raw.t", on_holes="ignore")
    with pytest.raises(ValueError, match="schedule='daily'"):
        PartitionGapCheckOperator(task_id="g", conn_id="c", target_table="raw.t", schedule="daily")
    with pytest.raises(ValueError, match="target_table"):
        PartitionGapCheckOperator(task_id="g", conn_id="c", target_table="a.b.c")


def test_date_partitions_and_hourly_schedules_read_bounds_from_the_catalog(pg_cluster, pg_db, hook):
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        conn.execute("create schema raw")
        conn.execute("create table raw.daily (id bigint, day date not null) partition by range (day)")
        # Names that do not follow any convention: bounds must come from pg_get_expr, not from names.
        conn.execute("create table raw.whatever_1 partition of raw.daily for values from ('2024-01-01') to ('2024-01-02')")
        conn.execute("create table raw.whatever_2 partition of raw.daily for values from ('2024-01-02') to ('2024-01-04')")
        create_partitioned_table(conn, "raw", "hourly")
        for h in (0, 1, 3):
            lo = JAN[0] + timedelta(hours=h)
            attach_partition(conn, "raw", "hourly", lo, lo + timedelta(hours=1))
    daily = gaps(hook, table="daily", end=JAN[4], pipeline=None)
    assert [h.interval.start.day for h in daily.holes] == [4]  # Jan 2 and 3 are covered by one partition
    hourly = gaps(hook, table="hourly", timetable=resolve_timetable("0 * * * *"), end=JAN[0] + timedelta(hours=5),
                  pipeline=None)
    assert [h.interval.start.hour for h in hourly.holes] == [2, 4]
    assert hourly.backfill_ranges() == [(JAN[0] + timedelta(hours=2),) * 2, (JAN[0] + timedelta(hours=4),) * 2]
