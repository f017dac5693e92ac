"""Helpers for the extract tests and benchmark: connections, table fingerprints, backend killers."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from tests.support.pg import PgCluster

ALL_TYPES_ENUM = "create type mood as enum ('sad', 'ok', 'happy', 'it''s complicated')"
ALL_TYPES_DDL = """
create table all_types (
  id int primary key,
  n numeric,
  money_amount numeric(12,2),
  f8 double precision,
  ts timestamptz,
  d date,
  t text,
  b bytea,
  j json,
  jb jsonb,
  arr int[],
  tarr text[],
  u uuid,
  e mood,
  updated_at timestamptz
)
"""
ALL_TYPES_ROWS = r"""
insert into all_types values
 (1, 123456789012345678901234567890.123456789012345678901234567890, 12.34, 1.0000000000000002,
  '2024-02-29 23:59:59.999999+00', '0044-03-15 BC', E'tab\there\nnew line\\back\\slash \u00e9\u4e2d\U0001F600',
  '\x00ff5c0a09'::bytea, '{"a": [1, 2.50, "x\ty"],  "b" : null}', '{"k": "v\\n", "n": 1.000}',
  '{1,NULL,3}', array['a,b', 'q"uote', 'back\slash', '', null, 'NULL'], 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  'it''s complicated', '2024-01-01 10:00+00'),
 (2, 'NaN', -0.01, 'Infinity', 'infinity', 'infinity', '', ''::bytea, 'null', '[]', '{}', '{}', null, 'sad',
  '2024-01-01 11:00+00'),
 (3, null, null, '-0', '1970-01-01 00:00:00+00', '2000-01-01', null, null, null, null, null, null, null, null,
  '2024-01-01 12:00+00'),
 (4, -0.000000000000000000001, 9999999999.99, 'NaN', '2024-06-01 12:34:56.789+05:30', '2024-06-01', '\N',
  '\x5c4e'::bytea, '"\\N"', '"\u00e9"', '{{1,2},{3,4}}', array[E'line\nbreak', E'tab\t'], gen_random_uuid(),
  'happy', '2024-01-01 13:00+00')
"""


def connect(cluster: PgCluster, dbname: str, **kw: Any) -> psycopg.Connection:
    return psycopg.connect(cluster.dsn(dbname), **kw)


def fingerprint(cluster: PgCluster, dbname: str, query: str) -> tuple[int, str]:
    """(row count, md5 of every row's text form in order) of ``query``'s rows (ordered by its first column)."""
    with connect(cluster, dbname) as conn:
        row = conn.execute(
            f"select count(*), coalesce(md5(string_agg(q::text, '|' order by q::text)), '') from ({query}) q"
        ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def rows_of(cluster: PgCluster, dbname: str, query: str) -> list[tuple]:
    with connect(cluster, dbname) as conn:
        return conn.execute(query).fetchall()


class BackendKiller(threading.Thread):
    """Terminates the backend running a COPY on ``cluster`` once it has processed ``min_tuples`` rows."""

    def __init__(self, cluster: PgCluster, dbname: str, *, command: str, min_tuples: int = 1000,
                 timeout: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.cluster, self.dbname, self.command = cluster, dbname, command
        self.min_tuples, self.timeout = min_tuples, timeout
        self.killed_pid: int | None = None
        self.tuples_at_kill: int | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        with connect(self.cluster, self.dbname, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "select pid, tuples_processed from pg_stat_progress_copy where command = %s"
                    " and datname = current_database() and tuples_processed >= %s",
                    [self.command, self.min_tuples],
                ).fetchone()
                if row:
                    conn.execute("select pg_terminate_backend(%s)", [row[0]])
                    self.killed_pid, self.tuples_at_kill = row
                    return
                time.sleep(0.01)


def run_extract(lower: Any, upper: Any | None = None, **params: Any) -> dict:
    """Run IdempotentExtractOperator.execute for ``[lower, upper)`` (default: one day) and return its XCom."""
    from datetime import timedelta

    from airflow_provider_dataeng.operators.extract import IdempotentExtractOperator

    params.setdefault("task_id", "extract")
    params.setdefault("progress_interval", "1s")
    op = IdempotentExtractOperator(**params)
    upper = upper if upper is not None else lower + timedelta(days=1)
    return op.execute({"data_interval_start": lower, "data_interval_end": upper, "run_id": "test"})  # type: ignore[arg-type]


def partition_bounds(cluster: PgCluster, dbname: str, schema: str, table: str) -> list[tuple[str, str]]:
    """(partition name, bound expression) of every partition of ``schema.table``, from the catalog."""
    return [
        (r[0], r[1]) for r in rows_of(
            cluster, dbname,
            f"""select c.relname::text, pg_get_expr(c.relpartbound, c.oid) from pg_inherits i
                join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent
                join pg_namespace n on n.oid = p.relnamespace
                where n.nspname = '{schema}' and p.relname = '{table}' order by 1""",
        )
    ]
