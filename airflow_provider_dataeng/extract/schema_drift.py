"""Source vs warehouse column comparison before a load, and the drift policies.

Type rules (documented in docs/extract.md):

- Built-in types (OID below 16384) keep their exact type (``format_type`` text) in the warehouse.
- Domains are described by their base type.
- Enums (and arrays of enums) become an enum type of the same name in the target table's schema of the
  warehouse, created when missing and extended with missing labels (:func:`ensure_enum_types`).
- Any other user-defined type (composite, range, extension types) is stored as ``text``.

Policies: ``fail`` (any new, missing or retyped column fails), ``add_columns`` (new source columns are
added to the target as nullable columns), ``ignore_extra`` (new source columns are not loaded). Under
``add_columns`` and ``ignore_extra`` a target column missing from the source is loaded as NULL (logged).
A retyped column fails under every policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from airflow.providers.common.compat.sdk import AirflowFailException
from psycopg import sql

DRIFT_POLICIES = ("fail", "add_columns", "ignore_extra")
FIRST_USER_OID = 16384

_TYPE_INFO_SQL = """
with cols as (
  select c.oid, c.mod, c.ord from unnest(%(oids)s::oid[], %(mods)s::int[]) with ordinality as c(oid, mod, ord)
), base as (
  select c.ord,
         case when t.typtype = 'd' then t.typbasetype else t.oid end as oid,
         case when t.typtype = 'd' then t.typtypmod else c.mod end as mod
  from cols c join pg_type t on t.oid = c.oid
)
select b.ord, b.oid::int8, format_type(b.oid, b.mod), t.typtype::text, t.typname::text,
       e.typtype::text, e.typname::text,
       (select array_agg(x.enumlabel::text order by x.enumsortorder) from pg_enum x
         where x.enumtypid = case when t.typtype = 'e' then t.oid when e.typtype = 'e' then e.oid end)
