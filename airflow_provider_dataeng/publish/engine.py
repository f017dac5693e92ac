"""The publish engine: staging table -> quality checks -> atomic table or partition swap, with a ledger.

Guarantees (see docs/publish.md):

- Live data changes only inside one short transaction (renames / detach + attach, view re-binding and
  the ledger row), run with ``SET LOCAL lock_timeout``; on a lock timeout it is retried with backoff and
  then fails clearly. Readers never see a missing table or a mix of old and new rows.
- Everything before that transaction works on ``<name>__staging`` only, so a connection killed at any
  step leaves the live table (or partition) exactly as it was; a rerun drops the leftover staging table.
- Publishes of one target (one partition for partition swaps) serialize on a session advisory lock;
  different partitions of one table build their staging tables in parallel.

One skeleton (:meth:`PublishEngine._publish`, :meth:`PublishEngine.rollback`) runs every publish and
rollback; what differs between a whole table and one partition lives in the two strategies
(:mod:`.table_swap`, :mod:`.partition_swap`).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish import catalog, staging
from airflow_provider_dataeng.publish.bounds import (
    as_utc_datetime,
    normalize_bound,
    partition_ref,
    partition_suffix,
)
from airflow_provider_dataeng.publish.catalog import execute
from airflow_provider_dataeng.publish.checks import Check, CheckResult, build_checks
from airflow_provider_dataeng.publish.errors import ChecksFailed, PublishError, PublishRejected
from airflow_provider_dataeng.publish.ledger import LedgerEntry, ensure_ledger
from airflow_provider_dataeng.publish.locks import advisory_lock, advisory_unlock, lock_key, with_lock_retries
from airflow_provider_dataeng.publish.outcome import committed_row, record_failure, reject
from airflow_provider_dataeng.publish.partition_swap import (
    PartitionSwap,
    create_parent,
    select_parent_columns,
)
from airflow_provider_dataeng.publish.renames import (
    ROLLBACK_SUFFIX,
    Rename,
    move_table,
    named_objects,
    strip_previous,
)
from airflow_provider_dataeng.publish.result import PublishResult
from airflow_provider_dataeng.publish.staging import Loader, LoadStats
from airflow_provider_dataeng.publish.swap import StepCallback, SwapStrategy, now, swap_transaction
from airflow_provider_dataeng.publish.table_ref import TableRef, suffixed_name
from airflow_provider_dataeng.publish.table_swap import TableSwap
from airflow_provider_dataeng.values import first_line

log = logging.getLogger(__name__)

KEEPALIVES = {"tcp_keepalives_idle": 60, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 6}


class PublishEngine:
    """Build a staging table, check it, then swap it in atomically (whole table or one partition).

    :param hook: a ``FailoverPostgresHook`` (psycopg 3 driver) for the warehouse.
    :param lock_timeout: seconds the swap transaction may wait for its locks (``SET LOCAL lock_timeout``);
        readers queued behind the swap wait at most this long.
    :param swap_attempts: swap transaction attempts on lock timeout / deadlock before failing.
    :param pipeline, task_id, run_id: recorded in the ledger.
    :param retry_backoff: base seconds of the exponential backoff (with jitter) between swap attempts.
    :param data_interval: ``(start, end)`` of the run, recorded in the ledger (``interval_start/end``; a
        partition publish without one records its bounds), so the gap check knows table-swap targets too.
    :param lock_wait: seconds a publish waits for another publish of the same target (or partition) to
        finish before failing with who holds the lock (None: no deadline).
    :param analyze: ANALYZE staging before the swap (the new table goes live with column statistics, at the
        cost of sampling it); otherwise staging is only VACUUMed and autovacuum analyzes it later.
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
        lock_wait: float | None = 3600.0,
        data_interval: tuple[Any, Any] | None = None,
        on_connect: Callable[[psycopg.Connection], None] | None = None,
        analyze: bool = False,
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
        self.lock_wait = lock_wait
        self.data_interval = tuple(as_utc_datetime(v) for v in data_interval) if data_interval else (None, None)
        self.analyze = analyze
        self.on_connect = on_connect  # runs on each new connection before anything else (e.g. a database check)
        self.last_swap_seconds: float | None = None  # duration of the last successful swap transaction
        self._open: set[psycopg.Connection] = set()  # what cancel() interrupts

    def cancel(self) -> None:
        """Cancel the statement running on the engine's connections (libpq cancel request; for ``on_kill``).

        The interrupted publish fails, drops its staging table and records 'failed'; live data is untouched.
        """
        for conn in list(self._open):
            try:  # the publish may close this connection at any moment (it fails once cancelled)
                pid = conn.info.backend_pid
                conn.cancel_safe(timeout=5.0)
            except Exception as exc:  # a closed or broken connection has nothing left to cancel
                log.info("Nothing to cancel on a publish connection: %s", first_line(exc))
            else:
                log.warning("Cancelled the running publish statement (backend %s)", pid)

    # -- the skeleton ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self) -> Any:
        conn = self.hook.get_conn()
        if not isinstance(conn, psycopg.Connection):
            with contextlib.suppress(Exception):
                conn.close()
            raise PublishError("the publish engine needs the psycopg 3 driver (connection extra driver=psycopg)")
        if self.on_connect is not None:
            try:
                self.on_connect(conn)
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.close()
                raise
        self._open.add(conn)
        try:
            conn.autocommit = True
            execute(conn, "set time zone 'UTC'")
            # The server probes an idle client every 10 s after 60 s of silence and gives up after 6 misses:
            # a worker that vanished (pod gone, network cut) releases its advisory lock in ~2 minutes.
            for name, value in KEEPALIVES.items():
                execute(conn, sql.SQL("set {} = {}").format(sql.Identifier(name), sql.Literal(value)))
            if not catalog.scalar(conn, "select current_setting('application_name')"):
                execute(conn, "set application_name = 'dataeng-publish'")
            yield conn
        finally:
            self._open.discard(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def _step(self, name: str, conn: psycopg.Connection) -> None:
        log.debug("publish step %s", name)
        if self.on_step is not None:
            self.on_step(name, conn)

    def _swap(self, conn: psycopg.Connection, s: SwapStrategy, incoming: TableRef, keep_previous: bool,
              renames: list[Rename], entry: LedgerEntry, before: Callable[[], None] | None = None) -> int:
        """The swap transaction, retried on lock timeout; returns the ledger row id."""
        watched = [*s.watched(), incoming]
        try:
            ledger_id, self.last_swap_seconds = with_lock_retries(
                conn, s.what, watched,
                lambda: swap_transaction(conn, s, incoming, keep_previous, renames, entry,
                                         lock_timeout=self.lock_timeout, step=self._step, before=before),
                lock_timeout=self.lock_timeout, attempts=self.swap_attempts, backoff=self.retry_backoff)
        except psycopg.OperationalError:
            # The connection died during the swap, maybe after the server committed it (a lost COMMIT
            # acknowledgement): the ledger row, written in the same transaction, says which.
            if not (conn.closed or conn.broken) or (ledger_id := committed_row(self.hook, entry)) is None:
                raise
            log.warning("The connection was lost at COMMIT of the swap of %s, but the swap committed (ledger row "
                        "%s)", s.what, ledger_id)
            self.last_swap_seconds = None
        return ledger_id

    def _publish(self, s: SwapStrategy, *, loader: Loader | None, select_sql: str | None, checks: Sequence[Any],
                 mode: str, keep_previous: bool, keep_failed_staging: bool) -> PublishResult:
        """Lock, staging, load, checks, swap, ledger, cleanup: the same for every strategy."""
        check_list = build_checks(list(checks or []))
        entry = self._entry(s.target, mode)
        result = PublishResult("failed", s.target, None, 0, None, [], None, run_id=self.run_id)
        locked = waiting = False
        with self._connection() as conn:
            try:
                s.resolve(conn, entry)
                result.partition, result.partition_start, result.partition_end = (
                    s.partition, entry.partition_start, entry.partition_end)
                waiting = True
                advisory_lock(conn, s.key, s.what, self.lock_wait)
                locked, waiting = True, False
                self._step("locked", conn)
                ensure_ledger(conn)
                s.inspect(conn)
                staging.drop_if_exists(conn, s.staging)
                staging.drop_retired(conn, s.slot)
                s.create_staging(conn, select_sql)
                self._step("staging_created", conn)
                stats = staging.run_loader(conn, loader, s.staging) if loader is not None else LoadStats()
                if loader is None:
                    s.fill(conn, select_sql)
                self._step("loaded", conn)
                if catalog.relation(conn, s.staging) is None:
                    raise PublishError(f"the loader did not create the staging table {s.staging}")
                rows, size = staging.measure(conn, s.staging, stats.rows, analyze=self.analyze)
                result.rows, result.bytes = rows, stats.bytes if stats.bytes is not None else size
                entry.rows, entry.bytes = result.rows, result.bytes
                entry.details = {**stats.details, **entry.details}
                baseline = s.live.ref if s.live else None
                result.checks = staging.check(conn, s.staging, rows, baseline, check_list)
                entry.checks = [r.as_dict() for r in result.checks]
                self._step("checked", conn)
                if any(not r.passed for r in result.checks):
                    reject(conn, entry, s.staging, result, keep_failed_staging)
                renames = s.prepare(conn, entry)
                self._step("prepared", conn)
                entry.details["kept_previous"] = bool(s.live is not None and keep_previous)
                result.ledger_id = self._swap(conn, s, s.staging, keep_previous, renames, entry)
                self._step("committed", conn)
                staging.drop_retired(conn, s.slot)
                result.status = "published"
                result.details = dict(entry.details)
                log.info("Published %s: %s rows (swap %.0f ms)", s.what, rows, (self.last_swap_seconds or 0) * 1000)
                return result
            except PublishRejected:
                raise
            except BaseException as exc:
                if not waiting:  # a publish that never got the lock leaves no trace (the holder's work is its own)
                    record_failure(self.hook, conn, entry, exc, s.staging if locked else None, s.key if locked else None)
                raise
            finally:
                if locked:
                    advisory_unlock(conn, s.key, s.what)

    def _entry(self, target: TableRef, mode: str, **kw: Any) -> LedgerEntry:
        entry = LedgerEntry(target_schema=target.schema, target_table=target.table, mode=mode, status="failed",
                            started_at=now(), pipeline=self.pipeline, task_id=self.task_id, run_id=self.run_id,
                            interval_start=self.data_interval[0], interval_end=self.data_interval[1], **kw)
        entry.details["attempt"] = uuid.uuid4().hex  # finds this attempt's row after a lost COMMIT reply
        return entry

    @staticmethod
    def _source(loader: Loader | None, select_sql: str | None) -> None:
        if (loader is None) == (select_sql is None):
            raise ValueError("publish: give exactly one of 'loader' (a callable) or 'select_sql' (a query)")
        if select_sql is not None and (not isinstance(select_sql, str) or not select_sql.strip()):
            raise ValueError(f"select_sql: expected a SELECT query, got {select_sql!r}")

    # -- the two strategies -------------------------------------------------------------------------------
    def publish_table(
        self,
        target: TableRef | str,
        *,
        loader: Loader | None = None,
        select_sql: str | None = None,
        checks: Sequence[Check | dict] = (),
        columns: Sequence[tuple[str, str]] | None = None,
        mode: str = TableSwap.mode,
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
        return self._publish(TableSwap(target, columns), loader=loader, select_sql=select_sql, checks=checks,
                             mode=mode, keep_previous=keep_previous, keep_failed_staging=keep_failed_staging)

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
        mode: str = PartitionSwap.mode,
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
        build_checks(list(checks or []))
        if select_sql is not None:
            self._ensure_parent_for_select(target, select_sql, partition_column)
        return self._publish(PartitionSwap(target, partition_column, lower, upper), loader=loader,
                             select_sql=select_sql, checks=checks, mode=mode, keep_previous=keep_previous,
                             keep_failed_staging=keep_failed_staging)

    # -- rollback ----------------------------------------------------------------------------------------
    def rollback(self, target: TableRef | str, partition_start: Any = None) -> PublishResult:
        """Swap ``__previous`` back in (the rolled-back version becomes ``__previous``: a second rollback
        undoes the first). For a partitioned table give ``partition_start``."""
        target = TableRef.parse(target) if isinstance(target, str) else target
        s: SwapStrategy = TableSwap(target) if partition_start is None else PartitionSwap(target, None, partition_start)
        entry = self._entry(target, "rollback", details={"rollback": True})
        locked = waiting = False
        with self._connection() as conn:
            try:
                s.resolve(conn, entry)
                waiting = True
                advisory_lock(conn, s.key, s.what, self.lock_wait)
                locked, waiting = True, False
                ensure_ledger(conn)
                prev = catalog.relation(conn, s.previous)
                if prev is None:
                    raise PublishError(f"rollback of {s.what}: there is no {s.previous} to restore")
                s.inspect(conn)
                temp = s.slot.with_suffix(ROLLBACK_SUFFIX)
                staging.drop_if_exists(conn, temp)
                staging.drop_retired(conn, s.slot)
                renames = [Rename(kind, suffixed_name(name, ROLLBACK_SUFFIX), strip_previous(name))
                           for kind, name in named_objects(conn, prev.oid)]

                def before() -> None:
                    move_table(conn, s.previous, prev.oid, temp, lambda name: suffixed_name(name, ROLLBACK_SUFFIX))
                    s.before_rollback_swap(conn, temp)

                entry.rows = catalog.scalar(conn, sql.SQL("select count(*) from {}").format(s.previous.ident()))
                ledger_id = self._swap(conn, s, temp, True, renames, entry, before)
                log.info("Rolled back %s to its previous version", s.what)
                return PublishResult("published", target, s.partition, entry.rows or 0, None, [], ledger_id,
                                     partition_start=entry.partition_start, partition_end=entry.partition_end,
                                     run_id=self.run_id)
            except BaseException as exc:
                if not waiting:
                    record_failure(self.hook, conn, entry, exc, None, s.key if locked else None)
                raise
            finally:
                if locked:
                    advisory_unlock(conn, s.key, s.what)

    # -- checks on an existing table -------------------------------------------------------------------
    def check_table(self, table: TableRef | str, checks: Sequence[Check | dict]) -> list[CheckResult]:
        """Run ``checks`` on an existing table (read only); raise ChecksFailed with the table when any fails."""
        table = TableRef.parse(table) if isinstance(table, str) else table
        check_list = build_checks(list(checks or []))
        if not check_list:
            raise ValueError("checks: expected at least one check")
        if any(c.kind == "drift" for c in check_list):
            raise ValueError("checks: 'drift' compares staging with published data; it needs a publish, not a "
                             "check of an existing table")
        with self._connection() as conn:
            if catalog.relation(conn, table) is None:
                raise PublishError(f"table {table} does not exist")
            rows = catalog.scalar(conn, sql.SQL("select count(*) from {}").format(table.ident()))
            results = staging.check(conn, table, int(rows), None, check_list)
        if any(not r.passed for r in results):
            raise ChecksFailed(table.qualified, results)
        log.info("All %d checks passed on %s", len(results), table)
        return results

    # -- partitioned parents ---------------------------------------------------------------------------
    def ensure_partitioned_parent(self, target: TableRef | str, columns: list[tuple[str, str]],
                                  partition_column: str) -> None:
        """Create schema + ``target`` PARTITION BY RANGE (``partition_column``) when missing.

        ``columns`` are ``(name, type)`` with types as ``format_type()`` prints them; they are validated
        against the server. An existing table must be range-partitioned on ``partition_column``.
        """
        target = TableRef.parse(target) if isinstance(target, str) else target
        with self._connection() as conn:
            create_parent(conn, target, columns, partition_column)

    def _ensure_parent_for_select(self, target: TableRef, select_sql: str, partition_column: str) -> None:
        with self._connection() as conn:
            if catalog.relation(conn, target) is None:
                create_parent(conn, target, select_parent_columns(conn, select_sql, partition_column), partition_column)


__all__ = ["Check", "LoadStats", "PublishEngine", "PublishResult", "lock_key", "normalize_bound", "partition_ref",
           "partition_suffix"]
