"""Catalog reads used by the publish engine (relations, partitions, dependents, definitions), and the
statement helpers every publish module runs SQL with (``execute``, ``rows``, ``scalar``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish.table_ref import TableRef


def execute(conn: psycopg.Connection, query: Any, params: Any = None) -> None:
    """Run one statement (no result)."""
    with conn.cursor() as cur:
        cur.execute(query, params)


def rows(conn: psycopg.Connection, query: Any, params: Any = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def scalar(conn: psycopg.Connection, query: Any, params: Any = None) -> Any:
    found = rows(conn, query, params)
    return found[0][0] if found else None


@dataclass(frozen=True)
class Relation:
    oid: int
    ref: TableRef
    relkind: str
    owner: str


def relation(conn: psycopg.Connection, ref: TableRef) -> Relation | None:
    """The relation named ``ref`` (any kind), or None."""
    found = rows(conn, """
        select c.oid, c.relkind::text, pg_get_userbyid(c.relowner)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %s and c.relname = %s""", [ref.schema, ref.table])
    if not found:
        return None
    oid, kind, owner = found[0]
    return Relation(int(oid), ref, kind, owner)


def relation_by_oid(conn: psycopg.Connection, oid: int) -> Relation | None:
    found = rows(conn, """
        select n.nspname, c.relname, c.relkind::text, pg_get_userbyid(c.relowner)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = %s""", [oid])
    if not found:
        return None
    nsp, name, kind, owner = found[0]
    return Relation(oid, TableRef(nsp, name), kind, owner)


def columns(conn: psycopg.Connection, oid: int) -> list[tuple[str, str]]:
    """``[(name, format_type)]`` of a relation's live columns, in order."""
    return [(r[0], r[1]) for r in rows(conn, """
        select attname, format_type(atttypid, atttypmod) from pg_attribute
        where attrelid = %s and attnum > 0 and not attisdropped order by attnum""", [oid])]


@dataclass(frozen=True)
class DependentView:
    oid: int
    ref: TableRef
    relkind: str
    owner: str


def dependent_views(conn: psycopg.Connection, oid: int) -> list[DependentView]:
    """Views and materialized views whose rewrite rules reference relation ``oid`` directly."""
    return [DependentView(int(r[0]), TableRef(r[1], r[2]), r[3], r[4]) for r in rows(conn, """
        select distinct v.oid, n.nspname, v.relname, v.relkind::text, pg_get_userbyid(v.relowner)
        from pg_depend d
        join pg_rewrite r on r.oid = d.objid
        join pg_class v on v.oid = r.ev_class
        join pg_namespace n on n.oid = v.relnamespace
        where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass
          and d.refobjid = %s and v.oid <> %s
        order by v.oid""", [oid, oid])]


def blocking_dependents(conn: psycopg.Connection, oid: int) -> list[str]:
    """Objects bound to ``oid`` that a swap cannot carry over (it refuses rather than break them)."""
    problems = [f"materialized view {TableRef(r[0], r[1])}" for r in rows(conn, """
        select distinct n.nspname, v.relname from pg_depend d
        join pg_rewrite r on r.oid = d.objid join pg_class v on v.oid = r.ev_class
        join pg_namespace n on n.oid = v.relnamespace
        where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass
          and d.refobjid = %s and v.relkind = 'm'""", [oid])]
    problems += [f"foreign key {r[0]} on {r[1]}" for r in rows(conn, """
        select conname, conrelid::regclass::text from pg_constraint
        where confrelid = %s and contype = 'f' and conrelid <> %s""", [oid, oid])]
    problems += [f"function {r[0]} (SQL-standard body)" for r in rows(conn, """
        select distinct d.objid::regprocedure::text from pg_depend d
        where d.classid = 'pg_proc'::regclass and d.refclassid = 'pg_class'::regclass and d.refobjid = %s""",
        [oid])]
    problems += [f"row-level security policy {r[0]}" for r in rows(conn, """
        select polname from pg_policy where polrelid = %s""", [oid])]
    if scalar(conn, "select relrowsecurity or relforcerowsecurity from pg_class where oid = %s", [oid]):
        problems.append("row-level security (enabled on the table)")
    return problems


