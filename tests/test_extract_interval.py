"""Which interval a run extracts (issue 13 item 3): conf/params, the data interval, else the DAG's last
complete interval from its timetable. The REST API test under the real scheduler is in
tests/test_extract_airflow.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_dataeng.extract.interval import resolve_interval

try:
    from airflow.sdk import CronDataIntervalTimetable, DeltaDataIntervalTimetable
except ImportError:  # Airflow < 3.1 (the lowest-versions run): the same classes from the core
    from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable

UTC = timezone.utc


def _ctx(timetable=None, run_after=None, conf=None, params=None, **extra):
    return {"dag": SimpleNamespace(timetable=timetable), "dag_run": SimpleNamespace(run_after=run_after, conf=conf),
            "params": params or {}, **extra}


def test_run_without_data_interval_takes_the_last_complete_interval():
    daily = CronDataIntervalTimetable("@daily", timezone="UTC")
    got = resolve_interval(_ctx(daily, datetime(2024, 3, 5, 10, 30, tzinfo=UTC)))
    assert (got.lower, got.upper) == (datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC))
    assert "last complete interval" in got.origin
    hourly = CronDataIntervalTimetable("0 * * * *", timezone="Europe/Berlin")
    got = resolve_interval(_ctx(hourly, datetime(2024, 3, 5, 10, 30, tzinfo=UTC)))
    assert (got.lower, got.upper) == (datetime(2024, 3, 5, 9, tzinfo=UTC), datetime(2024, 3, 5, 10, tzinfo=UTC))
    delta = DeltaDataIntervalTimetable(timedelta(hours=6))
    got = resolve_interval(_ctx(delta, datetime(2024, 3, 5, 10, tzinfo=UTC)))
    assert got.upper - got.lower == timedelta(hours=6) and got.upper <= datetime(2024, 3, 5, 10, tzinfo=UTC)


def test_data_interval_and_explicit_conf():
    lower, upper = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    got = resolve_interval(_ctx(data_interval_start=lower, data_interval_end=upper))
    assert (got.lower, got.upper, got.origin) == (lower, upper, "the run's data interval")
    conf = {"interval_start": "2023-12-01T00:00:00+01:00", "interval_end": "2023-12-02"}
    got = resolve_interval(_ctx(conf=conf, data_interval_start=lower, data_interval_end=upper))
    assert (got.lower, got.upper) == (datetime(2023, 11, 30, 23, tzinfo=UTC), datetime(2023, 12, 2, tzinfo=UTC))
    assert "conf" in got.origin
    got = resolve_interval(_ctx(params={"interval_start": "2023-12-01T00:00:00Z",
                                        "interval_end": "2023-12-01T06:00:00Z"}))
    assert got.upper - got.lower == timedelta(hours=6) and "params" in got.origin


@pytest.mark.parametrize(("conf", "message"), [
    ({"interval_start": "2024-01-01"}, "give both interval_start and interval_end"),
    ({"interval_start": "yesterday", "interval_end": "2024-01-02"}, "interval_start='yesterday': expected an ISO"),
    ({"interval_start": "2024-01-02", "interval_end": "2024-01-01"}, "is not before interval_end"),
    ({"interval_start": 5, "interval_end": "2024-01-01"}, "interval_start=5"),
])
def test_bad_conf_is_refused(conf, message):
    with pytest.raises(AirflowFailException, match=message):
        resolve_interval(_ctx(conf=conf))


def test_no_interval_and_no_timetable_says_what_to_do():
    with pytest.raises(AirflowFailException, match="give interval_start and interval_end"):
        resolve_interval({"run_id": "x"})
