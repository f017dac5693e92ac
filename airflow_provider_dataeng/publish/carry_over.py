"""Copy what users rely on from the live table to its replacement before a swap.

Carried over: column defaults, NOT NULL, identity columns (sequence continued), CHECK / PRIMARY KEY /
UNIQUE / EXCLUDE / FOREIGN KEY constraints, indexes, triggers (and their enabled state), storage
options, the table and column comments, the owner and the table and column privileges. Constraint and
index names that must be unique per schema get a temporary ``__staging`` name here and take the live
names inside the swap transaction (see :mod:`airflow_provider_dataeng.publish.renames`).

Run inside a transaction with ``search_path = pg_catalog`` so every expression printed from the catalog
is schema-qualified and means the same thing when it is re-executed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish.catalog import Relation, execute, index_tail, indexes, rows, scalar
from airflow_provider_dataeng.publish.renames import STAGING_SUFFIX, Rename
from airflow_provider_dataeng.publish.table_ref import suffixed_name

_RELOPTION_KEY = re.compile(r"^[a-z_][a-z0-9_.]*$")
_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"}


@dataclass
class CarryOverReport:
    renames: list[Rename] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)


def set_catalog_search_path(conn: psycopg.Connection) -> None:
    """Transaction-local search_path = pg_catalog (catalog output fully qualified)."""
    rows(conn, "select set_config('search_path', 'pg_catalog', true)")


def copy_structure(conn: psycopg.Connection, live: Relation, new: Relation) -> CarryOverReport:
    """Defaults, NOT NULL, identity, constraints, indexes, triggers, storage options of ``live`` -> ``new``."""
    report = CarryOverReport()
    new_cols = {r[0]: r for r in rows(conn, """
        select attname, atthasdef, attnotnull, attidentity::text from pg_attribute
        where attrelid = %s and attnum > 0 and not attisdropped""", [new.oid])}
    live_cols = rows(conn, """
        select a.attname, pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.attidentity::text, a.attgenerated::text
        from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where a.attrelid = %s and a.attnum > 0 and not a.attisdropped order by a.attnum""", [live.oid])
    target = new.ref.ident()
    for name, default, notnull, identity, generated in live_cols:
        if name not in new_cols:
            continue
        _, has_def, new_notnull, new_identity, = new_cols[name]
        col = sql.Identifier(name)
        if notnull and not new_notnull:
            execute(conn, sql.SQL("alter table {} alter column {} set not null").format(target, col))
            report.copied.append(f"not null {name}")
        if default is not None and not has_def and not generated:
            execute(conn, sql.SQL("alter table {} alter column {} set default {}").format(target, col, sql.SQL(default)))
            report.copied.append(f"default {name}")
        if identity and not new_identity:
            _copy_identity(conn, live, new, name, identity)
            report.copied.append(f"identity {name}")

    have = {r[0] for r in rows(conn, "select conname from pg_constraint where conrelid = %s", [new.oid])}
    for conname, _contype, condef in rows(conn, """
            select conname, contype::text, pg_get_constraintdef(oid) from pg_constraint
            where conrelid = %s and contype in ('c', 'f') order by oid""", [live.oid]):
        if conname in have:
            continue
        execute(conn, sql.SQL("alter table {} add constraint {} {}").format(
            target, sql.Identifier(conname), sql.SQL(condef)))
        report.copied.append(f"constraint {conname}")

    for info in indexes(conn, live.oid):
        temp = suffixed_name(info.name, STAGING_SUFFIX)
        if info.constraint:
            execute(conn, sql.SQL("alter table {} add constraint {} {}").format(
                target, sql.Identifier(temp), sql.SQL(info.constraint_def or "")))
            report.renames.append(Rename("constraint", temp, info.constraint))
        else:
            unique, tail = index_tail(conn, info, live)
            execute(conn, sql.SQL("create {}index {} on {}{}").format(
                sql.SQL("unique " if unique else ""), sql.Identifier(temp), target, sql.SQL(tail)))
            report.renames.append(Rename("index", temp, info.name))
        report.copied.append(f"index {info.name}")

    q_live = scalar(conn, "select %s::oid::regclass::text", [live.oid])
    q_new = scalar(conn, "select %s::oid::regclass::text", [new.oid])
    for tgname, tgdef, enabled in rows(conn, """
            select tgname, pg_get_triggerdef(oid), tgenabled::text from pg_trigger
            where tgrelid = %s and not tgisinternal order by oid""", [live.oid]):
        marker = f" ON {q_live} "
        if marker not in tgdef:
            raise ValueError(f"cannot parse trigger definition of {tgname!r}: {tgdef!r}")
        execute(conn, sql.SQL(tgdef.replace(marker, f" ON {q_new} ", 1)))
        if enabled == "D":
            execute(conn, sql.SQL("alter table {} disable trigger {}").format(target, sql.Identifier(tgname)))
        report.copied.append(f"trigger {tgname}")

    options = scalar(conn, "select reloptions from pg_class where oid = %s", [live.oid]) or []
    pairs = []
    for opt in options:
        key, _, value = opt.partition("=")
        if _RELOPTION_KEY.match(key):
            pairs.append(sql.SQL("{} = {}").format(sql.SQL(key), sql.Literal(value)))
    if pairs:
        execute(conn, sql.SQL("alter table {} set ({})").format(target, sql.SQL(", ").join(pairs)))
        report.copied.append("storage options")
    return report


def _copy_identity(conn: psycopg.Connection, live: Relation, new: Relation, column: str, kind: str) -> None:
    """Make ``column`` of ``new`` an identity column that continues ``live``'s sequence."""
    col = sql.Identifier(column)
    execute(conn, sql.SQL("alter table {} alter column {} add generated {} as identity").format(
        new.ref.ident(), col, sql.SQL("always" if kind == "a" else "by default")))
    live_seq = scalar(conn, "select pg_get_serial_sequence(%s::oid::regclass::text, %s)", [live.oid, column])
    new_seq = scalar(conn, "select pg_get_serial_sequence(%s::oid::regclass::text, %s)", [new.oid, column])
    last = scalar(conn, sql.SQL("select last_value from {}").format(sql.SQL(live_seq))) if live_seq else None
    top = scalar(conn, sql.SQL("select max({}) from {}").format(col, new.ref.ident()))
    start = max(v for v in (last, top, 0) if v is not None)
    if start > 0:
        rows(conn, "select setval(%s::regclass, %s, true)", [new_seq, start])


