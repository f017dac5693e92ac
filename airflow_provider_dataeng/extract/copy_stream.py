"""Streaming COPY from one psycopg 3 connection to another: no Python row objects, flat memory.

The source side is driven at the libpq level (``COPY ... TO STDOUT`` messages read with
``PQgetCopyData`` in non-blocking mode, waiting on the socket with ``select`` so other threads and
signals keep running) by a reader thread, which joins the messages (one per row) into blocks of
``batch_bytes`` and hands them over a bounded queue (``queue_depth`` blocks) to the calling thread, which
writes them to the target's ``COPY ... FROM STDIN`` through psycopg's public ``Cursor.copy()``. Reading
the source and writing the target overlap: neither server waits while the other side's socket is served
(before, one thread alternated: a flush of the target paused the source and a slow source paused the
target). Memory use is bounded by ``queue_depth + 2`` blocks plus libpq's buffers, whatever the row count.
Progress (rows so far, rate) is logged every ``progress_interval`` seconds from the calling thread.
"""

from __future__ import annotations

import logging
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq, sql

log = logging.getLogger(__name__)

# Source messages (one per row) are joined into blocks of about this size, written to the target at once.
BATCH_BYTES = 1024 * 1024
# Blocks read from the source and not yet written to the target (bounds memory; absorbs bursts of either side).
QUEUE_DEPTH = 4
# How often a waiting thread looks at the stop flag / the progress clock.
_POLL_S = 0.2
COPY_FORMATS = ("binary", "text")


class CopyError(psycopg.OperationalError):
    """The source COPY stream ended abnormally (connection lost or protocol error)."""


@dataclass(frozen=True)
class CopyStats:
    """What one streamed COPY moved."""

    rows: int  # rows the target's COPY FROM reports
    source_rows: int  # rows the source's COPY TO reports
    bytes: int  # payload bytes streamed (COPY data, excluding protocol framing)
    seconds: float
    format: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float(self.rows)


class CopyProgress:
    """Logs rows so far and the rate, at most every ``interval`` seconds."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, label: str, interval: float,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        self.logger = logger
        self.label = label
        self.interval = interval
        self.on_progress = on_progress
        self.started = time.monotonic()
        self.next_at = self.started + interval if interval > 0 else float("inf")

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def report(self, rows: int, nbytes: int) -> None:
        now = time.monotonic()
        elapsed = max(now - self.started, 1e-9)
        self.logger.info(
            "%s: %d rows so far (%.1f MB) in %.1fs, %.0f rows/s",
            self.label, rows, nbytes / 1e6, elapsed, rows / elapsed,
        )
        if self.on_progress is not None:
            self.on_progress(rows, nbytes)
        self.next_at = now + self.interval if self.interval > 0 else float("inf")


def _wait(pgconn: pq.abc.PGconn, *, write: bool, timeout: float) -> None:
    fd = pgconn.socket
    if write:
        select.select([], [fd], [fd], timeout)
    else:
        select.select([fd], [], [fd], timeout)


def _flush(pgconn: pq.abc.PGconn) -> None:
    while pgconn.flush() != 0:
        _wait(pgconn, write=True, timeout=1.0)


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """The next result of the current query, waiting (GIL released) while the server works."""
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            return pgconn.get_result()
        _wait(pgconn, write=False, timeout=1.0)


def _drain(pgconn: pq.abc.PGconn) -> None:
    while _next_result(pgconn) is not None:
        pass


def _raise_result(result: pq.abc.PGresult, pgconn: pq.abc.PGconn) -> None:
    raise pg_errors.error_from_result(result, encoding=pgconn._encoding)  # type: ignore[attr-defined]


class _SourceCopy:
    """A ``COPY ... TO STDOUT`` running on the source connection, read message by message."""

    def __init__(self, conn: psycopg.Connection, query: sql.Composable) -> None:
        self.conn = conn
        self.pgconn = conn.pgconn
        self.query = query.as_bytes(conn) if isinstance(query, sql.Composable) else query

    def start(self) -> None:
        self.pgconn.send_query(self.query)  # raises OperationalError when libpq refuses
        _flush(self.pgconn)
        result = _next_result(self.pgconn)
        if result is None:  # pragma: no cover
            raise CopyError("source returned no result for COPY")
        if result.status != pq.ExecStatus.COPY_OUT:
            _drain(self.pgconn)
            if result.status == pq.ExecStatus.FATAL_ERROR:
                _raise_result(result, self.pgconn)
            raise CopyError(f"source COPY: expected COPY_OUT, got {pq.ExecStatus(result.status).name}")

    def finish(self) -> int:
        """Read the COPY's final result; return the row count from its command tag."""
        result = _next_result(self.pgconn)
        if result is None:
            raise CopyError("source COPY ended without a result (connection lost?)")
        _drain(self.pgconn)
        if result.status != pq.ExecStatus.COMMAND_OK:
            _raise_result(result, self.pgconn)
        return int(result.command_tuples or 0)


