"""The overview's view of a ledger, kept in the API server's memory and brought up to date per request.

The ledger is append-only (one row per publish attempt, ids only grow), so a request first reads
``max(id), count(*)``: unchanged, the cached newest-row-per-interval map answers; grown by new rows only, just
the rows after the cached ``max(id)`` are read and merged (the newest id wins, as in a full read); anything
else (rows deleted, a wider window) reloads. Nothing is stored outside this process.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql

from airflow_provider_dataeng.dashboard.calendar import CompactLoads
from airflow_provider_dataeng.dashboard.ledger_queries import (
    LedgerTarget,
    TargetKey,
    _ledger,
    _utc,
    list_targets,
)

_TOKENS = itertools.count(1)
_STATUS_CODE = {"published": "P", "rejected": "R", "failed": "F"}

# (pipeline, schema, table) -> {start epoch: (end epoch or None, ledger id, status letter)}
Newest = dict[TargetKey, dict[int, tuple[int | None, int, str]]]


@dataclass
class _LedgerCopy:
    since: datetime
    max_id: int
    count: int
    newest: Newest = field(default_factory=dict)
    compact: dict[tuple[TargetKey, float], CompactLoads] = field(default_factory=dict)


def _merge(newest: Newest, rows: Any) -> None:
    for pipeline, schema, table, start, end, id_, status in rows:
        per = newest.setdefault((pipeline, schema, table), {})
        old = per.get(start)
        if old is None or id_ > old[1]:
            per[start] = (end, id_, _STATUS_CODE.get(status, "F"))


_ROWS = """
select pipeline, target_schema, target_table, extract(epoch from partition_start)::bigint,
       extract(epoch from partition_end)::bigint, id, status
from {ledger}
where partition_start >= %(since)s and pipeline is not null {extra}
"""


class LoadsCache:
    """Per warehouse connection id: the newest ledger row of every (target, interval start)."""

    def __init__(self) -> None:
        self._copies: dict[str, _LedgerCopy] = {}
        # warehouse conn_id -> (ledger version, every target by key)
        self._targets: dict[str, tuple[tuple[int, int], dict[TargetKey, LedgerTarget]]] = {}
        self._lock = threading.Lock()
        self.last_action = ""  # "hit", "merge" or "reload" (for tests and logs)
        self.targets_action = ""  # "merge" or "reload" when the targets were brought up to date

    @staticmethod
    def version(conn: Any) -> tuple[int, int]:
        """``(max(id), count(*))`` of the ledger: changes whenever a row is added or deleted."""
        with conn.cursor() as cur:
            cur.execute(sql.SQL("select coalesce(max(id), 0), count(*) from {}").format(_ledger()))
            max_id, count = cur.fetchone()
            return int(max_id), int(count)

    def targets(self, conn: Any, conn_id: str, version: tuple[int, int], dag_ids: set[str]) -> list[LedgerTarget]:
        """:func:`ledger_queries.list_targets` for ``dag_ids``: every target of the ledger is kept per warehouse
        and brought up to date like the rows (unchanged: as is; appended rows: merged; else read again)."""
        with self._lock:
            cached = self._targets.get(conn_id)
        max_id, count = version
        if cached is not None and cached[0] == version:
            found = cached[1]
        elif cached is not None and max_id > cached[0][0]:
            found = self._merge_targets(conn, cached, version)
        else:
            found = None
        if found is None:
            found = {t.key: t for t in list_targets(conn, None)}
            self.targets_action = "reload"
        with self._lock:
            self._targets[conn_id] = (version, found)
        return [t for key, t in sorted(found.items()) if t.dag_id in dag_ids]

    def _merge_targets(self, conn: Any, cached: tuple[tuple[int, int], dict[TargetKey, LedgerTarget]],
                       version: tuple[int, int]) -> dict[TargetKey, LedgerTarget] | None:
        """The cached targets with the rows ``id > cached max(id)`` folded in, or None when rows were deleted or
        committed below that id since (the counts disagree): then the caller reads everything again."""
        (old_max, old_count), targets = cached
        with conn.cursor() as cur:
            _utc(cur)
            cur.execute(sql.SQL(
                "select pipeline, target_schema, target_table, id, task_id, partition_start, partition_end"
                " from {} where id > %s and id <= %s order by id").format(_ledger()), [old_max, version[0]])
            rows = cur.fetchall()
        if old_count + len(rows) != version[1]:
            return None
        out = dict(targets)
        for pipeline, schema, table, _id, task_id, start, end in rows:
            if pipeline is None:
                continue
            key = (pipeline, schema, table)
            old = out.get(key)
            span = (end - start) if start is not None and end is not None else None
            first = start if old is None else min((d for d in (old.first_start, start) if d is not None), default=None)
            out[key] = LedgerTarget(pipeline, schema, table, task_id, first, span, (old.loads if old else 0) + 1)
        self.targets_action = "merge"
        return out

    def get(self, conn: Any, conn_id: str, version: tuple[int, int], keys: list[TargetKey],
            since: datetime) -> dict[TargetKey, CompactLoads]:
        """The newest row per interval of each target in ``keys`` with ``partition_start >= since``."""
        max_id, count = version
        with conn.cursor() as cur:
            with self._lock:
                copy = self._copies.get(conn_id)
            if copy is not None and copy.since <= since and copy.max_id == max_id and copy.count == count:
                self.last_action = "hit"
            elif copy is not None and copy.since <= since and max_id > copy.max_id:
                cur.execute(sql.SQL(_ROWS).format(ledger=_ledger(), extra=sql.SQL("and id > %(after)s and id <= %(upto)s")),
                            {"since": copy.since, "after": copy.max_id, "upto": max_id})
                rows = cur.fetchall()
                cur.execute(sql.SQL("select count(*) from {} where id > %s and id <= %s").format(_ledger()),
                            [copy.max_id, max_id])
                added = cur.fetchone()[0]
                if copy.count + added == count:
                    touched = {(r[0], r[1], r[2]) for r in rows}
                    newest = {k: (dict(v) if k in touched else v) for k, v in copy.newest.items()}
                    _merge(newest, rows)
                    kept = {k: v for k, v in copy.compact.items() if k[0] not in touched}
                    copy = _LedgerCopy(copy.since, max_id, count, newest, kept)
                    self.last_action = "merge"
                else:
                    copy = None
            else:
                copy = None
            if copy is None:
                cur.execute(sql.SQL(_ROWS).format(ledger=_ledger(), extra=sql.SQL("and id <= %(upto)s")),
                            {"since": since, "upto": max_id})
                newest: Newest = {}
                _merge(newest, cur.fetchall())
                cur.execute(sql.SQL("select count(*) from {} where id <= %s").format(_ledger()), [max_id])
                copy = _LedgerCopy(since, max_id, cur.fetchone()[0], newest)
                self.last_action = "reload"
            with self._lock:
                self._copies[conn_id] = copy
        since_epoch = since.timestamp()
        out = {}
        for key in keys:
            found = copy.compact.get((key, since_epoch))
            if found is None:
                per = copy.newest.get(key, {})
                starts = sorted(s for s in per if s >= since_epoch)
                found = CompactLoads(starts, [per[s][0] for s in starts], [per[s][1] for s in starts],
                                     "".join(per[s][2] for s in starts), next(_TOKENS))
                copy.compact[(key, since_epoch)] = found
            out[key] = found
        return out


LOADS = LoadsCache()