from base b join pg_type t on t.oid = b.oid
left join pg_type e on e.oid = t.typelem and t.typcategory = 'A'
order by b.ord
"""


class SchemaDriftError(AirflowFailException):
    """The source's columns differ from the target's in a way the drift policy does not allow."""


@dataclass(frozen=True)
class Column:
    """One column, with what the warehouse needs to know about its type."""

    name: str
    type: str  # format_type() text in the database it was read from
    type_oid: int
    kind: str  # builtin | enum | enum_array | other
    enum_name: str | None = None
    enum_labels: tuple[str, ...] = ()

    @property
    def identity(self) -> tuple[str, str]:
        """What must be equal for a source column and a warehouse column to be 'the same type'."""
        if self.kind in ("enum", "enum_array"):
            return (self.kind, self.enum_name or "")
        return (self.kind, self.type)

    def warehouse_identity(self) -> tuple[str, str]:
        """The identity this source column has once stored in the warehouse."""
        if self.kind == "other":
            return ("builtin", "text")
        return self.identity

    def warehouse_type(self, schema: str) -> str:
        """SQL type text for this source column in a warehouse table of ``schema``."""
        if self.kind in ("enum", "enum_array"):
            assert self.enum_name is not None
            name = sql.Composed([sql.Identifier(schema), sql.SQL("."), sql.Identifier(self.enum_name)])
            return name.as_string(None) + ("[]" if self.kind == "enum_array" else "")
        if self.kind == "other":
            return "text"
        return self.type


def binary_compatible(source: Column, target: Column) -> bool:
    """True when binary COPY output of ``source`` can be read by the ``target`` column unchanged.

    Exact built-in type matches only (binary arrays embed element type OIDs, identical for built-in
    types across clusters) plus enum to enum (the binary form of an enum is its label).
    """
    if source.kind == "builtin" and target.kind == "builtin":
        return source.type_oid == target.type_oid and source.type == target.type
    return source.kind == "enum" and target.kind == "enum"


def describe_columns(conn: psycopg.Connection, names: Sequence[str], oids: Sequence[int],
                     mods: Sequence[int]) -> list[Column]:
    """Columns from names, type OIDs and type modifiers (types resolved in one statement)."""
    if not names:
        return []
    with conn.cursor() as cur:
        cur.execute(_TYPE_INFO_SQL, {"oids": list(oids), "mods": list(mods)})
        rows = cur.fetchall()
    columns = []
    for name, (_, oid, type_text, typtype, typname, elem_typtype, elem_name, labels) in zip(names, rows, strict=True):
        if typtype == "e":
            kind, enum_name = "enum", typname
        elif elem_typtype == "e":
            kind, enum_name = "enum_array", elem_name
        elif oid < FIRST_USER_OID:
            kind, enum_name = "builtin", None
        else:
            kind, enum_name = "other", None
        columns.append(Column(name, type_text, int(oid), kind, enum_name, tuple(labels or ())))
    return columns


def describe_query(conn: psycopg.Connection, query: sql.Composable) -> list[Column]:
    """The columns a SELECT returns (run with LIMIT 0; no rows are read)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select * from ({}) as _dataeng_describe limit 0").format(query))
        res = cur.pgresult
        assert res is not None
        names = [d.name for d in cur.description or []]
        oids = [res.ftype(i) for i in range(res.nfields)]
        mods = [res.fmod(i) for i in range(res.nfields)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"source query returns duplicate column names {dupes}: give each column a unique alias")
    return describe_columns(conn, names, oids, mods)


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> list[Column] | None:
    """The columns of ``schema.table`` in attribute order, or None when the table does not exist.

    One statement (one snapshot): a table another session creates meanwhile reads as absent or with all
    its columns, never as a table without columns."""
    with conn.cursor() as cur:
        cur.execute(
            """select array(select a.attname::text from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
                              and not a.attisdropped order by a.attnum),
                      array(select a.atttypid::int8 from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
                              and not a.attisdropped order by a.attnum),
                      array(select a.atttypmod::int from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
                              and not a.attisdropped order by a.attnum)
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = %s and c.relname = %s""",
            [schema, table],
        )
        row = cur.fetchone()
    if row is None:
        return None
    return describe_columns(conn, *row)


@dataclass
class DriftReport:
    """Differences between the source columns and the target table's columns."""

    new: list[Column] = field(default_factory=list)  # in the source, not in the target
    missing: list[Column] = field(default_factory=list)  # in the target, not in the source
    retyped: list[tuple[Column, Column]] = field(default_factory=list)  # (source, target)

    @property
    def empty(self) -> bool:
        return not (self.new or self.missing or self.retyped)

    def describe(self) -> str:
        """A readable table of every difference."""
        lines = ["change  | column | source type | target type", "--------+--------+-------------+------------"]
        lines += [f"new     | {c.name} | {c.type} | -" for c in self.new]
        lines += [f"missing | {c.name} | - | {c.type}" for c in self.missing]
        lines += [f"retyped | {s.name} | {s.type} | {t.type}" for s, t in self.retyped]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": [[c.name, c.type] for c in self.new],
            "missing": [[c.name, c.type] for c in self.missing],
            "retyped": [[s.name, s.type, t.type] for s, t in self.retyped],
        }


def compare(source: Sequence[Column], target: Sequence[Column], *, skip: Sequence[str] = ()) -> DriftReport:
    """Compare by column name; columns named in ``skip`` (e.g. the stamped partition column) are ignored."""
    src = {c.name: c for c in source if c.name not in skip}
    tgt = {c.name: c for c in target if c.name not in skip}
    report = DriftReport()
    for name, col in src.items():
        other = tgt.get(name)
        if other is None:
            report.new.append(col)
        elif col.warehouse_identity() != other.identity:
            report.retyped.append((col, other))
    report.missing = [c for name, c in tgt.items() if name not in src]
    return report


@dataclass
class DriftPlan:
    """What to do about a drift report under a policy."""

    load: list[Column]  # source columns to copy, in source order
    add: list[Column]  # source columns to add to the target (nullable)
    report: DriftReport
    notes: list[str] = field(default_factory=list)