def copy_access(conn: psycopg.Connection, live: Relation, new: Relation) -> list[str]:
    """Owner, comments and privileges (table and column level) of ``live`` -> ``new`` (made identical)."""
    copied = []
    target = new.ref.ident()
    if new.owner != live.owner:
        execute(conn, sql.SQL("alter table {} owner to {}").format(target, sql.Identifier(live.owner)))
        copied.append(f"owner {live.owner}")
    comment = scalar(conn, "select obj_description(%s, 'pg_class')", [live.oid])
    execute(conn, sql.SQL("comment on table {} is {}").format(target, sql.Literal(comment)))
    new_cols = {r[0] for r in rows(conn, """select attname from pg_attribute where attrelid = %s and attnum > 0
                                            and not attisdropped""", [new.oid])}
    for name, text in rows(conn, """
            select attname, col_description(attrelid, attnum) from pg_attribute
            where attrelid = %s and attnum > 0 and not attisdropped""", [live.oid]):
        if name in new_cols:
            execute(conn, sql.SQL("comment on column {}.{} is {}").format(target, sql.Identifier(name),
                                                                        sql.Literal(text)))
    # Privileges: first revoke whatever the new table got (default privileges), then grant live's.
    for (grantee,) in rows(conn, """
            select distinct coalesce(r.rolname, 'PUBLIC') from pg_class c, aclexplode(c.relacl) a
            left join pg_roles r on r.oid = a.grantee where c.oid = %s and a.grantee <> c.relowner""", [new.oid]):
        execute(conn, sql.SQL("revoke all on table {} from {}").format(target, _grantee(grantee)))
    for grantee, privilege, grantable in rows(conn, """
            select coalesce(r.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable
            from pg_class c, aclexplode(c.relacl) a left join pg_roles r on r.oid = a.grantee
            where c.oid = %s and a.grantee <> c.relowner order by 1, 2""", [live.oid]):
        _grant(conn, privilege, None, target, grantee, grantable)
        copied.append(f"grant {privilege} to {grantee}")
    for column, grantee, privilege, grantable in rows(conn, """
            select t.attname, coalesce(r.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable
            from pg_attribute t, aclexplode(t.attacl) a left join pg_roles r on r.oid = a.grantee
            where t.attrelid = %s and t.attnum > 0 and not t.attisdropped order by 1, 2, 3""", [live.oid]):
        if column in new_cols:
            _grant(conn, privilege, column, target, grantee, grantable)
            copied.append(f"grant {privilege}({column}) to {grantee}")
    return copied


def _grantee(name: str) -> sql.Composable:
    return sql.SQL("public") if name == "PUBLIC" else sql.Identifier(name)


def _grant(conn: psycopg.Connection, privilege: str, column: str | None, target: sql.Composable,
           grantee: str, grantable: bool) -> None:
    if privilege not in _PRIVILEGES:
        raise ValueError(f"unexpected privilege {privilege!r} in the catalog")
    execute(conn, sql.SQL("grant {}{} on table {} to {}{}").format(
        sql.SQL(privilege), sql.SQL(" ({})").format(sql.Identifier(column)) if column else sql.SQL(""),
        target, _grantee(grantee), sql.SQL(" with grant option" if grantable else "")))
