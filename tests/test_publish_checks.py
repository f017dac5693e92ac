"""Quality checks: config validation, each check on a real table, the failure table; small helpers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_dataeng.publish import (
    CheckError,
    ChecksFailed,
    TableRef,
    build_checks,
    format_check_table,
    parse_seconds,
    table_asset,
)
from tests.fixtures.publish import make_engine, q


@pytest.mark.parametrize(("specs", "message"), [
    ({"check": "row_count"}, "expected a list of check dicts"),
    (["row_count"], "checks\\[0\\]: expected a dict"),
    ([{"check": "rowcount", "min": 1}], "checks\\[0\\]: 'check' must be one of row_count, null_fraction"),
    ([{"check": "row_count"}], "checks\\[0\\] \\(row_count\\): row_count needs 'min' and/or 'max'"),
    ([{"check": "row_count", "min": 5, "max": 1}], "'min' \\(5\\) is greater than 'max' \\(1\\)"),
    ([{"check": "row_count", "min": -1}], "'min': input should be greater than or equal to 0, got -1"),
    ([{"check": "row_count", "min": "many"}], "'min': input should be a valid integer.*got 'many'"),
    ([{"check": "null_fraction", "column": "a", "max": 1.5}], "'max': input should be less than or equal to 1, got 1.5"),
    ([{"check": "null_fraction", "max": 0.1}], "missing key 'column'"),
    ([{"check": "unique", "columns": []}], "'columns': .*at least 1 item"),
    ([{"check": "accepted_values", "column": "s", "values": "a"}], "'values': input should be a valid list, got 'a'"),
    ([{"check": "sql", "sql": "select true"}], "missing key 'name'"),
    ([{"check": "drift", "max_change_pct": 10, "baseline": "x"}], "unknown key 'baseline'; expected max_change_pct, name"),
    ([{"check": "row_count", "min": 1}, {"check": "row_count", "max": 9}], "two checks are named 'row_count'"),
])
def test_bad_check_configs_name_the_item_and_key(specs, message):
    with pytest.raises(ValueError, match=message):
        build_checks(specs)


def test_every_check_on_a_real_table(wh_hook, db):
    q(db, """create schema s; create table s.t (id int, email text, status text, amount numeric);
             insert into s.t values (1, 'a@x', 'placed', 10), (2, null, 'shipped', 5), (2, 'c@x', 'lost', -1),
                                    (3, 'd@x', null, 0)""")
    engine = make_engine(wh_hook)
    with pytest.raises(ChecksFailed) as err:
        engine.check_table("s.t", [
            {"check": "row_count", "min": 1, "max": 4},
            {"check": "null_fraction", "column": "email", "max": 0.2},
            {"check": "unique", "columns": ["id"]},
            {"check": "accepted_values", "column": "status", "values": ["placed", "shipped", "cancelled"]},
            {"check": "sql", "name": "no_negative_amounts", "sql": "select count(*) = 0 from {table} where amount < 0"},
            {"check": "sql", "name": "braces_ok", "sql": "select '{\"a\": 1}'::jsonb ? 'a' and count(*) > 0 from {table}"},
        ])
    results = {r.check: r for r in err.value.results}
    assert (results["row_count"].observed, results["row_count"].passed) == (4, True)
    assert (results["null_fraction(email)"].observed, results["null_fraction(email)"].passed) == (0.25, False)
    assert (results["unique(id)"].observed, results["unique(id)"].passed) == (1, False)
    assert results["accepted_values(status)"].observed == 1 and "'lost'" in results["accepted_values(status)"].detail
    assert results["no_negative_amounts"].passed is False and results["braces_ok"].passed is True
    table = format_check_table(err.value.results).splitlines()
    assert [c.strip() for c in table[0].split(" | ")] == ["check", "observed", "threshold", "result"]
    assert any(line.startswith("null_fraction(email)") and line.endswith("FAILED") for line in table)
    assert "4 of 6 quality checks failed on s.t" in str(err.value)

    ok = engine.check_table(TableRef("s", "t"), [{"check": "row_count", "min": "2"},
                                                 {"check": "unique", "columns": ["id"], "max_duplicates": 1}])
    assert all(r.passed for r in ok)
    with pytest.raises(CheckError, match="check 'null_fraction\\(nope\\)' could not run on s.t"):
        engine.check_table("s.t", [{"check": "null_fraction", "column": "nope", "max": 0}])
    with pytest.raises(ValueError, match="must return one boolean"):
        engine.check_table("s.t", [{"check": "sql", "name": "n", "sql": "select count(*) from {table}"}])
    with pytest.raises(Exception, match="read-only transaction"):  # checks cannot change data
        engine.check_table("s.t", [{"check": "sql", "name": "w", "sql": "delete from {table} returning true"}])
    assert q(db, "select count(*) from s.t") == [(4,)]


def test_table_ref_durations_and_assets():
    assert TableRef.parse("orders") == TableRef("public", "orders")
    assert TableRef.parse("raw.orders").with_suffix("__staging") == TableRef("raw", "orders__staging")
    long = TableRef("raw", "y" * 63)
    assert len(long.with_suffix("__staging").table.encode()) == 63
    assert long.with_suffix("__staging") != TableRef("raw", "y" * 62 + "z").with_suffix("__staging")
    for bad in ("a.b.c", "", '"unterminated', "x" * 64):
        with pytest.raises(ValueError):
            TableRef.parse(bad)
    assert parse_seconds("2s") == 2 and parse_seconds("500ms") == 0.5 and parse_seconds("1.5m") == 90
    assert parse_seconds(timedelta(seconds=3)) == 3 and parse_seconds(1) == 1
    with pytest.raises(ValueError, match="lock_timeout='soon': expected a duration"):
        parse_seconds("soon", "lock_timeout")
    asset = table_asset("warehouse", "raw.My Table; x", database="wh")
    assert asset.uri == asset.name == "postgres://warehouse:5432/wh/raw/My%20Table%3B%20x"