class _Stopped(Exception):
    """The consumer gave up: the reader thread ends without handing over more blocks."""


class _SourceReader(threading.Thread):
    """Reads a started :class:`_SourceCopy` to its end in its own thread and hands ``(block, messages)``
    pairs (blocks of at least ``batch_bytes``, the last one shorter) to a bounded queue, then ``None``.

    While it runs, the thread owns the source's libpq connection; the consumer touches it again only after
    :meth:`join`. ``error`` and ``source_rows`` are set when the thread ends.
    """

    def __init__(self, src: _SourceCopy, batch_bytes: int, depth: int) -> None:
        super().__init__(name="copy-source-reader", daemon=True)
        self.src = src
        self.batch_bytes = max(batch_bytes, 1)
        self.blocks: queue.Queue[tuple[bytearray, int] | None] = queue.Queue(maxsize=max(depth, 1))
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.source_rows: int | None = None

    def _hand_over(self, item: tuple[bytearray, int] | None) -> None:
        while not self.stopping.is_set():
            try:
                self.blocks.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise _Stopped

    def run(self) -> None:
        try:
            self._read()
            self.source_rows = self.src.finish()
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consumer, raised there
            self.error = exc
        try:
            self._hand_over(None)
        except _Stopped:
            pass

    def _read(self) -> None:
        pgconn = self.src.pgconn
        get = pgconn.get_copy_data
        batch = self.batch_bytes
        stopping = self.stopping
        # Each row is appended to a bytearray (one memcpy; libpq's row buffer is freed at once) and the block is
        # handed over when it reaches batch_bytes. This loop runs once per row: keep it lean.
        block = bytearray()
        messages = 0
        while True:
            n, data = get(1)
            if n > 0:
                block += data
                messages += 1
                if len(block) >= batch:
                    self._hand_over((block, messages))
                    block = bytearray()
                    messages = 0
                continue
            if n == 0:  # no complete message buffered: wait for the socket (the GIL is released meanwhile)
                if stopping.is_set():
                    raise _Stopped
                _wait(pgconn, write=False, timeout=_POLL_S)
                pgconn.consume_input()
                continue
            if n == -1:  # COPY done
                break
            raise CopyError(  # pragma: no cover - get_copy_data raises on -2 itself
                "source COPY stream failed: "
                + (pgconn.error_message.decode(errors="replace").strip() or "unknown libpq error")
            )
        if block:
            self._hand_over((block, messages))


