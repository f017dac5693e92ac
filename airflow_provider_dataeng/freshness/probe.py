"""The freshness probe: ONE query returning ``max(<timestamp column>)`` and the database's ``now()``.

``select (select max(col) from t [where filter]) as max_loaded_at, now() as observed_at``: PostgreSQL answers
``max(col)`` from a btree index on ``col`` with a backward index(-only) scan and ``limit 1`` (see
``benchmarks/freshness.py`` for the plan), so a poke costs milliseconds however large the table. The lag
is measured against the database clock, so worker clock skew does not matter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_dataeng import values
from airflow_provider_dataeng.freshness.errors import FreshnessConfigError

if TYPE_CHECKING:  # psycopg is imported when a probe runs, not when a DAG is parsed
    from psycopg import sql


def split_table_name(text: str, *, field: str = "table", default_schema: str = "public") -> tuple[str, str]:
    """``"schema.table"`` or ``"table"`` -> ``(schema, table)``, parsed like the publish engine's ``TableRef``."""
    from airflow_provider_dataeng.publish.table_ref import TableRef

    try:
        ref = TableRef.parse(text, default_schema=default_schema)
    except ValueError as exc:
        raise ValueError(f"{field}={text!r}: {exc}") from None
    return ref.schema, ref.table


@dataclass(frozen=True)
class FreshnessQuery:
    """What to measure: ``max(timestamp_column)`` of ``schema.table`` (optionally filtered) or a custom query.

    :param loaded_at_query: SQL returning one row with one timestamp column (like dbt's
        ``loaded_at_query``); used instead of ``max(timestamp_column)``.
    :param filter: a SQL boolean expression (the DAG author's, not user data) limiting the rows considered.
    """

    schema: str
    table: str
    timestamp_column: str | None = None
    loaded_at_query: str | None = None
    filter: str | None = None

    def __post_init__(self) -> None:
        if bool(self.timestamp_column) == bool(self.loaded_at_query):
            raise ValueError(
                f"freshness of {self.display_table}: set exactly one of timestamp_column or loaded_at_query"
            )
        if self.loaded_at_query and self.filter:
            raise ValueError(
                f"freshness of {self.display_table}: filter only applies to timestamp_column; "
                "put the condition into loaded_at_query instead"
            )

    @property
    def display_table(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def measured(self) -> str:
        """What is measured, for messages: ``max(loaded_at)`` or ``loaded_at_query``."""
        return f"max({self.timestamp_column})" if self.timestamp_column else "loaded_at_query"

    def sql(self) -> sql.Composed:
        """The probe statement; identifiers quoted, the filter / custom query are the DAG author's SQL."""
        from psycopg import sql

        if self.loaded_at_query:
            inner: sql.Composable = sql.SQL(self.loaded_at_query.strip().rstrip(";"))
        else:
            inner = sql.SQL("select max({col}) from {tbl}").format(
                col=sql.Identifier(self.timestamp_column or ""),
                tbl=sql.Identifier(self.schema, self.table),
            )
            if self.filter:
                inner = sql.SQL("{inner} where ({flt})").format(inner=inner, flt=sql.SQL(self.filter))
        return sql.SQL("select ({inner}) as max_loaded_at, now() as observed_at").format(inner=inner)


@dataclass(frozen=True)
class Observation:
    """One probe's result: the newest timestamp (``None`` when there are no rows) and the DB clock."""

    max_loaded_at: datetime | None
    observed_at: datetime


def interpret_row(query: FreshnessQuery, row: Any) -> Observation:
    """Turn the probe's row into an :class:`Observation` (naive timestamps and dates are taken as UTC)."""
    value, observed_at = row
    return Observation(max_loaded_at=_as_utc(query, value), observed_at=_as_utc(query, observed_at))


def _as_utc(query: FreshnessQuery, value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    raise FreshnessConfigError(
        f"{query.display_table}: {query.measured} returned a {type(value).__name__} ({value!r}); expected a "
        "timestamp, timestamptz or date"
    )


def translate_error(query: FreshnessQuery, exc: BaseException) -> FreshnessConfigError | None:
    """A clear, non-retryable error for a probe that can never succeed (missing table/column, bad SQL)."""
    from psycopg import errors as pg_errors

    first_line = values.first_line(exc)
    if isinstance(exc, pg_errors.UndefinedTable):
        return FreshnessConfigError(f"table {query.display_table} does not exist ({first_line})")
    if isinstance(exc, pg_errors.UndefinedColumn):
        if query.timestamp_column:
            where = f" or in filter {query.filter!r}" if query.filter else ""
            return FreshnessConfigError(
                f"table {query.display_table} has no column {query.timestamp_column!r} (timestamp_column"
                f"{where}): {first_line}"
            )
        return FreshnessConfigError(f"{query.display_table}: loaded_at_query names a missing column: {first_line}")
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith(("42", "22")):  # syntax/access/undefined object, data exceptions
        return FreshnessConfigError(f"freshness probe on {query.display_table} failed: {first_line}")
    return None


@contextlib.contextmanager
def _clear_errors(query: FreshnessQuery) -> Iterator[None]:
    """Turn a probe error that can never go away into a :class:`FreshnessConfigError`."""
    try:
        yield
    except Exception as exc:
        clear = translate_error(query, exc)
        if clear is not None:
            raise clear from exc
        raise


def probe(conn: Any, query: FreshnessQuery) -> Observation:
    """Run the probe on a psycopg 3 connection (one statement)."""
    with _clear_errors(query), conn.cursor() as cur:
        cur.execute(query.sql())
        row = cur.fetchone()
    return interpret_row(query, row)


async def aprobe(aconn: Any, query: FreshnessQuery) -> Observation:
    """Run the probe on a psycopg 3 ``AsyncConnection`` (one statement)."""
    with _clear_errors(query):
        async with aconn.cursor() as cur:
            await cur.execute(query.sql())
            row = await cur.fetchone()
    return interpret_row(query, row)
