"""The publish engine: staging table -> quality checks -> atomic table or partition swap, with a ledger.

Guarantees (see docs/publish.md):

- Live data changes only inside one short transaction (renames / detach + attach, view re-binding and
  the ledger row), run with ``SET LOCAL lock_timeout``; on a lock timeout it is retried with backoff and
  then fails clearly. Readers never see a missing table or a mix of old and new rows.
- Everything before that transaction works on ``<name>__staging`` only, so a connection killed at any
  step leaves the live table (or partition) exactly as it was; a rerun drops the leftover staging table.
- Publishes of one target (one partition for partition swaps) serialize on a session advisory lock;
  different partitions of one table build their staging tables in parallel.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.carry_over import (
    STAGING_SUFFIX,
    Rename,
    copy_access,
    copy_structure,
    named_objects,
    previous_name,
    rename_object,
    set_catalog_search_path,
)
from airflow_provider_dataeng.publish.checks import Check, CheckContext, CheckResult, build_checks, run_checks
from airflow_provider_dataeng.publish.errors import (
    ChecksFailed,
    PublishError,
    PublishRejected,
    SwapLockTimeout,
)
from airflow_provider_dataeng.publish.ledger import LedgerEntry, ensure_ledger, write_ledger_row
from airflow_provider_dataeng.publish.table_ref import TableRef, suffixed_name

log = logging.getLogger(__name__)

PREVIOUS_SUFFIX = "__previous"
# Tables leaving the swap are renamed to these inside the swap transaction and dropped after COMMIT:
# PostgreSQL unlinks a dropped table's files at commit while still holding the transaction's locks, so
# dropping a large table inside the swap would stall readers of the live table.
RETIRED_SUFFIXES = ("__retired", "__retired2")
BOUNDS_CONSTRAINT = "dataeng_partition_bounds"
PARTITION_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")
RETRYABLE_SQLSTATES = ("55P03", "40P01")  # lock_not_available (lock_timeout), deadlock_detected
_SAFE_TYPE_TEXT = re.compile(r'^[A-Za-z_"][A-Za-z0-9_ ."(),\[\]]*$')

Loader = Callable[[psycopg.Connection, TableRef], Any]
StepCallback = Callable[[str, psycopg.Connection], None]


@dataclass
class LoadStats:
    """What a loader callback may return (all optional): rows, bytes read, details for the ledger."""

    rows: int | None = None
    bytes: int | None = None
    details: dict = field(default_factory=dict)


@dataclass
class PublishResult:
    """The outcome of one publish."""

    status: str  # published | rejected | failed
    target: TableRef
    partition: TableRef | None
    rows: int
    bytes: int | None
    checks: list[CheckResult]
    ledger_id: int | None
    details: dict = field(default_factory=dict)

    def as_xcom(self) -> dict:
        """A small JSON-able dict (what operators return)."""
        return {
            "status": self.status,
            "target": self.target.qualified,
            "partition": self.partition.qualified if self.partition else None,
            "rows": self.rows,
            "bytes": self.bytes,
            "checks": [c.as_dict() for c in self.checks],
            "ledger_id": self.ledger_id,
        }


def lock_key(*parts: Any) -> int:
    """A signed 64-bit advisory lock key from a stable hash of ``parts``."""
    text = "dataeng.publish:" + "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


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


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _exec(conn: psycopg.Connection, query: Any, params: Any = None) -> None:
    with conn.cursor() as cur:
        cur.execute(query, params)


def _as_utc_datetime(value: datetime | date | None) -> datetime | None:
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
            utc = _as_utc_datetime(value)
            if (utc.hour, utc.minute, utc.second, utc.microsecond) != (0, 0, 0, 0):
                raise ValueError(f"{field_name}: {value!r} is not midnight UTC (the partition column is a date)")
            return utc.date()
        return value
    utc = _as_utc_datetime(value)
    return utc if column_type == "timestamp with time zone" else utc.replace(tzinfo=None)


class PublishEngine:
    """Build a staging table, check it, then swap it in atomically (whole table or one partition).

    :param hook: a ``FailoverPostgresHook`` (psycopg 3 driver) for the warehouse.
    :param lock_timeout: seconds the swap transaction may wait for its locks (``SET LOCAL lock_timeout``);
        readers queued behind the swap wait at most this long.
    :param swap_attempts: swap transaction attempts on lock timeout / deadlock before failing.
    :param pipeline, task_id, run_id: recorded in the ledger.
    :param retry_backoff: base seconds of the exponential backoff (with jitter) between swap attempts.
    :param on_step: ``callback(step, conn)`` called at each step (``locked``, ``staging_created``,
        ``loaded``, ``checked``, ``prepared``, ``swap_locked``, ``swapped`` (before commit),
        ``committed``): for observability and for crash tests.
    """

    def __init__(
        self,
        hook: Any,
        *,
        lock_timeout: float = 2.0,
        swap_attempts: int = 5,
        pipeline: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        retry_backoff: float = 0.5,
        on_step: StepCallback | None = None,
    ) -> None:
        if lock_timeout <= 0:
            raise ValueError(f"lock_timeout: expected a positive number of seconds, got {lock_timeout!r}")
        if not isinstance(swap_attempts, int) or swap_attempts < 1:
            raise ValueError(f"swap_attempts: expected an integer >= 1, got {swap_attempts!r}")
        self.hook = hook
        self.lock_timeout = float(lock_timeout)
        self.swap_attempts = swap_attempts
        self.pipeline = pipeline
        self.task_id = task_id
        self.run_id = run_id
        self.retry_backoff = retry_backoff
        self.on_step = on_step
        self.last_swap_seconds: float | None = None  # duration of the last successful swap transaction

    # -- connections and locks ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self) -> Any:
        conn = self.hook.get_conn()
        if not isinstance(conn, psycopg.Connection):
            with contextlib.suppress(Exception):
                conn.close()
            raise PublishError("the publish engine needs the psycopg 3 driver (connection extra driver=psycopg)")
        try:
            conn.autocommit = True
            _exec(conn, "set time zone 'UTC'")
            _exec(conn, "set application_name = 'dataeng-publish'")
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _step(self, name: str, conn: psycopg.Connection) -> None:
        log.debug("publish step %s", name)
        if self.on_step is not None:
            self.on_step(name, conn)

    def _advisory_lock(self, conn: psycopg.Connection, key: int, what: str) -> None:
        """Session advisory lock for the target: waits (logging) while another publish holds it."""
        waited_since = time.monotonic()
        next_log = 0.0
        while not catalog.scalar(conn, "select pg_try_advisory_lock(%s)", [key]):
            elapsed = time.monotonic() - waited_since
            if elapsed >= next_log:
                holder = catalog.scalar(conn, """
                    select pid from pg_locks where locktype = 'advisory' and granted
                      and ((classid::bigint << 32) | objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)
                    limit 1""", [key])
                log.info("Waiting for the publish lock of %s (held by backend %s) for %.0fs", what, holder, elapsed)
                next_log = elapsed + 30
            time.sleep(0.2)

    def _advisory_unlock(self, conn: psycopg.Connection, key: int) -> None:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                _exec(conn, "select pg_advisory_unlock(%s)", [key])

    def _set_lock_timeout(self, conn: psycopg.Connection) -> None:
        _exec(conn, "select set_config('lock_timeout', %s, true)", [f"{int(self.lock_timeout * 1000)}ms"])

    def _with_lock_retries(self, conn: psycopg.Connection, what: str, watched: Sequence[TableRef],
                           attempt_fn: Callable[[], Any]) -> Any:
        """Run one swap transaction, retrying on lock timeout or deadlock with exponential backoff."""
        for attempt in range(1, self.swap_attempts + 1):
            try:
                started = time.monotonic()
                out = attempt_fn()
                self.last_swap_seconds = time.monotonic() - started
                return out
            except psycopg.Error as exc:
                if exc.sqlstate not in RETRYABLE_SQLSTATES:
                    raise
                blockers = self._describe_lock_holders(conn, watched)
                if attempt >= self.swap_attempts:
                    raise SwapLockTimeout(
                        f"swap of {what} failed: could not get its locks within lock_timeout "
                        f"{self.lock_timeout:g}s in {self.swap_attempts} attempts (last error: "
                        f"{exc.sqlstate} {str(exc).strip().splitlines()[0]}). Sessions holding locks: "
                        f"{blockers or 'none found'}. Live data is unchanged."
                    ) from exc
                delay = min(10.0, self.retry_backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                log.warning("Swap of %s: lock not available within %gs (attempt %d/%d, %s); holders: %s; "
                            "retrying in %.2fs", what, self.lock_timeout, attempt, self.swap_attempts,
                            exc.sqlstate, blockers or "none found", delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _describe_lock_holders(self, conn: psycopg.Connection, refs: Sequence[TableRef]) -> str:
        try:
            found = catalog.rows(conn, """
                select distinct l.pid, l.mode, a.state, a.usename,
                       extract(epoch from now() - a.xact_start)::int, left(a.query, 80)
                from pg_locks l join pg_stat_activity a on a.pid = l.pid
                join pg_class c on c.oid = l.relation join pg_namespace n on n.oid = c.relnamespace
                where l.granted and l.pid <> pg_backend_pid()
                  and (n.nspname, c.relname) in (select * from unnest(%s::text[], %s::text[]))
                order by 1 limit 5""", [[r.schema for r in refs], [r.table for r in refs]])
        except psycopg.Error:
            return ""
        return "; ".join(f"pid {p} ({m}, {s}, user {u}, transaction open {age}s: {q!r})"
                         for p, m, s, u, age, q in found)

    # -- shared steps ------------------------------------------------------------------------------
    def _drop_if_exists(self, conn: psycopg.Connection, ref: TableRef) -> bool:
        if catalog.relation(conn, ref) is None:
            return False
        log.info("Dropping leftover %s from an earlier attempt", ref)
        _exec(conn, sql.SQL("drop table if exists {}").format(ref.ident()))
        return True

    def _run_loader(self, conn: psycopg.Connection, loader: Loader, staging: TableRef) -> LoadStats:
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

    def _measure(self, conn: psycopg.Connection, staging: TableRef, known_rows: int | None = None) -> tuple[int, int]:
        """VACUUM (ANALYZE) staging, then count it (unless the loader reports a server-confirmed count).

        The new table goes live with statistics, hint bits and a visibility map, so autovacuum has no
        reason to work on it (an autovacuum on a table the swap must lock would delay the swap).
        ``known_rows``: the row count the loader reconciled (e.g. COPY's own count on the server), which
        spares a second full scan of a large staging table.
        """
        _exec(conn, sql.SQL("vacuum (analyze) {}").format(staging.ident()))
        rows = known_rows if known_rows is not None else catalog.scalar(
            conn, sql.SQL("select count(*) from {}").format(staging.ident()))
        size = catalog.scalar(conn, "select pg_total_relation_size(%s::oid)",
                              [catalog.relation(conn, staging).oid])
        return int(rows), int(size)

    def _check(self, conn: psycopg.Connection, staging: TableRef, rows: int, baseline: TableRef | None,
               checks: Sequence[Check]) -> list[CheckResult]:
        if not checks:
            return []
        with conn.transaction():
            _exec(conn, "set transaction read only")
            return run_checks(CheckContext(conn, staging, rows, baseline), checks)

    def _reject(self, conn: psycopg.Connection, entry: LedgerEntry, staging: TableRef, results: list[CheckResult],
                result: PublishResult, keep_failed_staging: bool) -> None:
        if keep_failed_staging:
            entry.details["kept_staging"] = staging.qualified
            log.warning("Keeping the rejected staging table %s for inspection", staging)
        else:
            _exec(conn, sql.SQL("drop table if exists {}").format(staging.ident()))
        entry.status = "rejected"
        entry.finished_at = _now()
        result.status = "rejected"
        result.ledger_id = write_ledger_row(conn, entry)
        raise PublishRejected(str(result.partition or result.target), results, result)

    def _record_failure(self, conn: psycopg.Connection, entry: LedgerEntry, exc: BaseException,
                        staging: TableRef | None, key: int | None) -> None:
        """Best effort after an error: drop staging, write a 'failed' ledger row (fresh connection if needed)."""
        entry.status = "failed"
        entry.error = f"{type(exc).__name__}: {str(exc).strip()}"[:4000]
        entry.finished_at = _now()
        own = conn
        fresh = None
        try:
            if conn.closed or conn.broken:
                fresh = own = self.hook.get_conn()
                own.autocommit = True
                # Our session lock died with the connection: only clean up if no rerun holds it now.
                if key is not None and not catalog.scalar(own, "select pg_try_advisory_lock(%s)", [key]):
                    staging = None
            elif conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            if staging is not None:
                _exec(own, sql.SQL("drop table if exists {}").format(staging.ident()))
            ensure_ledger(own)
            write_ledger_row(own, entry)
        except Exception as ledger_exc:  # never hide the original error
            log.error("Could not record the failed publish in the ledger: %s", ledger_exc)
        finally:
            if fresh is not None:
                with contextlib.suppress(Exception):
                    fresh.close()

    def _entry(self, target: TableRef, mode: str, **kw: Any) -> LedgerEntry:
        return LedgerEntry(target_schema=target.schema, target_table=target.table, mode=mode, status="failed",
                           started_at=_now(), pipeline=self.pipeline, task_id=self.task_id, run_id=self.run_id,
                           **kw)

    @staticmethod
    def _source(loader: Loader | None, select_sql: str | None) -> None:
        if (loader is None) == (select_sql is None):
            raise ValueError("publish: give exactly one of 'loader' (a callable) or 'select_sql' (a query)")
        if select_sql is not None and (not isinstance(select_sql, str) or not select_sql.strip()):
            raise ValueError(f"select_sql: expected a SELECT query, got {select_sql!r}")

    @staticmethod
    def _checks(checks: Sequence[Check | dict] | None) -> list[Check]:
        return build_checks(list(checks or []))

    @staticmethod
    def _select(select_sql: str) -> sql.Composed:
        """``select * from (<select_sql>) q``: exactly one query (a second statement is a syntax error)."""
        return sql.SQL("select * from ({}) q").format(sql.SQL(select_sql.strip().rstrip(";").strip()))

    def _lock_views(self, conn: psycopg.Connection, views: Sequence[catalog.DependentView]) -> None:
        """Take ACCESS EXCLUSIVE on each dependent view before the table (the order readers lock in).

        A no-op owner change locks just the view (``LOCK TABLE`` on a view would also lock every base
        table of the view).
        """
        for view in views:
            _exec(conn, sql.SQL("alter view {} owner to {}").format(view.ref.ident(), sql.Identifier(view.owner)))

    def _rebind_views(self, conn: psycopg.Connection, definitions: list[tuple[catalog.DependentView, str, list]]) -> None:
        for view, definition, options in definitions:
            opts = [sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v))
                    for k, _, v in (o.partition("=") for o in options or []) if re.match(r"^[a-z_]+$", k)]
            with_clause = sql.SQL(" with ({})").format(sql.SQL(", ").join(opts)) if opts else sql.SQL("")
            _exec(conn, sql.SQL("create or replace view {}{} as {}").format(
                view.ref.ident(), with_clause, sql.SQL(definition.strip().rstrip(";"))))

    def _view_definitions(self, conn: psycopg.Connection, views: Sequence[catalog.DependentView]) -> list:
        out = []
        for view in views:
            definition, options = catalog.rows(
                conn, "select pg_get_viewdef(%s::oid), reloptions from pg_class where oid = %s", [view.oid, view.oid])[0]
            out.append((view, definition, options))
        return out

    # -- table swap --------------------------------------------------------------------------------
    def publish_table(
        self,
        target: TableRef | str,
        *,
        loader: Loader | None = None,
        select_sql: str | None = None,
        checks: Sequence[Check | dict] = (),
        columns: Sequence[tuple[str, str]] | None = None,
        mode: str = "table_swap",
        keep_previous: bool = True,
        keep_failed_staging: bool = False,
    ) -> PublishResult:
        """Replace the whole table: staging -> checks -> one swap transaction.

        ``select_sql`` builds staging with ``CREATE TABLE AS`` (its shape is the query's). A ``loader``
        fills a staging table created ``LIKE`` the live table (or from ``columns`` on the first publish;
        without either, the loader creates the staging table it is given). Indexes, constraints,
        defaults, triggers, comments, owner and grants of the live table are copied to staging before
        the swap; dependent views are re-bound to the new table in the swap transaction.
        """
        target = TableRef.parse(target) if isinstance(target, str) else target
        self._source(loader, select_sql)
        check_list = self._checks(checks)
        staging, previous = target.with_suffix(STAGING_SUFFIX), target.with_suffix(PREVIOUS_SUFFIX)
        key = lock_key("table", target.schema, target.table)
        entry = self._entry(target, mode)
        result = PublishResult("failed", target, None, 0, None, [], None)
        with self._connection() as conn:
            try:
                self._advisory_lock(conn, key, target.qualified)
                self._step("locked", conn)
                ensure_ledger(conn)
                live = catalog.relation(conn, target)
                if live is not None and live.relkind != "r":
                    kind = "partitioned table (use publish_partition)" if live.relkind == "p" else f"relkind {live.relkind}"
                    raise PublishError(f"table swap of {target}: it is a {kind}, expected an ordinary table")
                if live is not None and (problems := catalog.blocking_dependents(conn, live.oid)):
                    raise PublishError(f"table swap of {target} would break: {'; '.join(problems)}. "
                                       "Drop or change them first (they bind to the table itself, not its name).")
                self._drop_if_exists(conn, staging)
                self._drop_retired(conn, target)
                self._ensure_schema(conn, target.schema)
                if select_sql is not None:
                    _exec(conn, sql.SQL("create table {} as {}").format(staging.ident(), self._select(select_sql)))
                elif live is not None:
                    _exec(conn, sql.SQL("create table {} (like {} including defaults including generated)").format(
                        staging.ident(), target.ident()))
                elif columns:
                    _exec(conn, sql.SQL("create table {} ({})").format(staging.ident(), self._column_list(conn, columns)))
                self._step("staging_created", conn)
                stats = self._run_loader(conn, loader, staging) if loader is not None else LoadStats()
                self._step("loaded", conn)
                if catalog.relation(conn, staging) is None:
                    raise PublishError(f"the loader did not create the staging table {staging}")
                rows, size = self._measure(conn, staging, stats.rows)
                result.rows, result.bytes = rows, stats.bytes if stats.bytes is not None else size
                entry.rows, entry.bytes = result.rows, result.bytes
                entry.details.update(stats.details)
                results = self._check(conn, staging, rows, target if live else None, check_list)
                result.checks = results
                entry.checks = [r.as_dict() for r in results]
                self._step("checked", conn)
                if any(not r.passed for r in results):
                    self._reject(conn, entry, staging, results, result, keep_failed_staging)
                renames: list[Rename] = []
                if live is not None:
                    with conn.transaction():
                        set_catalog_search_path(conn)
                        new = catalog.relation(conn, staging)
                        report = copy_structure(conn, live, new)
                        entry.details["carried_over"] = report.copied + copy_access(conn, live, new)
                        renames = report.renames
                self._step("prepared", conn)
                entry.details["kept_previous"] = bool(live is not None and keep_previous)
                result.ledger_id = self._with_lock_retries(
                    conn, target.qualified, [target, staging, previous],
                    lambda: self._swap_table_txn(conn, target, staging, previous, live, keep_previous, renames, entry),
                )
                self._step("committed", conn)
                self._drop_retired(conn, target)
                result.status = "published"
                result.details = dict(entry.details)
                log.info("Published %s: %s rows (swap %.0f ms)", target, rows, (self.last_swap_seconds or 0) * 1000)
                return result
            except PublishRejected:
                raise
            except BaseException as exc:
                self._record_failure(conn, entry, exc, staging, key)
                raise
            finally:
                self._advisory_unlock(conn, key)

    def _swap_table_txn(
        self,
        conn: psycopg.Connection,
        target: TableRef,
        incoming: TableRef,
        previous: TableRef,
        live: catalog.Relation | None,
        keep_previous: bool,
        renames: list[Rename],
        entry: LedgerEntry,
        before: Callable[[], None] | None = None,
    ) -> int:
        """ONE transaction: previous dropped, live -> previous, incoming -> live, views re-bound, ledger row."""
        with conn.transaction():
            self._set_lock_timeout(conn)
            set_catalog_search_path(conn)
            # Lock order: the tables no reader uses first (waiting on them blocks nobody), then the
            # dependent views, then the live table (the order readers of the views lock in).
            side = [r for r in (incoming, previous) if catalog.relation(conn, r) is not None]
            _exec(conn, sql.SQL("lock table {} in access exclusive mode").format(
                sql.SQL(", ").join(r.ident() for r in side)))
            views = [v for v in catalog.dependent_views(conn, live.oid) if v.relkind == "v"] if live else []
            self._lock_views(conn, views)
            if live is not None:
                _exec(conn, sql.SQL("lock table {} in access exclusive mode").format(target.ident()))
            self._step("swap_locked", conn)
            current = catalog.relation(conn, target)
            if (current.oid if current else None) != (live.oid if live else None):
                raise PublishError(f"{target} was replaced by someone else during the publish; rerun")
            if live is not None:
                late = [v for v in catalog.dependent_views(conn, live.oid)
                        if v.relkind == "v" and v.oid not in {x.oid for x in views}]
                self._lock_views(conn, late)
                views += late
            definitions = self._view_definitions(conn, views)
            if before is not None:
                before()
            old_previous = catalog.relation(conn, previous)
            if old_previous is not None:
                self._retire(conn, old_previous, target.with_suffix(RETIRED_SUFFIXES[0]), RETIRED_SUFFIXES[0])
            if live is not None and keep_previous:
                _exec(conn, sql.SQL("alter table {} rename to {}").format(target.ident(), sql.Identifier(previous.table)))
                for kind, name in named_objects(conn, live.oid):
                    rename_object(conn, kind, previous, name, previous_name(name))
            elif live is not None:
                self._retire(conn, live, target.with_suffix(RETIRED_SUFFIXES[1]), RETIRED_SUFFIXES[1])
            _exec(conn, sql.SQL("alter table {} rename to {}").format(incoming.ident(), sql.Identifier(target.table)))
            for r in renames:
                rename_object(conn, r.kind, target, r.temp, r.final)
            self._rebind_views(conn, definitions)
            if live is not None:
                new_cols = {c for c, _ in catalog.columns(conn, catalog.relation(conn, target).oid)}
                for seq, column in catalog.rows(conn, """
                        select d.objid::regclass::text, a.attname from pg_depend d
                        join pg_class s on s.oid = d.objid and s.relkind = 'S'
                        join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
                        where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
                          and d.refobjid = %s and d.deptype = 'a'""", [live.oid]):
                    if column in new_cols:
                        _exec(conn, sql.SQL("alter sequence {} owned by {}.{}").format(
                            sql.SQL(seq), target.ident(), sql.Identifier(column)))
            entry.status = "published"
            entry.finished_at = _now()
            ledger_id = write_ledger_row(conn, entry)
            self._step("swapped", conn)
        return ledger_id

    @staticmethod
    def _retire(conn: psycopg.Connection, rel: catalog.Relation, to: TableRef, suffix: str) -> None:
        """Rename a table leaving the swap (and its schema-unique names) out of the way; dropped after COMMIT."""
        _exec(conn, sql.SQL("alter table {} rename to {}").format(rel.ref.ident(), sql.Identifier(to.table)))
        for kind, name in named_objects(conn, rel.oid):
            rename_object(conn, kind, to, name, suffixed_name(name, suffix))

    def _drop_retired(self, conn: psycopg.Connection, base: TableRef) -> None:
        """Drop the ``__retired`` tables of ``base`` (after the swap committed, or leftovers of a crash)."""
        for suffix in RETIRED_SUFFIXES:
            ref = base.with_suffix(suffix)
            try:
                if catalog.relation(conn, ref) is not None:
                    _exec(conn, sql.SQL("drop table {}").format(ref.ident()))
            except psycopg.Error as exc:  # a user's view on an old __previous, a lost connection: not fatal
                log.warning("Could not drop %s (%s); the next publish retries", ref,
                            (str(exc).strip().splitlines() or [type(exc).__name__])[0])

    @staticmethod
    def _ensure_schema(conn: psycopg.Connection, schema: str) -> None:
        if not catalog.scalar(conn, "select count(*) from pg_namespace where nspname = %s", [schema]):
            _exec(conn, sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))

    def _column_list(self, conn: psycopg.Connection, columns: Sequence[tuple[str, str]]) -> sql.Composed:
        self._validate_columns(conn, columns)
        return sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns)

    @staticmethod
    def _validate_columns(conn: psycopg.Connection, columns: Sequence[tuple[str, str]]) -> None:
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

    # -- partitions --------------------------------------------------------------------------------
    def ensure_partitioned_parent(self, target: TableRef | str, columns: list[tuple[str, str]],
                                  partition_column: str) -> None:
        """Create schema + ``target`` PARTITION BY RANGE (``partition_column``) when missing.

        ``columns`` are ``(name, type)`` with types as ``format_type()`` prints them; they are validated
        against the server. An existing table must be range-partitioned on ``partition_column``.
        """
        target = TableRef.parse(target) if isinstance(target, str) else target
        if partition_column not in {c[0] for c in columns if isinstance(c, (tuple, list)) and c}:
            raise ValueError(f"partition_column {partition_column!r} is not one of the columns")
        with self._connection() as conn:
            self._validate_columns(conn, columns)
            ptype = dict(columns)[partition_column]
            with conn.transaction():
                _exec(conn, "select pg_advisory_xact_lock(%s)", [lock_key("table", target.schema, target.table)])
                existing = catalog.relation(conn, target)
                if existing is not None:
                    self._partition_column_type(conn, existing, partition_column)
                    return
                if catalog.scalar(conn, "select format_type(to_regtype(%s), null)", [ptype]) not in PARTITION_TYPES:
                    raise ValueError(f"partition_column {partition_column!r} has type {ptype!r}: expected one of "
                                     f"{', '.join(PARTITION_TYPES)}")
                _exec(conn, sql.SQL("create schema if not exists {}").format(sql.Identifier(target.schema)))
                _exec(conn, sql.SQL("create table {} ({}) partition by range ({})").format(
                    target.ident(), self._column_list(conn, columns), sql.Identifier(partition_column)))
                log.info("Created partitioned table %s (range on %s)", target, partition_column)

    def _partition_column_type(self, conn: psycopg.Connection, parent: catalog.Relation, column: str) -> str:
        if parent.relkind != "p":
            raise PublishError(f"{parent.ref} exists and is not a partitioned table (relkind {parent.relkind})")
        key = catalog.partition_key(conn, parent.oid)
        if key is None or key[0] != "r" or key[1] != column:
            raise PublishError(f"{parent.ref} is not range-partitioned on {column!r} (partition key: {key})")
        if key[2] not in PARTITION_TYPES:
            raise PublishError(f"{parent.ref}: partition column {column!r} has type {key[2]}, expected one of "
                               f"{', '.join(PARTITION_TYPES)}")
        return key[2]

    def _find_partition(self, conn: psycopg.Connection, parent: catalog.Relation, column_type: str,
                        lower: Any, upper: Any) -> catalog.PartitionInfo | None:
        """The child with exactly these bounds, or None; any other overlapping child is an error."""
        exact = None
        for part in catalog.partitions(conn, parent.oid, column_type):
            if part.is_default:
                continue
            if part.lower == lower and part.upper == upper:
                exact = part
            elif (part.lower is None or part.lower < upper) and (part.upper is None or lower < part.upper):
                raise PublishError(f"partition {part.ref} [{part.lower}, {part.upper}) overlaps the bounds "
                                   f"[{lower}, {upper}) of this publish; align the partition layout")
        return exact

    def _bounds_sql(self, lower: Any, upper: Any, column_type: str) -> tuple[sql.Composable, sql.Composable]:
        typ = sql.SQL(column_type)
        return (sql.SQL("{}::{}").format(sql.Literal(lower.isoformat()), typ),
                sql.SQL("{}::{}").format(sql.Literal(upper.isoformat()), typ))

    def publish_partition(
        self,
        target: TableRef | str,
        *,
        partition_column: str,
        lower: Any,
        upper: Any,
        loader: Loader | None = None,
        select_sql: str | None = None,
        checks: Sequence[Check | dict] = (),
        mode: str = "partition_swap",
        keep_previous: bool = False,
        keep_failed_staging: bool = False,
    ) -> PublishResult:
        """Replace one range partition ``[lower, upper)`` of ``target``.

        Staging is a standalone table ``LIKE`` the parent with a CHECK constraint equal to the bounds
        (so ATTACH skips its validation scan) and the parent's indexes; then one transaction detaches
        the old partition (dropped, or kept as ``<partition>__previous``), attaches staging and writes
        the ledger row. With ``select_sql`` and no parent table, the parent is created from the query's
        columns (plus ``partition_column`` as timestamptz when the query lacks it, filled with ``lower``).
        """
        target = TableRef.parse(target) if isinstance(target, str) else target
        self._source(loader, select_sql)
        if not isinstance(partition_column, str) or not partition_column:
            raise ValueError(f"partition_column: expected a column name, got {partition_column!r}")
        check_list = self._checks(checks)
        entry = self._entry(target, mode, partition_column=partition_column)
        result = PublishResult("failed", target, None, 0, None, [], None)
        staging: TableRef | None = None
        key: int | None = None
        if select_sql is not None:
            self._ensure_parent_for_select(target, select_sql, partition_column)
        with self._connection() as conn:
            try:
                parent = catalog.relation(conn, target)
                if parent is None:
                    raise PublishError(f"partitioned table {target} does not exist: call ensure_partitioned_parent "
                                       "first (or publish with select_sql)")
                column_type = self._partition_column_type(conn, parent, partition_column)
                lower = normalize_bound(lower, column_type, "partition lower bound")
                upper = normalize_bound(upper, column_type, "partition upper bound")
                if not lower < upper:
                    raise ValueError(f"partition bounds: lower {lower} must be before upper {upper}")
                entry.partition_start, entry.partition_end = _as_utc_datetime(lower), _as_utc_datetime(upper)
                part = partition_ref(target, lower)
                staging, previous = part.with_suffix(STAGING_SUFFIX), part.with_suffix(PREVIOUS_SUFFIX)
                result.partition = part
                key = lock_key("partition", target.schema, target.table, lower.isoformat(), upper.isoformat())
                self._advisory_lock(conn, key, f"{target} [{lower}, {upper})")
                self._step("locked", conn)
                ensure_ledger(conn)
                exact = self._find_partition(conn, parent, column_type, lower, upper)
                self._drop_if_exists(conn, staging)
                self._drop_retired(conn, part)
                lo_sql, hi_sql = self._bounds_sql(lower, upper, column_type)
                col = sql.Identifier(partition_column)
                _exec(conn, sql.SQL(
                    "create table {} (like {} including defaults including constraints including generated "
                    "including storage including compression)").format(staging.ident(), target.ident()))
                _exec(conn, sql.SQL("alter table {} add constraint {} check ({} is not null and {} >= {} and {} < {})")
                      .format(staging.ident(), sql.Identifier(BOUNDS_CONSTRAINT), col, col, lo_sql, col, hi_sql))
                self._step("staging_created", conn)
                if loader is not None:
                    stats = self._run_loader(conn, loader, staging)
                else:
                    stats = LoadStats()
                    self._insert_select(conn, staging, select_sql, partition_column, lo_sql)
                self._step("loaded", conn)
                rows, size = self._measure(conn, staging, stats.rows)
                result.rows, result.bytes = rows, stats.bytes if stats.bytes is not None else size
                entry.rows, entry.bytes = result.rows, result.bytes
                entry.details.update(stats.details)
                entry.details["partition"] = part.qualified
                results = self._check(conn, staging, rows, exact.ref if exact else None, check_list)
                result.checks = results
                entry.checks = [r.as_dict() for r in results]
                self._step("checked", conn)
                if any(not r.passed for r in results):
                    self._reject(conn, entry, staging, results, result, keep_failed_staging)
                with conn.transaction():
                    set_catalog_search_path(conn)
                    renames = self._partition_indexes(conn, parent, staging, part)
                    new = catalog.relation(conn, staging)
                    source = catalog.relation_by_oid(conn, exact.oid) if exact else None
                    if source is not None:
                        copy_access(conn, source, new)
                    elif new.owner != parent.owner:
                        _exec(conn, sql.SQL("alter table {} owner to {}").format(
                            staging.ident(), sql.Identifier(parent.owner)))
                self._step("prepared", conn)
                entry.details["kept_previous"] = bool(exact and keep_previous)
                result.ledger_id = self._with_lock_retries(
                    conn, part.qualified, [target, staging] + ([exact.ref] if exact else []),
                    lambda: self._swap_partition_txn(conn, target, part, staging, previous, exact, lo_sql, hi_sql,
                                                     keep_previous, renames, entry),
                )
                self._step("committed", conn)
                self._drop_retired(conn, part)
                result.status = "published"
                result.details = dict(entry.details)
                log.info("Published %s [%s, %s): %s rows (swap %.0f ms)", target, lower, upper, rows,
                         (self.last_swap_seconds or 0) * 1000)
                return result
            except PublishRejected:
                raise
            except BaseException as exc:
                self._record_failure(conn, entry, exc, staging, key)
                raise
            finally:
                if key is not None:
                    self._advisory_unlock(conn, key)

    def _ensure_parent_for_select(self, target: TableRef, select_sql: str, partition_column: str) -> None:
        with self._connection() as conn:
            if catalog.relation(conn, target) is not None:
                return
            with conn.cursor() as cur:
                cur.execute(sql.SQL("{} limit 0").format(self._select(select_sql)))
                oids = [(d.name, d.type_code) for d in cur.description]
            cols = [(name, catalog.scalar(conn, "select format_type(%s, null)", [oid])) for name, oid in oids]
            if partition_column not in {n for n, _ in cols}:
                cols.append((partition_column, "timestamp with time zone"))
        self.ensure_partitioned_parent(target, cols, partition_column)

    def _insert_select(self, conn: psycopg.Connection, staging: TableRef, select_sql: str, partition_column: str,
                       lower_sql: sql.Composable) -> None:
        """INSERT the query's rows by column name; a missing partition column gets the lower bound."""
        with conn.cursor() as cur:
            cur.execute(sql.SQL("{} limit 0").format(self._select(select_sql)))
            names = [d.name for d in cur.description]
        if len(set(names)) != len(names):
            raise PublishError(f"select_sql returns duplicate column names: {names}")
        targets = [sql.Identifier(n) for n in names]
        values: list[sql.Composable] = [sql.SQL("q.{}").format(sql.Identifier(n)) for n in names]
        if partition_column not in names:
            targets.append(sql.Identifier(partition_column))
            values.append(lower_sql)
        _exec(conn, sql.SQL("insert into {} ({}) select {} from ({}) q").format(
            staging.ident(), sql.SQL(", ").join(targets), sql.SQL(", ").join(values), self._select(select_sql)))

    def _partition_indexes(self, conn: psycopg.Connection, parent: catalog.Relation, staging: TableRef,
                           part: TableRef) -> list[Rename]:
        """Create on staging an index matching each of the parent's, so ATTACH builds nothing."""
        renames = []
        for info in catalog.indexes(conn, parent.oid):
            final = suffixed_name(part.table, "_" + (info.constraint or info.name))
            temp = suffixed_name(final, STAGING_SUFFIX)
            if info.constraint:
                _exec(conn, sql.SQL("alter table {} add constraint {} {}").format(
                    staging.ident(), sql.Identifier(temp), sql.SQL(info.constraint_def or "")))
                renames.append(Rename("constraint", temp, final))
            else:
                unique, tail = catalog.index_tail(conn, info, parent)
                _exec(conn, sql.SQL("create {}index {} on {}{}").format(
                    sql.SQL("unique " if unique else ""), sql.Identifier(temp), staging.ident(), sql.SQL(tail)))
                renames.append(Rename("index", temp, final))
        return renames

    def _swap_partition_txn(
        self,
        conn: psycopg.Connection,
        parent: TableRef,
        part: TableRef,
        incoming: TableRef,
        previous: TableRef,
        exact: catalog.PartitionInfo | None,
        lo_sql: sql.Composable,
        hi_sql: sql.Composable,
        keep_previous: bool,
        renames: list[Rename],
        entry: LedgerEntry,
        before: Callable[[], None] | None = None,
    ) -> int:
        """ONE transaction: detach old (drop or keep as previous), attach incoming, ledger row."""
        with conn.transaction():
            self._set_lock_timeout(conn)
            set_catalog_search_path(conn)
            # Standalone tables no reader uses first, then parent, then the old partition (readers' order).
            side = [r for r in (incoming, previous) if catalog.relation(conn, r) is not None]
            _exec(conn, sql.SQL("lock table {} in access exclusive mode").format(
                sql.SQL(", ").join(r.ident() for r in side)))
            mode = "access exclusive" if exact else "share update exclusive"
            _exec(conn, sql.SQL("lock table {} in {} mode").format(parent.ident(), sql.SQL(mode)))
            if exact is not None:
                _exec(conn, sql.SQL("lock table {} in access exclusive mode").format(exact.ref.ident()))
            self._step("swap_locked", conn)
            if exact is not None:
                still = catalog.relation(conn, exact.ref)
                if still is None or still.oid != exact.oid:
                    raise PublishError(f"partition {exact.ref} changed during the publish; rerun")
                _exec(conn, sql.SQL("alter table {} detach partition {}").format(parent.ident(), exact.ref.ident()))
            if before is not None:
                before()
            if exact is not None:
                if keep_previous:
                    old_previous = catalog.relation(conn, previous)
                    if old_previous is not None:
                        self._retire(conn, old_previous, part.with_suffix(RETIRED_SUFFIXES[0]), RETIRED_SUFFIXES[0])
                    _exec(conn, sql.SQL("alter table {} rename to {}").format(
                        exact.ref.ident(), sql.Identifier(previous.table)))
                    for kind, name in named_objects(conn, exact.oid):
                        rename_object(conn, kind, previous, name, previous_name(name))
                else:
                    old = catalog.relation_by_oid(conn, exact.oid)
                    self._retire(conn, old, part.with_suffix(RETIRED_SUFFIXES[0]), RETIRED_SUFFIXES[0])
            _exec(conn, sql.SQL("alter table {} rename to {}").format(incoming.ident(), sql.Identifier(part.table)))
            for r in renames:
                rename_object(conn, r.kind, part, r.temp, r.final)
            _exec(conn, sql.SQL("alter table {} attach partition {} for values from ({}) to ({})").format(
                parent.ident(), part.ident(), lo_sql, hi_sql))
            entry.status = "published"
            entry.finished_at = _now()
            ledger_id = write_ledger_row(conn, entry)
            self._step("swapped", conn)
        return ledger_id

    # -- checks on an existing table ---------------------------------------------------------------
    def check_table(self, table: TableRef | str, checks: Sequence[Check | dict]) -> list[CheckResult]:
        """Run ``checks`` on an existing table (read only); raise ChecksFailed with the table when any fails."""
        table = TableRef.parse(table) if isinstance(table, str) else table
        check_list = self._checks(checks)
        if not check_list:
            raise ValueError("checks: expected at least one check")
        if any(c.kind == "drift" for c in check_list):
            raise ValueError("checks: 'drift' compares staging with published data; it needs a publish, not a "
                             "check of an existing table")
        with self._connection() as conn:
            if catalog.relation(conn, table) is None:
                raise PublishError(f"table {table} does not exist")
            rows = catalog.scalar(conn, sql.SQL("select count(*) from {}").format(table.ident()))
            results = self._check(conn, table, int(rows), None, check_list)
        if any(not r.passed for r in results):
            raise ChecksFailed(table.qualified, results)
        log.info("All %d checks passed on %s", len(results), table)
        return results

    # -- rollback ----------------------------------------------------------------------------------
    def rollback(self, target: TableRef | str, partition_start: Any = None) -> PublishResult:
        """Swap ``__previous`` back in (the rolled-back version becomes ``__previous``: a second rollback
        undoes the first). For a partitioned table give ``partition_start``."""
        target = TableRef.parse(target) if isinstance(target, str) else target
        if partition_start is not None:
            return self._rollback_partition(target, partition_start)
        previous, temp = target.with_suffix(PREVIOUS_SUFFIX), target.with_suffix(STAGING_SUFFIX)
        key = lock_key("table", target.schema, target.table)
        entry = self._entry(target, "rollback", details={"rollback": True})
        with self._connection() as conn:
            try:
                self._advisory_lock(conn, key, target.qualified)
                ensure_ledger(conn)
                live = catalog.relation(conn, target)
                prev = catalog.relation(conn, previous)
                if prev is None:
                    raise PublishError(f"rollback of {target}: there is no {previous} to restore")
                if live is not None and live.relkind != "r":
                    raise PublishError(f"rollback of {target}: it is partitioned; give partition_start")
                self._drop_if_exists(conn, temp)
                self._drop_retired(conn, target)
                renames = [Rename(kind, suffixed_name(name, "__rb"), _strip_previous(name))
                           for kind, name in named_objects(conn, prev.oid)]

                def before() -> None:
                    _exec(conn, sql.SQL("alter table {} rename to {}").format(previous.ident(), sql.Identifier(temp.table)))
                    for (kind, name), r in zip(named_objects(conn, prev.oid), renames, strict=True):
                        rename_object(conn, kind, temp, name, r.temp)
                    if live is not None:
                        copy_access(conn, live, catalog.relation(conn, temp))

                entry.rows = catalog.scalar(conn, sql.SQL("select count(*) from {}").format(previous.ident()))
                ledger_id = self._with_lock_retries(
                    conn, target.qualified, [target, previous],
                    lambda: self._swap_table_txn(conn, target, temp, previous, live, True, renames, entry, before),
                )
                log.info("Rolled back %s to its previous version", target)
                return PublishResult("published", target, None, entry.rows or 0, None, [], ledger_id)
            except BaseException as exc:
                self._record_failure(conn, entry, exc, None, key)
                raise
            finally:
                self._advisory_unlock(conn, key)

    def _rollback_partition(self, target: TableRef, partition_start: Any) -> PublishResult:
        entry = self._entry(target, "rollback", details={"rollback": True})
        key: int | None = None
        with self._connection() as conn:
            try:
                parent = catalog.relation(conn, target)
                if parent is None:
                    raise PublishError(f"rollback of {target}: the table does not exist")
                key_info = catalog.partition_key(conn, parent.oid)
                if parent.relkind != "p" or key_info is None:
                    raise PublishError(f"rollback of {target}: not a partitioned table; omit partition_start")
                column_type = self._partition_column_type(conn, parent, key_info[1])
                lower = normalize_bound(partition_start, column_type, "partition_start")
                part = partition_ref(target, lower)
                previous, temp = part.with_suffix(PREVIOUS_SUFFIX), part.with_suffix("__rb")
                prev = catalog.relation(conn, previous)
                if prev is None:
                    raise PublishError(f"rollback of {target} partition {lower}: there is no {previous} to restore")
                current = [p for p in catalog.partitions(conn, parent.oid, column_type)
                           if not p.is_default and p.lower == lower]
                exact = current[0] if current else None
                upper = exact.upper if exact else self._previous_upper(conn, prev, key_info[1], column_type)
                entry.partition_column = key_info[1]
                entry.partition_start, entry.partition_end = _as_utc_datetime(lower), _as_utc_datetime(upper)
                key = lock_key("partition", target.schema, target.table, lower.isoformat(), upper.isoformat())
                self._advisory_lock(conn, key, f"{target} [{lower}, {upper})")
                ensure_ledger(conn)
                self._drop_if_exists(conn, temp)
                self._drop_retired(conn, part)
                lo_sql, hi_sql = self._bounds_sql(lower, upper, column_type)
                renames = [Rename(kind, suffixed_name(name, "__rb"), _strip_previous(name))
                           for kind, name in named_objects(conn, prev.oid)]

                def before() -> None:
                    _exec(conn, sql.SQL("alter table {} rename to {}").format(previous.ident(), sql.Identifier(temp.table)))
                    for (kind, name), r in zip(named_objects(conn, prev.oid), renames, strict=True):
                        rename_object(conn, kind, temp, name, r.temp)

                entry.rows = catalog.scalar(conn, sql.SQL("select count(*) from {}").format(previous.ident()))
                entry.details["partition"] = part.qualified
                ledger_id = self._with_lock_retries(
                    conn, part.qualified, [target, previous] + ([exact.ref] if exact else []),
                    lambda: self._swap_partition_txn(conn, target, part, temp, previous, exact, lo_sql, hi_sql,
                                                     True, renames, entry, before),
                )
                log.info("Rolled back partition %s of %s", lower, target)
                return PublishResult("published", target, part, entry.rows or 0, None, [], ledger_id)
            except BaseException as exc:
                self._record_failure(conn, entry, exc, None, key)
                raise
            finally:
                if key is not None:
                    self._advisory_unlock(conn, key)

    def _previous_upper(self, conn: psycopg.Connection, prev: catalog.Relation, column: str, column_type: str) -> Any:
        """Upper bound of a detached ``__previous`` partition, from its bounds CHECK constraint."""
        found = catalog.rows(conn, """select pg_get_constraintdef(oid) from pg_constraint
                                      where conrelid = %s and conname = %s""", [prev.oid, BOUNDS_CONSTRAINT])
        m = re.search(r"< '((?:[^']|'')*)'", found[0][0]) if found else None
        if not m:
            raise PublishError(f"{prev.ref} has no {BOUNDS_CONSTRAINT} constraint: cannot tell its bounds")
        return normalize_bound(catalog.scalar(conn, sql.SQL("select %s::{}").format(sql.SQL(column_type)),
                                              [m.group(1).replace("''", "'")]), column_type, "previous upper bound")


def _strip_previous(name: str) -> str:
    return name[: -len(PREVIOUS_SUFFIX)] if name.endswith(PREVIOUS_SUFFIX) else name


__all__ = ["LoadStats", "PublishEngine", "PublishResult", "lock_key", "partition_ref", "partition_suffix",
           "normalize_bound", "Check"]