def plan(source: Sequence[Column], report: DriftReport, policy: str, *, target: str) -> DriftPlan:
    """Apply ``policy`` to ``report``; raise :class:`SchemaDriftError` when it does not allow the drift."""
    if policy not in DRIFT_POLICIES:
        raise ValueError(f"schema_drift={policy!r}: expected one of {', '.join(DRIFT_POLICIES)}")
    if report.empty:
        return DriftPlan(load=list(source), add=[], report=report)
    if policy == "fail" or report.retyped:
        why = "retyped columns fail under every policy" if report.retyped and policy != "fail" else (
            "schema_drift='fail'"
        )
        raise SchemaDriftError(
            f"schema drift between the source and {target} ({why}; other policies: add_columns, "
            f"ignore_extra):\n{report.describe()}"
        )
    new_names = {c.name for c in report.new}
    notes = []
    if report.missing:
        notes.append(
            f"target columns missing from the source are loaded as NULL: {', '.join(c.name for c in report.missing)}"
        )
    if policy == "add_columns":
        if report.new:
            notes.append(f"adding nullable columns to {target}: {', '.join(c.name for c in report.new)}")
        return DriftPlan(load=list(source), add=list(report.new), report=report, notes=notes)
    if report.new:
        notes.append(f"source columns not in {target} are ignored: {', '.join(sorted(new_names))}")
    return DriftPlan(load=[c for c in source if c.name not in new_names], add=[], report=report, notes=notes)


def add_columns(conn: psycopg.Connection, table: sql.Composable, schema: str, columns: Sequence[Column]) -> None:
    """``ALTER TABLE .. ADD COLUMN IF NOT EXISTS`` for each column (nullable); caller commits."""
    with conn.cursor() as cur:
        for col in columns:
            cur.execute(
                sql.SQL("alter table {} add column if not exists {} {}").format(
                    table, sql.Identifier(col.name), sql.SQL(col.warehouse_type(schema))
                )
            )


_ENUM_LOCK = 0x6461_7461_656E_6702


def ensure_enum_types(conn: psycopg.Connection, schema: str, columns: Sequence[Column]) -> list[str]:
    """Create the warehouse enum types the columns need (same name, in ``schema``); add missing labels.

    Runs and commits its own transactions on ``conn`` (new enum labels must be committed before a COPY
    can use them). Returns the names of types created or extended.
    """
    changed: list[str] = []
    wanted: dict[str, tuple[str, ...]] = {}
    for col in columns:
        if col.kind in ("enum", "enum_array") and col.enum_name:
            wanted[col.enum_name] = col.enum_labels
    for name, labels in wanted.items():
        ident = sql.Composed([sql.Identifier(schema), sql.SQL("."), sql.Identifier(name)])
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", [_ENUM_LOCK])
            cur.execute(
                """select t.typtype::text, array(select e.enumlabel::text from pg_enum e where e.enumtypid = t.oid
                   order by e.enumsortorder) from pg_type t join pg_namespace n on n.oid = t.typnamespace
                   where n.nspname = %s and t.typname = %s""",
                [schema, name],
            )
            row = cur.fetchone()
            if row is None:
                cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
                cur.execute(
                    sql.SQL("create type {} as enum ({})").format(
                        ident, sql.SQL(", ").join(sql.Literal(v) for v in labels)
                    )
                )
                changed.append(f"{schema}.{name}")
                continue
            if row[0] != "e":
                raise SchemaDriftError(
                    f"the source column type {name!r} is an enum but {schema}.{name} in the warehouse is not an "
                    "enum type: rename one of them"
                )
            missing = [v for v in labels if v not in set(row[1])]
        for label in missing:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(sql.SQL("alter type {} add value if not exists {}").format(ident, sql.Literal(label)))
        if missing:
            changed.append(f"{schema}.{name}")
    return changed
