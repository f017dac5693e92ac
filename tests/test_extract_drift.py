"""Schema drift detection and policies, on real catalogs of two clusters (no data is loaded here)."""

from __future__ import annotations

import pytest
from psycopg import sql

from airflow_provider_dataeng.extract.schema_drift import (
    SchemaDriftError,
    binary_compatible,
    compare,
    describe_query,
    ensure_enum_types,
    plan,
    table_columns,
)
from tests.fixtures.extract import connect


@pytest.fixture
def catalogs(source_cluster, source_db, pg_cluster, pg_db):
    source_cluster.psql(
        """create type status as enum ('placed', 'shipped');
           create domain positive_int as int check (value > 0);
           create type pair as (a int, b text);
           create table orders (id bigint, qty positive_int, status status, statuses status[], p pair,
                                amount numeric(12,2), note varchar(40), created_at timestamptz)""",
        source_db,
    )
    pg_cluster.psql(
        """create schema raw;
           create table raw.orders (id bigint, qty int, amount numeric(12,4), legacy text,
                                    _interval_start timestamptz)""",
        pg_db,
    )
    with connect(source_cluster, source_db) as src, connect(pg_cluster, pg_db, autocommit=True) as wh:
        yield src, wh


def test_describe_resolves_domains_enums_and_user_types(catalogs):
    src, _ = catalogs
    cols = {c.name: c for c in describe_query(src, sql.SQL("select * from orders"))}
    assert cols["qty"].type == "integer" and cols["qty"].kind == "builtin"
    assert cols["status"].kind == "enum" and cols["status"].enum_labels == ("placed", "shipped")
    assert cols["statuses"].kind == "enum_array" and cols["statuses"].enum_name == "status"
    assert cols["p"].kind == "other" and cols["p"].warehouse_type("raw") == "text"
    assert cols["amount"].type == "numeric(12,2)"
    assert cols["note"].type == "character varying(40)"
    assert cols["status"].warehouse_type("raw") == '"raw"."status"'
    assert cols["statuses"].warehouse_type("raw") == '"raw"."status"[]'


def test_duplicate_query_columns_are_rejected(catalogs):
    src, _ = catalogs
    with pytest.raises(ValueError, match="duplicate column names.*'id'"):
        describe_query(src, sql.SQL("select id, id from orders"))


def test_drift_report_and_policies(catalogs):
    src, wh = catalogs
    source = describe_query(src, sql.SQL("select * from orders"))
    target = table_columns(wh, "raw", "orders")
    assert target is not None and table_columns(wh, "raw", "nope") is None
    report = compare(source, target, skip=["_interval_start"])
    assert [c.name for c in report.new] == ["status", "statuses", "p", "note", "created_at"]
    assert [c.name for c in report.missing] == ["legacy"]
    assert [(s.name, s.type, t.type) for s, t in report.retyped] == [("amount", "numeric(12,2)", "numeric(12,4)")]
    for policy in ("fail", "add_columns", "ignore_extra"):
        with pytest.raises(SchemaDriftError, match=r"retyped \| amount \| numeric\(12,2\) \| numeric\(12,4\)"):
            plan(source, report, policy, target="raw.orders")
    # without the retyped column, add_columns and ignore_extra go ahead; fail still fails
    source = [c for c in source if c.name != "amount"]
    report = compare(source, target, skip=["_interval_start"])
    with pytest.raises(SchemaDriftError, match=r"new +\| created_at"):
        plan(source, report, "fail", target="raw.orders")
    added = plan(source, report, "add_columns", target="raw.orders")
    assert [c.name for c in added.add] == ["status", "statuses", "p", "note", "created_at"]
    assert [c.name for c in added.load] == [c.name for c in source]
    assert any("legacy" in n and "NULL" in n for n in added.notes)
    ignored = plan(source, report, "ignore_extra", target="raw.orders")
    assert ignored.add == [] and [c.name for c in ignored.load] == ["id", "qty"]
    with pytest.raises(ValueError, match="schema_drift='bogus'"):
        plan(source, report, "bogus", target="raw.orders")


def test_enum_types_are_created_and_extended_in_the_warehouse(catalogs, source_cluster, source_db):
    src, wh = catalogs
    source = describe_query(src, sql.SQL("select status, statuses from orders"))
    assert ensure_enum_types(wh, "raw", source) == ["raw.status"]
    assert ensure_enum_types(wh, "raw", source) == []
    source_cluster.psql("alter type status add value 'cancelled'", source_db)
    src.rollback()
    source = describe_query(src, sql.SQL("select status from orders"))
    assert ensure_enum_types(wh, "raw", source) == ["raw.status"]
    labels = [r[0] for r in wh.execute("select unnest(enum_range(null::raw.status))::text").fetchall()]
    assert labels == ["placed", "shipped", "cancelled"]
    wh.execute("create table raw.t (s raw.status)")
    target = {c.name: c for c in table_columns(wh, "raw", "t")}
    assert binary_compatible(source[0], target["s"])
    assert compare(source[:1], [target["s"]]).empty is False  # different names: new + missing
    wh.execute("create table raw.clash (x int); create type raw.notenum as (a int)")
    with pytest.raises(SchemaDriftError, match="not an enum"):
        from dataclasses import replace

        ensure_enum_types(wh, "raw", [replace(source[0], enum_name="notenum")])
