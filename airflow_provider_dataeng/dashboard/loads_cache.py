"""The overview's view of a ledger, kept in the API server's memory and brought up to date per request.

The ledger is append-only in normal operation (one row per publish attempt, ids only grow), so a request first
reads a cheap **version** ``(max(id), epoch)`` (:meth:`LoadsCache.version`: index lookups and catalog/statistics
reads, never a scan of the ledger): unchanged, the cached newest-row-per-interval map answers; grown by new rows
only (same epoch), just the rows after the cached ``max(id)`` are read and merged (the newest id wins, as in a
full read); anything else reloads. The epoch changes when anything but an append happened:

- a row committed below an id already seen (a publish whose transaction took its id earlier and committed
  later): the ids missing among the newest ``GAP_WINDOW`` ids are remembered and looked up again;
- rows deleted: the smallest id changed (retention deletes the oldest rows), or PostgreSQL's cumulative
  deleted-rows counter of the table moved (other deletes; its statistics reach other sessions within
  about a second, at most ~10 s);
- the table was truncated or rewritten (its file node changed).

Nothing is stored outside this process.
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
from airflow_provider_dataeng.publish.ledger import LEDGER_TABLE

_TOKENS = itertools.count(1)
_STATUS_CODE = {"published": "P", "rejected": "R", "failed": "F"}

# (pipeline, schema, table) -> {start epoch: (end epoch or None, ledger id, status letter)}
Newest = dict[TargetKey, dict[int, tuple[int | None, int, str]]]


Version = tuple[int, int]  # (max(id), epoch)
GAP_WINDOW = 5000  # how far below max(id) a late commit is still noticed by id (beyond: at the next reload)


@dataclass
class _LedgerCopy:
    since: datetime
    version: Version
    newest: Newest = field(default_factory=dict)
    compact: dict[tuple[TargetKey, float], CompactLoads] = field(default_factory=dict)


@dataclass(frozen=True)
class _Watch:
    """What :meth:`LoadsCache.version` saw last time for one warehouse."""

    max_id: int
    min_id: int
    node: int | None
    deleted: int
    gaps: frozenset[int]
    epoch: int


_VERSION_SQL = """
with m as (select coalesce(max(id), 0) as max_id, coalesce(min(id), 0) as min_id from {ledger})
select m.max_id, m.min_id, pg_relation_filenode(%(rel)s::regclass)::bigint,
       pg_stat_get_tuples_deleted(%(rel)s::regclass) + pg_stat_get_xact_tuples_deleted(%(rel)s::regclass),
       array(select id from {ledger} where id = any(%(gaps)s::bigint[])),
       array(select g from generate_series(greatest(%(seen)s, m.max_id - %(window)s) + 1, m.max_id) g
             where not exists (select 1 from {ledger} l where l.id = g))
from m
"""


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
        self._targets: dict[str, tuple[Version, dict[TargetKey, LedgerTarget]]] = {}
        self._watch: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self.last_action = ""  # "hit", "merge" or "reload" (for tests and logs)
        self.targets_action = ""  # "merge" or "reload" when the targets were brought up to date

    def version(self, conn: Any, conn_id: str) -> Version:
        """``(max(id), epoch)`` of ``conn_id``'s ledger: ``max(id)`` grows with every row added; the epoch
        changes when anything else happened (see the module docstring). One small query."""
        with self._lock:
            watch = self._watch.get(conn_id)
        rel = ".".join(f'"{p}"' for p in LEDGER_TABLE)
        with conn.cursor() as cur:
            cur.execute(sql.SQL(_VERSION_SQL).format(ledger=_ledger()), {
                "rel": rel, "gaps": sorted(watch.gaps) if watch else [],
                "seen": watch.max_id if watch else 0, "window": GAP_WINDOW})
            max_id, min_id, node, deleted, filled, new_gaps = cur.fetchone()
        max_id, min_id, deleted = int(max_id), int(min_id), int(deleted or 0)
        if watch is None:
            epoch = 0
        elif (filled or max_id < watch.max_id or node != watch.node or deleted != watch.deleted
              or (min_id != watch.min_id and watch.min_id != 0)):
            epoch = watch.epoch + 1
        else:
            epoch = watch.epoch
        kept = (watch.gaps - set(filled)) if watch and max_id >= watch.max_id else frozenset()
        gaps = frozenset(g for g in (*kept, *new_gaps) if g > max_id - GAP_WINDOW)
        with self._lock:
            self._watch[conn_id] = _Watch(max_id, min_id, node, deleted, gaps, epoch)
        return max_id, epoch

    def targets(self, conn: Any, conn_id: str, version: Version, dag_ids: set[str]) -> list[LedgerTarget]:
        """:func:`ledger_queries.list_targets` for ``dag_ids``: every target of the ledger is kept per warehouse
        and brought up to date like the rows (unchanged: as is; appended rows: merged; else read again)."""
        with self._lock:
            cached = self._targets.get(conn_id)
        if cached is not None and cached[0] == version:
            found = cached[1]
        elif cached is not None and cached[0][1] == version[1] and version[0] > cached[0][0]:
            found = self._merge_targets(conn, cached, version)
        else:
            found = None
        if found is None:
            found = {t.key: t for t in list_targets(conn, None)}
            self.targets_action = "reload"
        with self._lock:
            self._targets[conn_id] = (version, found)
        return [t for key, t in sorted(found.items()) if t.dag_id in dag_ids]

    def _merge_targets(self, conn: Any, cached: tuple[Version, dict[TargetKey, LedgerTarget]],
                       version: Version) -> dict[TargetKey, LedgerTarget]:
        """The cached targets with the rows ``cached max(id) < id <= max(id)`` folded in (same epoch: nothing
        but those rows changed)."""
        (old_max, _), targets = cached
        with conn.cursor() as cur:
            _utc(cur)
            cur.execute(sql.SQL(
                "select pipeline, target_schema, target_table, id, task_id, partition_start, partition_end"
                " from {} where id > %s and id <= %s order by id").format(_ledger()), [old_max, version[0]])
            rows = cur.fetchall()
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

    def get(self, conn: Any, conn_id: str, version: Version, keys: list[TargetKey],
            since: datetime) -> dict[TargetKey, CompactLoads]:
        """The newest row per interval of each target in ``keys`` with ``partition_start >= since``."""
        max_id, epoch = version
        with conn.cursor() as cur:
            with self._lock:
                copy = self._copies.get(conn_id)
            if copy is not None and copy.since <= since and copy.version == version:
                self.last_action = "hit"
            elif copy is not None and copy.since <= since and copy.version[1] == epoch and max_id > copy.version[0]:
                cur.execute(sql.SQL(_ROWS).format(ledger=_ledger(), extra=sql.SQL("and id > %(after)s and id <= %(upto)s")),
                            {"since": copy.since, "after": copy.version[0], "upto": max_id})
                rows = cur.fetchall()
                touched = {(r[0], r[1], r[2]) for r in rows}
                newest = {k: (dict(v) if k in touched else v) for k, v in copy.newest.items()}
                _merge(newest, rows)
                kept = {k: v for k, v in copy.compact.items() if k[0] not in touched}
                copy = _LedgerCopy(copy.since, version, newest, kept)
                self.last_action = "merge"
            else:
                cur.execute(sql.SQL(_ROWS).format(ledger=_ledger(), extra=sql.SQL("and id <= %(upto)s")),
                            {"since": since, "upto": max_id})
                newest: Newest = {}
                _merge(newest, cur.fetchall())
                copy = _LedgerCopy(since, version, newest)
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
