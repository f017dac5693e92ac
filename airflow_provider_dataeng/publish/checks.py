"""Quality checks run on a staging table before it is published (or on any table).

Config format (YAML ``checks:`` list; each item one dict)::

    - {check: row_count, min: 1, max: 1000000}
    - {check: null_fraction, column: email, max: 0.01}
    - {check: unique, columns: [order_id]}
    - {check: accepted_values, column: status, values: [placed, shipped, cancelled]}
    - {check: sql, name: no_negative_amounts, sql: "select count(*) = 0 from {table} where amount < 0"}
    - {check: drift, max_change_pct: 50}

Every check accepts an optional ``name`` (how it shows in the check table and the ledger).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_dataeng.publish.table_ref import TableRef

if TYPE_CHECKING:  # psycopg is imported when checks run; building them (DAG parse time) does not need it
    import psycopg
    from psycopg import sql


@dataclass
class CheckResult:
    """The outcome of one check: what was observed against which threshold."""

    check: str
    observed: Any
    threshold: Any
    passed: bool
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"check": self.check, "observed": _jsonable(self.observed), "threshold": _jsonable(self.threshold),
               "passed": self.passed}
        if self.detail:
            out["detail"] = self.detail
        return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


@dataclass
class CheckContext:
    """What a check may look at: the table under test, its row count and the published baseline."""

    conn: psycopg.Connection
    table: TableRef
    rows: int
    baseline: TableRef | None = None  # the currently published table or partition (for drift)

    def scalar(self, query: sql.Composable, params: Sequence[Any] | None = None, *, extended: bool = False) -> Any:
        """The first column of the first row. ``extended``: run with the extended query protocol (one
        statement only; psycopg uses it for binary results)."""
        with self.conn.cursor() as cur:
            cur.execute(query, params, binary=True if extended else None)
            row = cur.fetchone()
        return None if row is None else row[0]


class Check:
    """Base class: ``evaluate(ctx) -> CheckResult``."""

    kind: ClassVar[str] = ""
    name: str

    def evaluate(self, ctx: CheckContext) -> CheckResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self, observed: Any, threshold: Any, passed: bool, detail: str | None = None) -> CheckResult:
        return CheckResult(self.name, observed, threshold, bool(passed), detail)


@dataclass
class RowCountCheck(Check):
    """Row count within ``[min, max]`` (either bound optional)."""

    min: int | None = None
    max: int | None = None
    name: str = "row_count"
    kind: ClassVar[str] = "row_count"

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        ok = (self.min is None or ctx.rows >= self.min) and (self.max is None or ctx.rows <= self.max)
        return self.result(ctx.rows, _range_text(self.min, self.max), ok)


@dataclass
class NullFractionCheck(Check):
    """Fraction of NULLs in ``column`` at most ``max`` (0..1). An empty table has fraction 0."""

    column: str = ""
    max: float = 0.0
    name: str = ""
    kind: ClassVar[str] = "null_fraction"

    def __post_init__(self) -> None:
        self.name = self.name or f"null_fraction({self.column})"

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        from psycopg import sql

        nulls = ctx.scalar(sql.SQL("select count(*) from {} where {} is null").format(
            ctx.table.ident(), sql.Identifier(self.column)))
        fraction = (nulls / ctx.rows) if ctx.rows else 0.0
        return self.result(round(fraction, 6), f"<= {self.max}", fraction <= self.max,
                           f"{nulls} of {ctx.rows} rows are null")


@dataclass
class UniqueCheck(Check):
    """No two rows share the key ``columns`` (NULLs count as equal); at most ``max_duplicates`` extra rows."""

    columns: list[str] = field(default_factory=list)
    max_duplicates: int = 0
    name: str = ""
    kind: ClassVar[str] = "unique"

    def __post_init__(self) -> None:
        self.name = self.name or f"unique({', '.join(self.columns)})"

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        from psycopg import sql

        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        dupes = ctx.scalar(sql.SQL(
            "select coalesce(sum(n - 1), 0)::bigint from (select count(*) as n from {} group by {} "
            "having count(*) > 1) d").format(ctx.table.ident(), cols))
        return self.result(int(dupes), f"<= {self.max_duplicates} duplicate rows", dupes <= self.max_duplicates)


@dataclass
class AcceptedValuesCheck(Check):
    """Every non-NULL value of ``column`` (compared as text) is one of ``values``."""

    column: str = ""
    values: list[Any] = field(default_factory=list)
    max_violations: int = 0
    name: str = ""
    kind: ClassVar[str] = "accepted_values"

    def __post_init__(self) -> None:
        self.name = self.name or f"accepted_values({self.column})"

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        from psycopg import sql

        col = sql.Identifier(self.column)
        bad = ctx.scalar(
            sql.SQL("select count(*) from {} where {} is not null and not ({}::text = any(%s::text[]))").format(
                ctx.table.ident(), col, col),
            [[str(v) for v in self.values]],
        )
        sample = None
        if bad:
            with ctx.conn.cursor() as cur:
                cur.execute(sql.SQL(
                    "select distinct {}::text from {} where {} is not null and not ({}::text = any(%s::text[])) "
                    "limit 5").format(col, ctx.table.ident(), col, col), [[str(v) for v in self.values]])
                sample = "unexpected: " + ", ".join(repr(r[0]) for r in cur.fetchall())
        return self.result(int(bad), f"<= {self.max_violations} rows outside {len(self.values)} values",
                           bad <= self.max_violations, sample)


@dataclass
class SqlCheck(Check):
    """A custom assertion: ``sql`` returns one boolean, true = pass. ``{table}`` is the table under test."""

    sql: str = ""
    name: str = "sql"
    kind: ClassVar[str] = "sql"

    def query(self, table: TableRef) -> sql.Composed:
        """The query with ``{table}`` quoted in."""
        from psycopg import sql

        pieces = self.sql.split("{table}")
        parts: list[sql.Composable] = [sql.SQL(pieces[0])]
        for piece in pieces[1:]:
            parts += [table.ident(), sql.SQL(piece)]
        return sql.Composed(parts)

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        # The extended protocol runs exactly one statement: "select true; commit; drop ..." is an error
        # instead of a way out of the read-only transaction.
        value = ctx.scalar(self.query(ctx.table), extended=True)
        if not isinstance(value, bool) and value is not None:
            raise ValueError(f"check {self.name!r}: the sql must return one boolean, it returned {value!r}")
        return self.result(value, "true", value is True)


@dataclass
class DriftCheck(Check):
    """Row count within +-``max_change_pct`` % of the published data (passes when nothing is published)."""

    max_change_pct: float = 0.0
    name: str = "drift"
    kind: ClassVar[str] = "drift"

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        from psycopg import sql

        threshold = f"+-{self.max_change_pct}%"
        if ctx.baseline is None:
            return self.result(None, threshold, True, "no published data to compare with")
        published = ctx.scalar(sql.SQL("select count(*) from {}").format(ctx.baseline.ident()))
        if not published:
            return self.result(None, threshold, True, "published data is empty: no baseline")
        change = (ctx.rows - published) * 100.0 / published
        return self.result(f"{change:+.2f}%", threshold, abs(change) <= self.max_change_pct,
                           f"{ctx.rows} rows vs {published} published")


def _range_text(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f"{lo}..{hi}"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return "any"


# -- config ---------------------------------------------------------------------------------------------------
def build_checks(specs: Sequence[Any] | None) -> list[Check]:
    """Build checks from config dicts (validated by the models in :mod:`.spec`), spec models or Checks.

    A bad item raises ValueError naming the item and the key.
    """
    from pydantic import TypeAdapter, ValidationError

    from airflow_provider_dataeng.publish import spec as models

    if specs is None:
        return []
    if isinstance(specs, dict) or not isinstance(specs, (list, tuple)):
        raise ValueError(f"checks: expected a list of check dicts, got {type(specs).__name__}")
    adapter: TypeAdapter = TypeAdapter(models.CheckSpec)
    checks: list[Check] = []
    for i, item in enumerate(specs):
        if isinstance(item, Check):
            checks.append(item)
            continue
        if isinstance(item, models._Check):
            checks.append(item.build())
            continue
        where = f"checks[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a dict like {{check: row_count, min: 1}}, got {item!r}")
        kind = item.get("check")
        if kind not in models.CHECK_MODELS:
            raise ValueError(f"{where}: 'check' must be one of {', '.join(models.CHECK_MODELS)}, got {kind!r}")
        try:
            checks.append(adapter.validate_python(item).build())
        except ValidationError as exc:
            raise ValueError(_describe(f"{where} ({kind})", exc.errors()[0], item)) from None
    names = [c.name for c in checks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"checks: two checks are named {dupes[0]!r}; give one a distinct 'name'")
    return checks


def _describe(where: str, error: dict, item: dict) -> str:
    """One pydantic error of a check item as ``checks[i] (kind): ...`` naming the key."""
    from airflow_provider_dataeng.publish import spec as models

    loc = [p for p in error["loc"][1:] if isinstance(p, str)]  # loc[0] is the discriminator tag
    key = loc[0] if loc else None
    if error["type"] == "extra_forbidden":
        allowed = sorted(set(models.CHECK_MODELS[item["check"]].model_fields) - {"check"})
        return f"{where}: unknown key {key!r}; expected {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{where}: missing key {key!r}"
    message = error["msg"].removeprefix("Value error, ")
    if key is None:
        return f"{where}: {message}"
    return f"{where}: {key!r}: {message[:1].lower()}{message[1:]}, got {error.get('input')!r}"


def run_checks(ctx: CheckContext, checks: Sequence[Check]) -> list[CheckResult]:
    """Evaluate every check (all of them, so the report is complete). A check that cannot run raises."""
    import psycopg

    results = []
    for check in checks:
        try:
            results.append(check.evaluate(ctx))
        except psycopg.Error as exc:
            raise CheckError(f"check {check.name!r} could not run on {ctx.table}: {exc}".strip()) from exc
    return results


class CheckError(ValueError):
    """A check's query failed (bad column, bad SQL): a configuration error, not a data problem."""
