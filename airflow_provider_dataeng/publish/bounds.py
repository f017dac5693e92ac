"""Range partitions of a target: naming a partition, normalizing bounds, reading the layout from the catalog."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.errors import PublishError
from airflow_provider_dataeng.publish.table_ref import TableRef

BOUNDS_CONSTRAINT = "dataeng_partition_bounds"
PARTITION_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


def partition_suffix(lower: datetime | date) -> str:
    """``YYYYMMDD`` for a midnight (UTC) start, else ``YYYYMMDDTHHMMSS``."""
    if not isinstance(lower, datetime):
        return lower.strftime("%Y%m%d")
    if lower.tzinfo is not None:
        lower = lower.astimezone(timezone.utc)
    if (lower.hour, lower.minute, lower.second, lower.microsecond) == (0, 0, 0, 0):
        return lower.strftime("%Y%m%d")
    return lower.strftime("%Y%m%dT%H%M%S")


def partition_ref(target: TableRef, lower: datetime | date) -> TableRef:
    """The partition child of ``target`` starting at ``lower``: ``<table>__p_<start>``."""
    return target.with_suffix(f"__p_{partition_suffix(lower)}")


def as_utc_datetime(value: datetime | date | None) -> datetime | None:
    """A bound as an aware UTC datetime (dates are midnight UTC; naive datetimes are UTC)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def normalize_bound(value: Any, column_type: str, field_name: str) -> datetime | date:
    """A partition bound as the Python value matching ``column_type`` (aware UTC, naive UTC or date)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{field_name}: {value!r} is not an ISO date or timestamp") from None
    if not isinstance(value, (datetime, date)):
        raise ValueError(f"{field_name}: expected a datetime, date or ISO string, got {value!r}")
    if column_type == "date":
        if isinstance(value, datetime):
            utc = as_utc_datetime(value)
            if (utc.hour, utc.minute, utc.second, utc.microsecond) != (0, 0, 0, 0):
                raise ValueError(f"{field_name}: {value!r} is not midnight UTC (the partition column is a date)")
            return utc.date()
        return value
    utc = as_utc_datetime(value)
    return utc if column_type == "timestamp with time zone" else utc.replace(tzinfo=None)


def bounds_sql(lower: Any, upper: Any, column_type: str) -> tuple[sql.Composable, sql.Composable]:
    """The bounds as typed SQL literals."""
    typ = sql.SQL(column_type)
    return (sql.SQL("{}::{}").format(sql.Literal(lower.isoformat()), typ),
            sql.SQL("{}::{}").format(sql.Literal(upper.isoformat()), typ))


def partition_column_type(conn: psycopg.Connection, parent: catalog.Relation, column: str) -> str:
    """The type of ``parent``'s range partition column ``column``; PublishError for any other layout."""
    if parent.relkind != "p":
        raise PublishError(f"{parent.ref} exists and is not a partitioned table (relkind {parent.relkind})")
    key = catalog.partition_key(conn, parent.oid)
    if key is None or key[0] != "r" or key[1] != column:
        raise PublishError(f"{parent.ref} is not range-partitioned on {column!r} (partition key: {key})")
    if key[2] not in PARTITION_TYPES:
        raise PublishError(f"{parent.ref}: partition column {column!r} has type {key[2]}, expected one of "
                           f"{', '.join(PARTITION_TYPES)}")
    return key[2]


def find_partition(conn: psycopg.Connection, parent: catalog.Relation, column: str, column_type: str,
                   lower: Any, upper: Any) -> catalog.PartitionInfo | None:
    """The child with exactly these bounds, or None; any other overlapping child is an error. Reads only
    the children the server's partition pruning selects for the range (not every child)."""
    exact = None
    for part in catalog.overlapping_partitions(conn, parent.ref, parent.oid, column, column_type, lower, upper):
        if part.is_default:
            continue
        if part.lower == lower and part.upper == upper:
            exact = part
        elif (part.lower is None or part.lower < upper) and (part.upper is None or lower < part.upper):
            raise PublishError(f"partition {part.ref} [{part.lower}, {part.upper}) overlaps the bounds "
                               f"[{lower}, {upper}) of this publish; align the partition layout")
    return exact


def previous_upper(conn: psycopg.Connection, prev: catalog.Relation, column_type: str) -> Any:
    """Upper bound of a detached ``__previous`` partition, from its bounds CHECK constraint."""
    found = catalog.rows(conn, """select pg_get_constraintdef(oid) from pg_constraint
                                  where conrelid = %s and conname = %s""", [prev.oid, BOUNDS_CONSTRAINT])
    m = re.search(r"< '((?:[^']|'')*)'", found[0][0]) if found else None
    if not m:
        raise PublishError(f"{prev.ref} has no {BOUNDS_CONSTRAINT} constraint: cannot tell its bounds")
    return normalize_bound(catalog.scalar(conn, sql.SQL("select %s::{}").format(sql.SQL(column_type)),
                                          [m.group(1).replace("''", "'")]), column_type, "previous upper bound")
