"""Extract configuration: durations, validation messages, quoting of every identifier in generated SQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from psycopg import sql

from airflow_provider_dataeng.durations import require_duration
from airflow_provider_dataeng.extract.modes import IntervalSelect, base_query, known_ids_table
from airflow_provider_dataeng.extract.schema_drift import Column
from airflow_provider_dataeng.extract.spec import ExtractSpec
from airflow_provider_dataeng.publish.table_ref import TableRef

BASE = {"source_conn_id": "s", "target_conn_id": "w", "target_table": "raw.t", "source_table": "t"}


@pytest.mark.parametrize(("text", "seconds"), [
    ("0s", 0), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400), (2.5, 2.5),
    (timedelta(minutes=2), 120), (" 2 h ", 7200),
])
def test_require_duration(text, seconds):
    assert require_duration(text, "lag").total_seconds() == seconds


@pytest.mark.parametrize("bad", ["soon", "", "5x", "-1s", True, None, "1h-5m"])
def test_require_duration_rejects(bad):
    with pytest.raises(ValueError, match="lag="):
        require_duration(bad, "lag")


@pytest.mark.parametrize(("override", "message"), [
    ({"mode": "delta"}, "mode\n.*'full_snapshot', 'incremental_timestamp' or 'incremental_id'"),
    ({"schema_drift": "merge"}, "schema_drift\n.*'fail', 'add_columns' or 'ignore_extra'"),
    ({"source_sql": "select 1"}, "give exactly one of them"),
    ({"source_table": None}, "give exactly one of them"),
    ({"key_columns": []}, "key_columns"),
    ({"target_table": ""}, "target_table\n"),
    ({"checks": {"check": "row_count"}}, "checks\n"),
    ({"checks": [{"check": "row_cont"}]}, "checks.0\n.*'row_cont'.*expected tags: 'row_count'"),
    ({"progress_interval": "often"}, "progress_interval\n.*expected a duration"),
    ({"source_timezone": "Mars/Base"}, "source_timezone\n.*'Mars/Base': expected an IANA time zone"),
    ({"swap_attempts": 0}, "swap_attempts\n"),
    ({"lag": "-5m"}, "lag\n.*expected a duration"),
])
def test_spec_validation_names_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        ExtractSpec(**{**BASE, **override})


def test_publish_knobs_reach_the_spec_from_operator_and_config():
    """swap_attempts, keep_previous, keep_failed_staging: one definition, reachable from a config."""
    from airflow_provider_dataeng.factory.task_types import task_model
    from airflow_provider_dataeng.operators.extract import IdempotentExtractOperator
    from airflow_provider_dataeng.specs import build_spec

    task = task_model("extract").model_validate({"type": "extract", **BASE, "swap_attempts": 9,
                                                 "keep_previous": True, "lag": "1h"})
    assert (task.swap_attempts, task.keep_previous, task.lag) == (9, True, timedelta(hours=1))
    op = IdempotentExtractOperator(task_id="t", **BASE, swap_attempts=9, keep_failed_staging=True)
    spec = build_spec(op, ExtractSpec)
    assert (spec.swap_attempts, spec.keep_failed_staging, spec.lag) == (9, True, timedelta(minutes=15))
    with pytest.raises(ValueError, match="swap_attempts"):
        IdempotentExtractOperator(task_id="t2", **BASE, swap_attempts=0)
    # templated values are validated after templating, not at parse time
    IdempotentExtractOperator(task_id="t3", **{**BASE, "target_table": "raw.{{ dag.dag_id }}"}, swap_attempts=0)


def test_generated_sql_quotes_every_identifier():
    weird = 'we"ird; drop table x; --'
    cols = [Column(weird, "integer", 23, "builtin"), Column("Mixed Case", "text", 25, "builtin")]
    lower = datetime(2024, 1, 1, tzinfo=timezone.utc)
    sel = IntervalSelect(mode="incremental_id", columns=cols, lower=lower, upper=lower + timedelta(days=1),
                         partition_column='p"c', stamp=True, id_column=weird)
    base = base_query(TableRef("my schema", 'ta"ble').ident(), None)
    text = sel.select(base, known_ids_table()).as_string(None)
    assert '"we""ird; drop table x; --"' in text and '"Mixed Case"' in text
    assert 'from "my schema"."ta""ble"' in text
    # the stamped partition column is not selected: the warehouse fills it in (the staging column's default)
    assert 'p""c' not in text and sel.target_columns == [weird, "Mixed Case"]
    assert sel.partition_value().as_string(None).startswith("'2024-01-01 00:00:00+00:00'::timestamptz")
    with pytest.raises(ValueError, match="timestamp_column='updated_at': not a column"):
        IntervalSelect(mode="incremental_timestamp", columns=cols, lower=lower, upper=lower, partition_column="p",
                       stamp=True, timestamp_column="updated_at")
    assert base_query(None, " select 1 ;; ").as_string(None) == "select 1"
    with pytest.raises(ValueError, match="exactly one"):
        base_query(sql.Identifier("t"), "select 1")
