"""One extract run: describe the source, reconcile the target schema, then stream one interval's rows into
a staging table and publish it as the interval's partition (through the publish engine)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException
from psycopg import sql

from airflow_provider_dataeng.connections import connect
from airflow_provider_dataeng.extract.copy_stream import CopyStats, copy_in_sql, copy_out_sql, stream_copy
from airflow_provider_dataeng.extract.dedup import TOMBSTONE_COLUMN, VIEW_SUFFIX, ensure_latest_view
from airflow_provider_dataeng.extract.deletes import (
    live_keys_query,
    stream_live_keys,
    tombstone_columns,
    tombstones_select,
)
from airflow_provider_dataeng.extract.interval import as_utc
from airflow_provider_dataeng.extract.modes import (
    IntervalSelect,
    base_query,
    in_ranges,
    known_ids_table,
    outside_range,
    own_ids_table,
    stream_ids,
)
from airflow_provider_dataeng.extract.schema_drift import (
    Column,
    DriftPlan,
    add_columns,
    binary_compatible,
    compare,
    describe_query,
    ensure_enum_types,
    plan,
)
from airflow_provider_dataeng.extract.spec import DEFAULT_PARTITION_COLUMN, ExtractSpec
from airflow_provider_dataeng.extract.stamp import restore_default, set_stamp
from airflow_provider_dataeng.extract.target import read_target, refuse_unusable, target_ddl
from airflow_provider_dataeng.extract.watermark import ensure_id_index, has_id_index, id_watermark
from airflow_provider_dataeng.publish.locks import release_advisory_lock
from airflow_provider_dataeng.publish.table_ref import TableRef

log = logging.getLogger(__name__)

# Advisory lock class (two-int form) serializing incremental_id runs of one target table.
_ID_LOCK_CLASS = 0x44454944


class RowCountMismatch(AirflowException):
    """The rows copied differ from the count taken in the same source snapshot: nothing is published."""


@dataclass
class _Target:
    plan: DriftPlan
    columns: dict[str, Column]
    fmt: str
    stamp: bool
    partition_is_date: bool
    enum_changes: list[str]


class ExtractJob:
    """Runs one interval of an extract end to end."""

    def __init__(self, spec: ExtractSpec, *, logger: logging.Logger | logging.LoggerAdapter | None = None,
                 application_name: str | None = None,
                 on_warehouse_connect: Callable[[psycopg.Connection], None] | None = None) -> None:
        self.spec = spec
        # runs on each new warehouse connection before anything is written (the operator's database check)
        self.on_warehouse_connect = on_warehouse_connect
        self.log = logger or log
        self.target = TableRef.parse(spec.target_table)
        self.source_ref = TableRef.parse(spec.source_table) if spec.source_table is not None else None
        self.base = base_query(self.source_ref.ident() if self.source_ref else None, spec.source_sql)
        self.source_hook = connect(spec.source_conn_id, role="source", application_name=application_name)
        self.warehouse_hook = connect(spec.target_conn_id, role="warehouse", application_name=application_name)
        self._live: set[psycopg.Connection] = set()
        self._engine: Any = None  # the publish engine of the running interval (cancelled with the job)
        # True once describe_source found a plain, partitioned or materialized table: a query over it reads
        # exactly the snapshot's rows, so the COPY's own row count is the snapshot count. A view, a foreign
        # table or source_sql (maybe volatile) is also counted by a separate count(*) in the snapshot.
        self.source_is_table = False

    # -- cancellation --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _cancellable(self, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
        """While inside, ``cancel()`` cancels ``conn``'s running statement; an interrupt (execution_timeout,
        a kill) that escapes while a statement runs cancels it too, so nothing keeps running server-side."""
        self._live.add(conn)
        try:
            yield conn
        except BaseException:
            _cancel(conn, self.log)
            raise
        finally:
            self._live.discard(conn)

    def cancel(self) -> None:
        """Cancel the statements running on this job's source and warehouse connections (libpq cancel
        requests; safe from a signal handler or another thread). The interrupted load fails, the publish
        engine drops its staging table, and the published data is untouched."""
        for conn in list(self._live):
            _cancel(conn, self.log)
        if self._engine is not None:
            self._engine.cancel()

    # -- preparation ---------------------------------------------------------------------------------
    def describe_source(self) -> list[Column]:
        with self.source_hook.connection_scope() as src, self._cancellable(src):
            try:
                columns = describe_query(src, self.base)
                if self.source_ref is not None:
                    row = src.execute(
                        "select c.relkind in ('r', 'p', 'm') from pg_class c where c.oid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass",
                        [self.source_ref.schema, self.source_ref.table]).fetchone()
                    self.source_is_table = bool(row and row[0])
                return columns
            finally:
                src.rollback()

    def prepare_target(self, engine: Any, source_cols: list[Column], lower: datetime, upper: datetime) -> _Target:
        """Create or reconcile the target. Every check of the target (kind, partition key and column, types,
        overlapping partitions, schema drift) runs before any DDL on it, so a refused target is never touched;
        every catalog read is one statement and every DDL is safe against concurrent runs of other intervals."""
        spec, target = self.spec, self.target
        pc = spec.partition_column
        source_names = [c.name for c in source_cols]
        stamp = pc not in source_names
        lock_timeout = spec.lock_timeout.total_seconds()
        with self.warehouse_hook.connection_scope() as wh:
            if self.on_warehouse_connect is not None:
                self.on_warehouse_connect(wh)
            wh.autocommit = True
            state = read_target(wh, target)
            enum_changes: list[str] = []
            if state is None:
                enum_changes = ensure_enum_types(wh, target.schema, source_cols)
                columns = [(c.name, c.warehouse_type(target.schema)) for c in source_cols]
                if stamp:
                    columns.append((pc, "timestamp with time zone"))
                if spec.detect_deletes:
                    columns.append((TOMBSTONE_COLUMN, "boolean"))
                self.log.info("Creating %s partitioned by range (%s) unless another run just did", target, pc)
                engine.ensure_partitioned_parent(target, columns, pc)  # under a lock, a no-op when it exists
                state = read_target(wh, target)  # re-read: created by this run or a concurrent one
                if state is None:
                    raise AirflowException(f"{target} vanished right after it was created (dropped concurrently?)")
            refuse_unusable(wh, state, pc, lower, upper)
            skip = [pc] if stamp else []
            if TOMBSTONE_COLUMN not in source_names:
                skip.append(TOMBSTONE_COLUMN)
            report = compare(source_cols, state.columns, skip=skip)
            drift = plan(source_cols, report, spec.schema_drift, target=str(target))
            # every refusal is behind us: from here on the target may change
            enum_changes += [c for c in ensure_enum_types(wh, target.schema, drift.load) if c not in enum_changes]
            tombstone = spec.detect_deletes and state.column(TOMBSTONE_COLUMN) is None
            id_index = spec.mode == "incremental_id" and (
                state.column(spec.id_column) is not None or any(c.name == spec.id_column for c in drift.add)
            ) and not has_id_index(wh, target, spec.id_column)
            if drift.add or tombstone or id_index:

                def alter(conn: psycopg.Connection) -> None:
                    if drift.add:
                        add_columns(conn, target.ident(), target.schema, drift.add)
                    if tombstone:
                        conn.execute(sql.SQL("alter table {} add column if not exists {} boolean").format(
                            target.ident(), sql.Identifier(TOMBSTONE_COLUMN)))
                    if id_index:
                        ensure_id_index(conn, target, spec.id_column, self.log)

                target_ddl(wh, target, f"schema of {target}", alter, lock_timeout=lock_timeout,
                           attempts=spec.swap_attempts)
            for note in drift.notes:
                self.log.warning("Schema drift on %s: %s", target, note)
            if not report.empty:
                self.log.warning("Schema drift on %s:\n%s", target, report.describe())
            current = read_target(wh, target) if drift.add or tombstone else state
        by_name = {c.name: c for c in (current.columns if current else [])}
        if pc not in by_name:  # dropped concurrently
            raise AirflowFailException(f"partition_column={pc!r}: not a column of {target}")
        # a stamped partition column is not sent (the warehouse fills it in): it never forces the text format
        binary = all(binary_compatible(c, by_name[c.name]) for c in drift.load if c.name in by_name)
        return _Target(drift, by_name, "binary" if binary else "text", stamp, by_name[pc].type == "date", enum_changes)

    # -- the run -------------------------------------------------------------------------------------
    def run(self, lower: datetime, upper: datetime, *, pipeline: str | None = None, task_id: str | None = None,
            run_id: str | None = None) -> Any:
        """Extract ``[lower, upper)`` into its partition; returns the engine's PublishResult."""
        from airflow_provider_dataeng.publish.engine import PublishEngine

        if lower.tzinfo is None or upper.tzinfo is None:
            raise AirflowFailException(f"data interval [{lower}, {upper}): expected timezone-aware datetimes")
        if not lower < upper:
            raise AirflowFailException(
                f"data interval [{lower}, {upper}) is empty: the extract needs a timetable with data intervals "
                "(Airflow 3 trigger timetables give zero-length ones): use e.g. "
                "CronDataIntervalTimetable('@daily', timezone='UTC'), DeltaDataIntervalTimetable(timedelta(days=1)), "
                "CronTriggerTimetable('@daily', timezone='UTC', interval=timedelta(days=1)), or set [scheduler] "
                "create_cron_data_intervals / create_delta_data_intervals = True"
            )
        lower, upper = as_utc(lower), as_utc(upper)
        spec = self.spec
        checks = [check.build() for check in spec.checks or []]
        engine = self._engine = PublishEngine(
            self.warehouse_hook, lock_timeout=spec.lock_timeout.total_seconds(), swap_attempts=spec.swap_attempts,
            pipeline=pipeline, task_id=task_id, run_id=run_id, on_connect=self.on_warehouse_connect,
            analyze=spec.analyze,
        )
        source_cols = self.describe_source()
        # refusals that need only the source's columns come before any DDL on the target
        if spec.mode != "full_snapshot" and spec.partition_column in {c.name for c in source_cols}:
            raise AirflowFailException(
                f"partition_column={spec.partition_column!r} is a source column: with mode {spec.mode} a row "
                f"changed or added with a {spec.partition_column!r} outside the run's interval would never be "
                f"loaded; use a partition column the source does not have (default "
                f"{DEFAULT_PARTITION_COLUMN!r}: the load interval), or mode full_snapshot"
            )
        timestamp_zone = self._timestamp_zone(source_cols)
        if spec.detect_deletes:
            names = {c.name for c in source_cols}
            missing = [k for k in spec.key_columns or [] if k not in names]
            if missing or TOMBSTONE_COLUMN in names:
                raise AirflowFailException(
                    f"detect_deletes: key_columns {missing} are not source columns" if missing else
                    f"detect_deletes: the source has a column {TOMBSTONE_COLUMN!r}, the name of the tombstone flag")
        prepared = self.prepare_target(engine, source_cols, lower, upper)
        load_cols = prepared.plan.load
        id_col = next((c for c in load_cols if c.name == spec.id_column), None)
        interval = IntervalSelect(
            mode=spec.mode, columns=load_cols, lower=lower, upper=upper, partition_column=spec.partition_column,
            stamp=prepared.stamp, partition_is_date=prepared.partition_is_date,
            timestamp_column=spec.timestamp_column, lag=spec.lag, id_column=spec.id_column,
            id_as_text=id_col is not None and id_col.kind != "builtin", timestamp_zone=timestamp_zone,
        )
        self.log.info(
            "Extract %s -> %s, mode %s, interval [%s, %s), %s COPY of %d columns",
            self.source_ref or "source_sql", self.target, spec.mode, lower.isoformat(), upper.isoformat(),
            prepared.fmt, len(load_cols),
        )

        def loader(conn: psycopg.Connection, staging: TableRef) -> Any:
            return self.load(conn, staging, interval, prepared, id_col)

        with self._serialize_incremental_id():
            result = engine.publish_partition(
                self.target, partition_column=spec.partition_column, lower=lower, upper=upper, loader=loader,
                checks=checks, mode=spec.mode, keep_previous=spec.keep_previous,
                keep_failed_staging=spec.keep_failed_staging,
            )
        if spec.mode == "incremental_timestamp" and spec.key_columns:
            with self.warehouse_hook.connection_scope() as wh:
                wh.autocommit = True
                view = self.target.with_suffix(VIEW_SUFFIX)
                changed = target_ddl(
                    wh, self.target, f"view {view}",
                    lambda conn: ensure_latest_view(conn, self.target, key_columns=spec.key_columns or [],
                                                    order_column=spec.timestamp_column,
                                                    tiebreak_columns=[spec.partition_column]),
                    lock_timeout=spec.lock_timeout.total_seconds(), attempts=spec.swap_attempts, watched=[view])
            self.log.info("Latest-row view %s %s", view, "replaced" if changed else "is up to date")
        return result

    def _late_commit_risk(self, src: psycopg.Connection, interval: IntervalSelect) -> list[dict[str, Any]]:
        """Write transactions on the source, open when this run's snapshot is taken, that started before the
        next interval's window (``upper - lag``): rows they commit later with a timestamp before that are seen
        by neither run. Logged as a warning and recorded in the ledger (needs pg_read_all_stats to see other
        roles' sessions)."""
        horizon = interval.upper - self.spec.lag
        rows = src.execute(
            "select pid, xact_start, usename, application_name from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid() and backend_xid is not null"
            " and xact_start < %s order by xact_start limit 10",
            [horizon],
        ).fetchall()
        risks = [{"pid": pid, "xact_start": start.isoformat(), "user": user, "application_name": app}
                 for pid, start, user, app in rows]
        for risk in risks:
            self.log.warning(
                "Late commits: source transaction pid %s (%s, %s) open since %s, before %s (interval end - lag): "
                "rows it commits with a %s before that are seen by no run; raise lag above the source's longest "
                "write transaction", risk["pid"], risk["user"], risk["application_name"], risk["xact_start"],
                horizon.isoformat(), self.spec.timestamp_column)
        return risks

    def _timestamp_zone(self, columns: list[Column]) -> str | None:
        """The zone of a naive timestamp_column (``source_timezone``); refuses a naive column without one."""
        spec = self.spec
        if spec.mode != "incremental_timestamp":
            return None
        col = next((c for c in columns if c.name == spec.timestamp_column), None)
        if col is None or col.type != "timestamp without time zone":
            return None
        if spec.source_timezone is None:
            raise AirflowFailException(
                f"timestamp_column={spec.timestamp_column!r} is a timestamp without time zone: set "
                "source_timezone to the zone its values are written in (e.g. 'UTC' or 'Europe/Berlin'); "
                "comparing it with the interval's bounds needs it"
            )
        return spec.source_timezone

    def _serialize_incremental_id(self) -> Any:
        """incremental_id runs of one target take turns (each reads the ids the others publish)."""
        import contextlib

        if self.spec.mode != "incremental_id":
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def lock() -> Any:
            with self.warehouse_hook.connection_scope() as wh, self._cancellable(wh):
                wh.autocommit = True
                wh.execute("select pg_advisory_lock(%s, hashtext(%s))", [_ID_LOCK_CLASS, self.target.qualified])
                try:
                    yield
                finally:
                    release_advisory_lock(wh, "select pg_advisory_unlock(%s, hashtext(%s)), pg_backend_pid()",
                                          [_ID_LOCK_CLASS, self.target.qualified],
                                          f"incremental_id lock of {self.target.qualified}")

        return lock()

    # -- parallel copy (copy_sessions > 1) -------------------------------------------------------------
    def _block_ranges(self, src: psycopg.Connection) -> list[tuple[int | None, int | None]] | None:
        """Ranges of the source table's blocks, one per copy session: ``[(None, b1), (b1, b2), .., (bk, None)]``
        (the first and last are open, so together they cover every row whatever the table's size), or None
        for one session (a small table, a source without TID range scans, or a relation without ctid).

        Runs in the snapshot transaction: every row visible to the snapshot is in exactly one range.
        """
        spec, ref = self.spec, self.source_ref
        assert ref is not None  # the spec refuses copy_sessions > 1 with source_sql
        if src.info.server_version < 140000:
            self.log.warning("copy_sessions=%d: the source is PostgreSQL %d, TID range scans need 14+; one "
                             "session", spec.copy_sessions, src.info.server_version // 10000)
            return None
        row = src.execute(
            "select c.relkind::text,"
            " coalesce(bool_and(t.relkind in ('r', 'm')), c.relkind in ('r', 'm')),"
            " coalesce(max(pg_relation_size(t.oid)), pg_relation_size(c.oid))"
            "   / current_setting('block_size')::bigint"
            " from pg_class c"
            " left join lateral (select p.oid, p.relkind from pg_partition_tree(c.oid) pt"
            "   join pg_class p on p.oid = pt.relid where c.relkind = 'p' and pt.isleaf) t on true"
            " where c.oid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass group by c.oid, c.relkind",
            [ref.schema, ref.table],
        ).fetchone()
        assert row is not None
        relkind, splittable, blocks = row[0], bool(row[1]), int(row[2] or 0)
        if not splittable:
            self.log.warning("copy_sessions=%d: %s (relkind %s) has no physical blocks to split; one session",
                             spec.copy_sessions, ref, relkind)
            return None
        sessions = min(spec.copy_sessions, blocks // MIN_BLOCKS_PER_SESSION)
        if sessions < 2:
            self.log.info("copy_sessions=%d: %s has %d blocks (two sessions need %d); one session",
                          spec.copy_sessions, ref, blocks, 2 * MIN_BLOCKS_PER_SESSION)
            return None
        bounds: list[int | None] = [None, *(blocks * i // sessions for i in range(1, sessions)), None]
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    def _adopt_snapshot(self, snapshot: str) -> psycopg.Connection:
        """A new source session in a REPEATABLE READ READ ONLY transaction on the exported ``snapshot``."""
        conn = self.source_hook.get_conn()
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            conn.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(snapshot)))
        except BaseException:
            _close_quietly(conn)
            raise
        return conn

    def _ranged_base(self, lower: int | None, upper: int | None) -> sql.Composable:
        """``select * from <source_table>`` restricted to the blocks ``[lower, upper)`` (a TID range scan)."""
        assert self.source_ref is not None
        conds: list[sql.Composable] = []
        if lower is not None:
            conds.append(sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({lower},0)")))
        if upper is not None:
            conds.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({upper},0)")))
        return sql.SQL("select * from {} where {}").format(self.source_ref.ident(), sql.SQL(" and ").join(conds))

    def _parallel_copy(self, src: psycopg.Connection, conn: psycopg.Connection, staging: TableRef,
                       interval: IntervalSelect, prepared: _Target, ranges: list[tuple[int | None, int | None]],
                       progress: float, snapshot: str) -> CopyStats:
        """One COPY stream per block range, each from its own source session reading the snapshot of ``src``
        (``pg_export_snapshot`` / ``SET TRANSACTION SNAPSHOT``) into ``staging`` through its own warehouse
        session (``conn`` for the first). Any failure or interrupt cancels every session; the extra warehouse
        sessions commit only when all streams succeeded (the publish engine drops staging on any failure)."""
        started = time.monotonic()
        n = len(ranges)
        self.log.info("Parallel copy: %d sessions over blocks %s of %s, one snapshot (%s)", n,
                      ", ".join(f"[{lo or 0}, {hi if hi is not None else 'end'})" for lo, hi in ranges),
                      self.source_ref, snapshot)
        copy_in = copy_in_sql(staging.ident(), interval.target_columns, prepared.fmt)
        with contextlib.ExitStack() as extra:
            pairs = [(src, conn)]
            for _ in ranges[1:]:
                s = self._adopt_snapshot(snapshot)
                extra.callback(_close_quietly, s)
                w = self.warehouse_hook.get_conn()
                extra.callback(_close_quietly, w)
                w.autocommit = False
                extra.enter_context(self._cancellable(s))
                extra.enter_context(self._cancellable(w))
                pairs.append((s, w))
            results: list[CopyStats | None] = [None] * n
            errors: list[BaseException] = []

            def cancel_all() -> None:
                for s, w in pairs:
                    _cancel(s, self.log)
                    _cancel(w, self.log)

            def one(i: int) -> None:
                (s, w), (lo, hi) = pairs[i], ranges[i]
                try:
                    results[i] = stream_copy(
                        s, w, copy_out_sql(interval.select(self._ranged_base(lo, hi), None), prepared.fmt), copy_in,
                        fmt=prepared.fmt, progress_interval=progress, logger=self.log,
                        label=f"extract into {staging} (session {i + 1}/{n})",
                    )
                except BaseException as exc:
                    if not errors:
                        cancel_all()
                    errors.append(exc)

            threads = [threading.Thread(target=one, args=(i,), name=f"copy-session-{i + 1}", daemon=True)
                       for i in range(n)]
            try:
                for t in threads:
                    t.start()
                for t in threads:
                    while t.is_alive():
                        t.join(0.2)  # interruptible: an interrupt cancels every session (below)
            except BaseException:
                cancel_all()
                for t in threads:
                    t.join(30)
                raise
            if errors:
                raise errors[0]
            for s, w in pairs[1:]:
                w.commit()
                s.commit()
        stats = [r for r in results if r is not None]
        return CopyStats(rows=sum(r.rows for r in stats), source_rows=sum(r.source_rows for r in stats),
                         bytes=sum(r.bytes for r in stats), seconds=time.monotonic() - started, format=prepared.fmt)

    def load(self, conn: psycopg.Connection, staging: TableRef, interval: IntervalSelect, prepared: _Target,
             id_col: Column | None) -> Any:
        """The engine's loader: fill ``staging`` from the source in one REPEATABLE READ snapshot."""
        from airflow_provider_dataeng.publish.engine import LoadStats

        spec = self.spec
        started = time.monotonic()
        progress = spec.progress_interval.total_seconds()
        known_stats: CopyStats | None = None
        watermark: dict[str, Any] | None = None
        null_ids = max_id = None
        deletes: dict[str, Any] | None = None
        ranges: list[tuple[int | None, int | None]] | None = None
        src = self.source_hook.get_conn()
        try:
            with self._cancellable(src), self._cancellable(conn), contextlib.ExitStack() as extra:
                known = None
                if spec.mode == "incremental_id":
                    assert id_col is not None
                    mark = id_watermark(conn, self.target, id_col, spec.id_column, spec.id_safety_window,
                                        interval.lower, interval.upper, self.log)
                    pc = spec.partition_column
                    ids = {"target": self.target.ident(), "id_column": id_col, "progress_interval": progress,
                           "logger": self.log}
                    col = sql.Identifier(id_col.name)
                    if mark is None:
                        known_where = outside_range(pc, interval.lower, interval.upper)
                    else:
                        interval = replace(interval, id_low=mark.low)
                        known_where = sql.SQL("{} > {} and ({})").format(col, sql.Literal(mark.low),
                                                                         in_ranges(pc, mark.recent))
                        own_stats = stream_ids(
                            conn, src, table=own_ids_table(), label="own ids at or below the watermark",
                            where=sql.SQL("{} <= {} and ({})").format(
                                col, sql.Literal(mark.low), in_ranges(pc, [(interval.lower, interval.upper)])),
                            **ids)
                        watermark = {"low": mark.low, "published_max": mark.published_max,
                                     "window": spec.id_safety_window, "partitions_compared": len(mark.recent),
                                     "own_ids_reloaded": own_stats.rows}
                    known_stats = stream_ids(conn, src, table=known_ids_table(), where=known_where,
                                             label="known ids (warehouse -> source)", **ids)
                    known = known_ids_table()
                if spec.detect_deletes:
                    deletes_started = time.monotonic()
                    key_cols = [next(c for c in interval.columns if c.name == k) for k in spec.key_columns or []]
                    order_col = next(c for c in interval.columns if c.name == spec.timestamp_column)
                    live_stats = stream_live_keys(
                        conn, src, key_columns=key_cols, order_type=order_col.type, progress_interval=progress,
                        logger=self.log,
                        query=live_keys_query(
                            self.target.ident(), key_columns=spec.key_columns or [],
                            order_column=spec.timestamp_column, partition_column=spec.partition_column,
                            lower=interval.lower, upper=interval.upper))
                src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                src.read_only = True
                # first statement of the snapshot: a writer open now is uncommitted in the snapshot
                late = self._late_commit_risk(src, interval) if spec.mode == "incremental_timestamp" else []
                count: _SnapshotCount | None = None
                snapshot: str | None = None
                expected: int | None = None  # None: the source COPY's own row count is the snapshot count
                counted = not self.source_is_table
                if spec.mode == "incremental_id":  # its count reads this session's temp table: counted here
                    with src.cursor() as cur:
                        if counted:
                            cur.execute(interval.count(self.base, known))
                            row = cur.fetchone()
                            expected = int(row[0]) if row else 0
                        cur.execute(interval.null_ids(self.base))
                        null_ids = cur.fetchone()[0]
                else:
                    if counted or spec.copy_sessions > 1:
                        snapshot = str(src.execute("select pg_export_snapshot()").fetchone()[0])
                    if counted:
                        # A view or a query may not return the same rows twice: counted in another session on
                        # this snapshot, alongside the COPY (no extra scan before the copy starts).
                        assert snapshot is not None
                        count = _SnapshotCount(self._adopt_snapshot(snapshot), interval.count(self.base, None))
                        extra.callback(count.close)
                        extra.enter_context(self._cancellable(count.conn))
                        count.start()
                # Truncating staging in this transaction makes COPY FREEZE possible (and a loader retry clean).
                conn.execute(sql.SQL("truncate {}").format(staging.ident()))
                stamp_default = (set_stamp(conn, staging, spec.partition_column, interval.partition_value())
                                 if prepared.stamp else None)
                ranges = self._block_ranges(src) if spec.copy_sessions > 1 else None
                if ranges is None:
                    stats = stream_copy(
                        src, conn, copy_out_sql(interval.select(self.base, known), prepared.fmt),
                        copy_in_sql(staging.ident(), interval.target_columns, prepared.fmt, freeze=True),
                        fmt=prepared.fmt, progress_interval=progress, logger=self.log, label=f"extract into {staging}",
                    )
                else:
                    assert snapshot is not None
                    conn.commit()  # the truncate: the other warehouse sessions load staging too (no FREEZE)
                    stats = self._parallel_copy(src, conn, staging, interval, prepared, ranges, progress, snapshot)
                if count is not None:
                    expected = count.result()
                if expected is None:
                    expected = stats.source_rows
                if spec.detect_deletes:
                    tomb_stats = stream_copy(
                        src, conn, copy_out_sql(tombstones_select(
                            self.base, key_columns=key_cols, deleted_at=interval.instant(interval.upper),
                            partition_value=interval.partition_value()), "text"),
                        copy_in_sql(staging.ident(), tombstone_columns(
                            spec.key_columns or [], spec.timestamp_column, spec.partition_column), "text"),
                        fmt="text", progress_interval=progress, logger=self.log, label="tombstones")
                    deletes = {"keys_compared": live_stats.rows, "tombstones": tomb_stats.rows,
                               "seconds": round(time.monotonic() - deletes_started - stats.seconds, 3)}
                    self.log.info("Delete detection: %d live keys compared with the source, %d tombstones, %.1fs",
                                  deletes["keys_compared"], deletes["tombstones"], deletes["seconds"])
                if prepared.stamp:
                    restore_default(conn, staging, spec.partition_column, stamp_default)
                src.commit()
                if spec.mode == "incremental_id":
                    max_id = conn.execute(sql.SQL("select max({}) from {}").format(
                        sql.Identifier(spec.id_column), staging.ident())).fetchone()[0]
        finally:
            try:
                src.close()
            except Exception:  # pragma: no cover
                pass
        if stats.rows != expected or stats.source_rows != expected:
            raise RowCountMismatch(
                f"row count mismatch for {self.target} [{interval.lower}, {interval.upper}): the source snapshot "
                f"counted {expected} rows, the source COPY sent {stats.source_rows}, the warehouse received "
                f"{stats.rows}; nothing was published"
            )
        duration = time.monotonic() - started
        details: dict[str, Any] = {
            "mode": spec.mode,
            "rows": stats.rows,
            "bytes": stats.bytes,
            "duration_s": round(duration, 3),
            "copy_s": round(stats.seconds, 3),
            "copy_sessions": len(ranges) if ranges else 1,
            "copy_format": prepared.fmt,
            "source_count": expected,
            "source_count_by": "count(*) in the snapshot" if counted else "the source COPY (a table)",
            "source": str(self.source_ref) if self.source_ref else "source_sql",
            "interval": [interval.lower.isoformat(), interval.upper.isoformat()],
        }
        if spec.mode == "incremental_timestamp":
            details["timestamp_column"] = spec.timestamp_column
            details["lag_s"] = spec.lag.total_seconds()
            if late:
                details["late_commit_risk"] = late
        if known_stats is not None:
            details["known_ids"] = known_stats.rows
            details["id_column"] = spec.id_column
            details["max_id"] = int(max_id) if isinstance(max_id, int) else (None if max_id is None else str(max_id))
            details["id_watermark"] = watermark
            details["null_ids"] = null_ids
            if null_ids:
                self.log.warning("%d source rows have a NULL %s: they are not loaded (counted in the ledger's "
                                 "details.null_ids)", null_ids, spec.id_column)
        if deletes is not None:
            details["deletes"] = deletes
        if not prepared.plan.report.empty:
            details["schema_drift"] = {"policy": spec.schema_drift, **prepared.plan.report.as_dict()}
        if prepared.enum_changes:
            details["enum_types_changed"] = prepared.enum_changes
        extra_rows = extra_bytes = 0
        if deletes is not None:
            extra_rows, extra_bytes = tomb_stats.rows, tomb_stats.bytes
        return LoadStats(rows=stats.rows + extra_rows, bytes=stats.bytes + extra_bytes, details=details)


class _SnapshotCount(threading.Thread):
    """``count_query`` on ``conn`` (a session on the copy's exported snapshot) in a thread, so the count does not
    delay the COPY; :meth:`result` joins it and returns the count or raises its error."""

    def __init__(self, conn: psycopg.Connection, count_query: sql.Composable) -> None:
        super().__init__(name="extract-snapshot-count", daemon=True)
        self.conn, self.query = conn, count_query
        self.rows: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            row = self.conn.execute(self.query).fetchone()
            self.rows = int(row[0]) if row else 0
            self.conn.rollback()
        except BaseException as exc:
            self.error = exc

    def result(self) -> int:
        while self.is_alive():
            self.join(0.2)  # interruptible
        if self.error is not None:
            raise self.error
        assert self.rows is not None
        return self.rows

    def close(self) -> None:
        """Wait for the thread (its statement is cancelled by then on a failure), then close the session."""
        if self.is_alive():
            self.join(30)
        _close_quietly(self.conn)


# copy_sessions > 1: a session gets at least this many blocks of the source table (8 MB with 8 kB blocks)
MIN_BLOCKS_PER_SESSION = 1024


def _close_quietly(conn: psycopg.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _cancel(conn: psycopg.Connection, logger: logging.Logger | logging.LoggerAdapter) -> None:
    """Send a cancel request for ``conn``'s running statement (nothing when it is idle or closed)."""
    pid: int | str = "?"
    try:  # another thread may close ``conn`` at any moment: every read of it can raise
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.ACTIVE:
            return
        pid = conn.info.backend_pid
        logger.warning("Cancelling the running statement of backend %s (%s)", pid, conn.info.host)
        conn.cancel_safe(timeout=5)
    except Exception as exc:  # a cancel is best effort: the caller is already failing
        logger.warning("Could not cancel backend %s: %s", pid, exc)
