"""What each task type of the publish package does with its spec: the engine calls behind the operators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow_provider_dataeng.durations import parse_seconds
from airflow_provider_dataeng.publish.checks import CheckResult
from airflow_provider_dataeng.publish.engine import PublishEngine, PublishResult
from airflow_provider_dataeng.publish.spec import PublishSpec, QualitySpec, RollbackSpec
from airflow_provider_dataeng.publish.table_ref import TableRef


def engine_for(spec: PublishSpec | RollbackSpec | QualitySpec, hook: Any, **ledger: Any) -> PublishEngine:
    """The engine for ``spec`` on ``hook``; ``ledger``: pipeline, task_id, run_id."""
    if isinstance(spec, QualitySpec):
        return PublishEngine(hook, **ledger)
    return PublishEngine(hook, lock_timeout=parse_seconds(spec.lock_timeout, "lock_timeout"),
                         swap_attempts=spec.swap_attempts, lock_wait=parse_seconds(spec.lock_wait, "lock_wait"),
                         analyze=getattr(spec, "analyze", False), **ledger)


def publish(engine: PublishEngine, spec: PublishSpec,
            data_interval: tuple[datetime | None, datetime | None] = (None, None)) -> PublishResult:
    """Publish per ``spec``: one partition (bounds default to ``data_interval``) or the whole table."""
    target = TableRef.parse(spec.target_table)
    checks = spec.built_checks()
    if not spec.partition_column:
        return engine.publish_table(target, loader=spec.loader, select_sql=spec.select_sql, checks=checks,
                                    keep_previous=spec.keep_previous, keep_failed_staging=spec.keep_failed_staging)
    lower = spec.partition_start if spec.partition_start not in (None, "") else data_interval[0]
    upper = spec.partition_end if spec.partition_end not in (None, "") else data_interval[1]
    if lower is None or upper is None or (lower == upper and spec.partition_start in (None, "")):
        raise ValueError(
            f"partition_start/partition_end: this run's data interval is empty ({lower}, {upper}); give them "
            "explicitly or use a timetable with data intervals (e.g. schedule=timedelta(days=1))")
    return engine.publish_partition(
        target, partition_column=spec.partition_column, lower=lower, upper=upper, loader=spec.loader,
        select_sql=spec.select_sql, checks=checks, keep_previous=spec.keep_previous,
        keep_failed_staging=spec.keep_failed_staging)


def rollback(engine: PublishEngine, spec: RollbackSpec) -> PublishResult:
    return engine.rollback(TableRef.parse(spec.target_table), spec.partition_start or None)


def check(engine: PublishEngine, spec: QualitySpec) -> list[CheckResult]:
    return engine.check_table(TableRef.parse(spec.table), spec.built_checks())
