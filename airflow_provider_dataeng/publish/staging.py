"""Staging steps shared by every swap strategy: load, measure, check, and the staging table's housekeeping."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.catalog import execute
from airflow_provider_dataeng.publish.checks import Check, CheckContext, CheckResult, run_checks
from airflow_provider_dataeng.publish.errors import PublishError
from airflow_provider_dataeng.publish.locks import lock_key
from airflow_provider_dataeng.publish.renames import RETIRED_SUFFIXES
from airflow_provider_dataeng.publish.table_ref import TableRef
from airflow_provider_dataeng.values import first_line

log = logging.getLogger(__name__)

_SAFE_TYPE_TEXT = re.compile(r'^[A-Za-z_"][A-Za-z0-9_ ."(),\[\]]*$')

Loader = Callable[[psycopg.Connection, TableRef], Any]


@dataclass
class LoadStats:
    """What a loader callback may return (all optional): rows, bytes read, details for the ledger."""

    rows: int | None = None
    bytes: int | None = None
    details: dict = field(default_factory=dict)


def run_loader(conn: psycopg.Connection, loader: Loader, staging: TableRef) -> LoadStats:
    """Run the loader in a transaction on ``conn`` (it may commit itself); commit after it."""
    conn.autocommit = False
    try:
        out = loader(conn, staging)
        conn.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    finally:
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.autocommit = True
    if out is None:
        return LoadStats()
    if isinstance(out, LoadStats):
        return out
    if isinstance(out, int) and not isinstance(out, bool):
        return LoadStats(rows=out)
    raise PublishError(f"loader returned {type(out).__name__}: expected LoadStats, an int or None")


def measure(conn: psycopg.Connection, staging: TableRef, loader_rows: int | None = None, *,
            analyze: bool = False) -> tuple[int, int]:
    """VACUUM staging (with ANALYZE when ``analyze``), then count it: ``(rows, bytes)``.

    The new table goes live with hint bits, a visibility map and its row and page counts (the planner's
    size estimates); a COPY FREEZE load has set the first two already, so this VACUUM only records the
    counts (tens of milliseconds for a million rows). ANALYZE samples 30,000 rows (a constant 0.2-0.4 s
    per load beyond that size): with ``analyze`` the table goes live with column statistics; without,
    autovacuum analyzes it at its next round. The count is the engine's own; a loader's count
    (``loader_rows``) is compared with it, never trusted.
    """
    execute(conn, sql.SQL("vacuum (analyze) {}" if analyze else "vacuum {}").format(staging.ident()))
    rows = int(catalog.scalar(conn, sql.SQL("select count(*) from {}").format(staging.ident())))
    if loader_rows is not None and loader_rows != rows:
        raise PublishError(f"the loader reported {loader_rows} rows, staging holds {rows}: the load is not what it "
                           "says; nothing was published")
    size = catalog.scalar(conn, "select pg_total_relation_size(%s::oid)", [catalog.relation(conn, staging).oid])
    return rows, int(size)


def check(conn: psycopg.Connection, table: TableRef, rows: int, baseline: TableRef | None,
          checks: Sequence[Check]) -> list[CheckResult]:
    """Run ``checks`` on ``table`` in a read-only transaction."""
    if not checks:
        return []
    with conn.transaction():
        execute(conn, "set transaction read only")
        return run_checks(CheckContext(conn, table, rows, baseline), checks)


def select_query(select_sql: str) -> sql.Composed:
    """``select * from (<select_sql>) q``: exactly one query (a second statement is a syntax error)."""
    return sql.SQL("select * from ({}) q").format(sql.SQL(select_sql.strip().rstrip(";").strip()))


def select_columns(conn: psycopg.Connection, select_sql: str) -> list[tuple[str, int]]:
    """``[(name, type oid)]`` of the query's result columns (runs it with ``limit 0``)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("{} limit 0").format(select_query(select_sql)))
        return [(d.name, d.type_code) for d in cur.description]


def insert_select(conn: psycopg.Connection, staging: TableRef, select_sql: str, partition_column: str,
                  lower_sql: sql.Composable) -> None:
    """INSERT the query's rows by column name; a missing partition column gets the lower bound."""
    names = [name for name, _ in select_columns(conn, select_sql)]
    if len(set(names)) != len(names):
        raise PublishError(f"select_sql returns duplicate column names: {names}")
    targets = [sql.Identifier(n) for n in names]
    values: list[sql.Composable] = [sql.SQL("q.{}").format(sql.Identifier(n)) for n in names]
    if partition_column not in names:
        targets.append(sql.Identifier(partition_column))
        values.append(lower_sql)
    execute(conn, sql.SQL("insert into {} ({}) select {} from ({}) q").format(
        staging.ident(), sql.SQL(", ").join(targets), sql.SQL(", ").join(values), select_query(select_sql)))


def validate_columns(conn: psycopg.Connection, columns: Sequence[tuple[str, str]]) -> None:
    """``(name, sql type)`` pairs: names unique and non-empty, types known to the server."""
    if not columns:
        raise ValueError("columns: expected a non-empty list of (name, type) pairs")
    seen: set[str] = set()
    for i, item in enumerate(columns):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise ValueError(f"columns[{i}]: expected a (name, sql type) pair, got {item!r}")
        name, typ = item
        if not name or name in seen:
            raise ValueError(f"columns[{i}]: column name {name!r} is empty or repeated")
        seen.add(name)
        bad = not _SAFE_TYPE_TEXT.match(typ) or "--" in typ
        if not bad:
            try:
                with conn.transaction():
                    bad = catalog.scalar(conn, "select to_regtype(%s) is null", [typ])
            except psycopg.Error:
                bad = True
        if bad:
            raise ValueError(f"columns[{i}] ({name}): {typ!r} is not a known PostgreSQL type")


def column_list(conn: psycopg.Connection, columns: Sequence[tuple[str, str]]) -> sql.Composed:
    """A validated ``"name" type, ...`` list for CREATE TABLE."""
    validate_columns(conn, columns)
    return sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns)


def ensure_schema(conn: psycopg.Connection, schema: str) -> None:
    """Create ``schema`` when missing; safe when concurrent runs create it (``IF NOT EXISTS`` alone is not)."""
    if catalog.scalar(conn, "select count(*) from pg_namespace where nspname = %s", [schema]):
        return
    with conn.transaction():
        execute(conn, "select pg_advisory_xact_lock(%s)", [lock_key("schema", schema)])
        execute(conn, sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))


def drop_if_exists(conn: psycopg.Connection, ref: TableRef) -> bool:
    """Drop a leftover table of an earlier attempt; True when there was one."""
    if catalog.relation(conn, ref) is None:
        return False
    log.info("Dropping leftover %s from an earlier attempt", ref)
    execute(conn, sql.SQL("drop table if exists {}").format(ref.ident()))
    return True


def drop_retired(conn: psycopg.Connection, base: TableRef) -> None:
    """Drop the ``__retired`` tables of ``base`` (after the swap committed, or leftovers of a crash)."""
    for suffix in RETIRED_SUFFIXES:
        ref = base.with_suffix(suffix)
        try:
            if catalog.relation(conn, ref) is not None:
                execute(conn, sql.SQL("drop table {}").format(ref.ident()))
        except psycopg.Error as exc:  # a user's view on an old __previous, a lost connection: not fatal
            log.warning("Could not drop %s (%s); the next publish retries", ref, first_line(exc))