def inheritance(conn: psycopg.Connection, oid: int) -> list[str]:
    """Why a table swap of relation ``oid`` would break an inheritance tree (empty when it would not)."""
    found = rows(conn, """
        select c.relispartition,
               (select string_agg(i.inhparent::regclass::text, ', ') from pg_inherits i where i.inhrelid = c.oid),
               (select string_agg(i.inhrelid::regclass::text, ', ') from pg_inherits i where i.inhparent = c.oid)
        from pg_class c where c.oid = %s""", [oid])
    if not found:
        return []
    is_partition, parents, children = found[0]
    if is_partition:
        return [f"it is a partition of {parents} (publish_partition replaces one partition)"]
    return [f"it inherits from {parents}"] * bool(parents) + [f"it is inherited by {children}"] * bool(children)


@dataclass(frozen=True)
class IndexInfo:
    oid: int
    name: str
    definition: str  # pg_get_indexdef (search_path = pg_catalog: fully qualified)
    constraint: str | None  # name of the p/u/x constraint it backs
    constraint_def: str | None


def indexes(conn: psycopg.Connection, oid: int) -> list[IndexInfo]:
    return [IndexInfo(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows(conn, """
        select i.indexrelid, ic.relname, pg_get_indexdef(i.indexrelid), con.conname,
               case when con.oid is not null then pg_get_constraintdef(con.oid) end
        from pg_index i join pg_class ic on ic.oid = i.indexrelid
        left join pg_constraint con on con.conindid = i.indexrelid and con.conrelid = i.indrelid
             and con.contype in ('p', 'u', 'x')
        where i.indrelid = %s order by i.indexrelid""", [oid])]


def index_tail(conn: psycopg.Connection, info: IndexInfo, owner: Relation) -> tuple[bool, str]:
    """Split an index definition into (unique, text from ' USING ...') for re-creation elsewhere."""
    q_idx, q_nsp, q_rel = rows(conn, "select quote_ident(%s), quote_ident(%s), quote_ident(%s)",
                               [info.name, owner.ref.schema, owner.ref.table])[0]
    for unique in (False, True):
        for only in ("", "ONLY "):
            prefix = f"CREATE {'UNIQUE ' if unique else ''}INDEX {q_idx} ON {only}{q_nsp}.{q_rel}"
            if info.definition.startswith(prefix + " USING "):
                return unique, info.definition[len(prefix):]
    raise ValueError(f"cannot parse index definition of {info.name!r}: {info.definition!r}")


@dataclass(frozen=True)
class PartitionInfo:
    oid: int
    ref: TableRef
    lower: Any  # None = MINVALUE
    upper: Any  # None = MAXVALUE
    is_default: bool


def partition_key(conn: psycopg.Connection, oid: int) -> tuple[str, str, str] | None:
    """``(strategy, column, column type)`` of a single-column partitioned table, or None."""
    found = rows(conn, """
        select p.partstrat::text, p.partnatts, a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_partitioned_table p
        left join pg_attribute a on a.attrelid = p.partrelid and a.attnum = p.partattrs[0]
        where p.partrelid = %s""", [oid])
    if not found:
        return None
    strat, natts, col, typ = found[0]
    if natts != 1 or col is None:
        return (strat, "", "")
    return (strat, col, typ)


def overlapping_partitions(conn: psycopg.Connection, parent: TableRef, parent_oid: int, column: str,
                           column_type: str, lower: Any, upper: Any) -> list[PartitionInfo]:
    """The children of a range-partitioned table that may hold values in ``[lower, upper)``, with their bounds
    (:func:`partitions` filters the candidates).

    The server's own partition pruning picks them (the plan of a ``SELECT`` on the range: a binary search over
    the partition descriptor the swap builds in this session anyway), so the cost does not grow with the number
    of partitions the way deparsing and parsing every child's bound does (sub-partitioned children, which
    pruning can drop, are always candidates). Falls back to :func:`partitions` when
    the plan cannot be read (no SELECT privilege, an unexpected plan).
    """
    col = sql.Identifier(column)
    try:
        plan = scalar(conn, sql.SQL("explain (format json, verbose, costs off) select 1 from {} where {} >= {}::{} "
                                    "and {} < {}::{}").format(
            parent.ident(), col, sql.Literal(lower.isoformat()), sql.SQL(column_type), col,
            sql.Literal(upper.isoformat()), sql.SQL(column_type)))
        leaves = sorted(_plan_relations(plan[0]["Plan"]) - {(parent.schema, parent.table)})
    except (psycopg.Error, LookupError, TypeError):
        return partitions(conn, parent_oid, column_type, lower, upper)
    return partitions(conn, parent_oid, column_type, lower, upper, leaves=leaves)


def _plan_relations(node: dict) -> set[tuple[str, str]]:
    found = {(node["Schema"], node["Relation Name"])} if "Relation Name" in node else set()
    for child in node.get("Plans", []):
        found |= _plan_relations(child)
    return found


def partitions(conn: psycopg.Connection, parent_oid: int, column_type: str, lower: Any = None,
               upper: Any = None, *, leaves: list[tuple[str, str]] | None = None) -> list[PartitionInfo]:
    """Children of a range-partitioned table with their bounds; with ``lower``/``upper`` only those that
    overlap ``[lower, upper)`` (and the default partition).

    Two statements whatever the number of partitions (the children, then every bound literal cast to
    ``column_type`` at once). Bounds are deparsed without looking the child up by oid
    (``pg_get_expr(.., 0)``: they are constants), so a sibling that a concurrent publish swaps out and
    drops meanwhile still reads as its bounds.
    """
    if leaves is None:
        children = rows(conn, """
            select c.oid, n.nspname, c.relname, pg_get_expr(c.relpartbound, 0)
            from pg_inherits i join pg_class c on c.oid = i.inhrelid
            join pg_namespace n on n.oid = c.relnamespace where i.inhparent = %s""", [parent_oid])
    else:  # the children that are (or are ancestors of) these leaves, and every sub-partitioned child (pruning
        # drops one whose own partitions do not cover the range): no bound is deparsed for the others
        children = rows(conn, """
            select c.oid, n.nspname, c.relname, pg_get_expr(c.relpartbound, 0)
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            join pg_inherits i on i.inhrelid = c.oid and i.inhparent = %s
            where c.relkind = 'p'
               or c.oid in (select a.relid from pg_class l join pg_namespace ln on ln.oid = l.relnamespace,
                                   pg_partition_ancestors(l.oid) a
                            where (ln.nspname, l.relname) in (select * from unnest(%s::text[], %s::text[])))""",
            [parent_oid, [s for s, _ in leaves], [t for _, t in leaves]])
    parsed = []
    for oid, nsp, name, bound in children:
        m = None if bound == "DEFAULT" else _BOUND_RE.match(bound or "")
        if bound != "DEFAULT" and (not m or not all(_LITERAL_RE.match(t) or t in _INFINITE for t in m.groups())):
            raise ValueError(f"partition {nsp}.{name}: unexpected bound {bound!r}")
        parsed.append((int(oid), TableRef(nsp, name), m.groups() if m else None))
    literals = {t for _, _, texts in parsed if texts for t in texts if t not in _INFINITE}
    values = {t: v for t in literals if (v := _parse_literal(t, column_type)) is not None}
    if unparsed := sorted(literals - set(values)):  # not ISO text (DateStyle, infinity, BC): the server casts
        values.update(rows(conn, sql.SQL("select t, replace(substr(t, 2, length(t) - 2), '''''', '''')::{} "
                                         "from unnest(%s::text[]) t").format(sql.SQL(column_type)), [unparsed]))
    out = []
    for oid, ref, texts in parsed:
        if texts is None:
            out.append(PartitionInfo(oid, ref, None, None, True))
            continue
        lo, hi = (values.get(t) for t in texts)  # MINVALUE / MAXVALUE: None
        if upper is None or ((lo is None or lo < upper) and (hi is None or lower < hi)):
            out.append(PartitionInfo(oid, ref, lo, hi, False))
    return out


def _parse_literal(text: str, column_type: str) -> Any:
    """A quoted ISO date/timestamp literal as the value psycopg would return for ``column_type``, or None."""
    body = text[1:-1]
    try:
        if column_type == "date":
            return date.fromisoformat(body)
        value = datetime.fromisoformat(body)
    except ValueError:
        return None
    aware = column_type == "timestamp with time zone"
    return value if (value.tzinfo is not None) == aware else None


_BOUND_RE = re.compile(r"^FOR VALUES FROM \((.*)\) TO \((.*)\)$", re.S)
_LITERAL_RE = re.compile(r"^'(?:[^']|'')*'$", re.S)
_INFINITE = ("MINVALUE", "MAXVALUE")