def stream_copy(
    source: psycopg.Connection,
    target: psycopg.Connection,
    copy_out: sql.Composable,
    copy_in: sql.Composable,
    *,
    fmt: str,
    progress_interval: float = 5.0,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
    label: str = "copy",
    batch_bytes: int = BATCH_BYTES,
    queue_depth: int = QUEUE_DEPTH,
    on_progress: Callable[[int, int], None] | None = None,
) -> CopyStats:
    """Stream ``copy_out`` (a ``COPY ... TO STDOUT``, run on ``source``) into ``copy_in`` (a
    ``COPY ... FROM STDIN``, run on ``target``). Both must use the format ``fmt``.

    A reader thread drains the source while the calling thread writes the target (see the module
    docstring). Runs inside whatever transactions the two connections are in; commits nothing. On any
    error (either side, or an interrupt of the calling thread) the source COPY is cancelled, the target
    COPY is aborted (the target transaction is then in error) and the error is raised; a lost source
    connection surfaces as a :class:`psycopg.OperationalError`.
    """
    if fmt not in COPY_FORMATS:
        raise ValueError(f"fmt={fmt!r}: expected one of {COPY_FORMATS}")
    logger = logger or log
    progress = CopyProgress(logger, label, progress_interval, on_progress)
    started = time.monotonic()
    messages = 0
    nbytes = 0
    src = _SourceCopy(source, copy_out)
    with source.lock, target.cursor() as cur:
        src.start()
        pgconn = src.pgconn
        reader = _SourceReader(src, batch_bytes, queue_depth)
        poll = min(_POLL_S, max(progress_interval, 0.01))
        try:
            with cur.copy(copy_in) as sink:
                reader.start()
                blocks = reader.blocks
                while True:
                    try:
                        item = blocks.get(timeout=poll)
                    except queue.Empty:  # the source is slow: report and keep waiting
                        if progress.due():
                            progress.report(_rows_from_messages(messages, fmt), nbytes)
                        continue
                    if item is None:
                        break
                    block, count = item
                    sink.write(memoryview(block))  # psycopg splits it into slices: views, not copies
                    nbytes += len(block)
                    messages += count
                    del block, item
                    if progress.due():
                        progress.report(_rows_from_messages(messages, fmt), nbytes)
                reader.join()
                if reader.error is not None:
                    raise reader.error
                assert reader.source_rows is not None
                source_rows = reader.source_rows
        except BaseException:
            # Stop the reader, then leave the source connection usable (or closed) for the caller's rollback.
            reader.stopping.set()
            try:
                if pgconn.status == pq.ConnStatus.OK and pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                    source.cancel_safe(timeout=5.0)
            except Exception:  # pragma: no cover - best effort
                pass
            if reader.is_alive():
                reader.join(timeout=15.0)
            if not reader.is_alive():
                try:
                    if pgconn.status == pq.ConnStatus.OK and \
                            pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                        _drain_quietly(pgconn)
                except Exception:  # pragma: no cover - best effort
                    pass
            raise
        target_rows = cur.rowcount
    seconds = time.monotonic() - started
    stats = CopyStats(rows=target_rows, source_rows=source_rows, bytes=nbytes, seconds=seconds, format=fmt)
    logger.info(
        "%s: done, %d rows (%.1f MB, %s) in %.2fs, %.0f rows/s",
        label, stats.rows, nbytes / 1e6, fmt, seconds, stats.rows_per_second,
    )
    return stats


def _drain_quietly(pgconn: pq.abc.PGconn) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        n, _ = pgconn.get_copy_data(1)
        if n > 0:
            continue
        if n == 0:
            _wait(pgconn, write=False, timeout=0.5)
            pgconn.consume_input()
            continue
        break
    while time.monotonic() < deadline:
        pgconn.consume_input()
        if pgconn.is_busy():
            _wait(pgconn, write=False, timeout=0.5)
            continue
        if pgconn.get_result() is None:
            break


def _rows_from_messages(messages: int, fmt: str) -> int:
    # The server sends one CopyData message per row; binary adds a trailer message.
    return max(messages - 1, 0) if fmt == "binary" else messages


def copy_out_sql(query: sql.Composable, fmt: str) -> sql.Composed:
    """``COPY (<query>) TO STDOUT (FORMAT <fmt>)``."""
    return sql.SQL("copy ({}) to stdout (format {})").format(query, sql.SQL(fmt))


def copy_in_sql(table: sql.Composable, columns: list[str], fmt: str, *, freeze: bool = False) -> sql.Composed:
    """``COPY <table> (<columns>) FROM STDIN (FORMAT <fmt>[, FREEZE])``.

    ``freeze`` needs the table created or truncated in the same transaction; frozen rows spare the
    first readers (row count, checks) the hint-bit writes over the whole table.
    """
    return sql.SQL("copy {} ({}) from stdin (format {}{})").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.SQL(fmt),
        sql.SQL(", freeze") if freeze else sql.SQL(""),
    )
