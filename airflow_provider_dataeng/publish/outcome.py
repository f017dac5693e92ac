"""Recording how an attempt ended when it did not simply publish: rejected by its checks, failed, or a swap
whose COMMIT reply was lost (resolved from the ledger row the swap transaction wrote)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_dataeng.publish import catalog
from airflow_provider_dataeng.publish.catalog import execute
from airflow_provider_dataeng.publish.errors import PublishRejected
from airflow_provider_dataeng.publish.ledger import LedgerEntry, ensure_ledger, ledger_ident, write_ledger_row
from airflow_provider_dataeng.publish.result import PublishResult
from airflow_provider_dataeng.publish.swap import now
from airflow_provider_dataeng.publish.table_ref import TableRef
from airflow_provider_dataeng.values import first_line

log = logging.getLogger(__name__)


def reject(conn: psycopg.Connection, entry: LedgerEntry, staging_ref: TableRef, result: PublishResult,
           keep_failed_staging: bool) -> None:
    """Checks failed: drop (or keep) staging, write the 'rejected' row, raise PublishRejected."""
    if keep_failed_staging:
        entry.details["kept_staging"] = staging_ref.qualified
        log.warning("Keeping the rejected staging table %s for inspection", staging_ref)
    else:
        execute(conn, sql.SQL("drop table if exists {}").format(staging_ref.ident()))
    entry.status = "rejected"
    entry.finished_at = now()
    result.status = "rejected"
    result.ledger_id = write_ledger_row(conn, entry)
    raise PublishRejected(str(result.partition or result.target), result.checks, result)


def record_failure(hook: Any, conn: psycopg.Connection, entry: LedgerEntry, exc: BaseException,
                   staging_ref: TableRef | None, key: int | None) -> None:
    """Best effort after an error: drop staging, write a 'failed' ledger row (fresh connection if needed).

    ``staging_ref`` and ``key`` are None unless this attempt held the target's advisory lock.
    """
    entry.status = "failed"
    entry.error = f"{type(exc).__name__}: {str(exc).strip()}"[:4000]
    entry.finished_at = now()
    own = conn
    fresh = None
    try:
        if conn.closed or conn.broken:
            fresh = own = hook.get_conn()
            own.autocommit = True
            # Our session lock died with the connection: only clean up if no rerun holds it now.
            if key is not None and not catalog.scalar(own, "select pg_try_advisory_lock(%s)", [key]):
                staging_ref = None
        elif conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        if staging_ref is not None:
            execute(own, sql.SQL("drop table if exists {}").format(staging_ref.ident()))
        ensure_ledger(own)
        write_ledger_row(own, entry)
    except Exception as ledger_exc:  # never hide the original error
        log.error("Could not record the failed publish in the ledger: %s", ledger_exc)
    finally:
        if fresh is not None:
            with contextlib.suppress(Exception):
                fresh.close()


def committed_row(hook: Any, entry: LedgerEntry) -> int | None:
    """The id of the 'published' ledger row of this attempt, read on a fresh connection, or None."""
    try:
        conn = hook.get_conn()
    except Exception as exc:
        log.error("Cannot tell whether the swap committed (no connection: %s)", first_line(exc))
        return None
    try:
        conn.autocommit = True
        found = catalog.scalar(conn, sql.SQL("select id from {} where details->>'attempt' = %s and status = "
                                             "'published'").format(ledger_ident()), [entry.details["attempt"]])
        return int(found) if found is not None else None
    finally:
        with contextlib.suppress(Exception):
            conn.close()
