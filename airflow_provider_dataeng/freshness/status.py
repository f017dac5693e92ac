"""Freshness status like dbt source freshness: ``fresh``, ``warn`` (past warn_after), ``error`` (past error_after)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from airflow_provider_dataeng.durations import format_duration
from airflow_provider_dataeng.freshness.probe import Observation


class FreshnessStatus(str, Enum):
    FRESH = "fresh"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class FreshnessSLA:
    """Thresholds; at least one is set and ``warn_after <= error_after``."""

    warn_after: timedelta | None = None
    error_after: timedelta | None = None

    def __post_init__(self) -> None:
        if self.warn_after is None and self.error_after is None:
            raise ValueError("freshness SLA: set warn_after and/or error_after (e.g. warn_after='6h')")
        if self.warn_after is not None and self.error_after is not None and self.warn_after > self.error_after:
            raise ValueError(
                f"freshness SLA: warn_after ({format_duration(self.warn_after)}) is longer than error_after "
                f"({format_duration(self.error_after)})"
            )

    def describe(self) -> str:
        parts = []
        if self.warn_after is not None:
            parts.append(f"warn after {format_duration(self.warn_after)}")
        if self.error_after is not None:
            parts.append(f"error after {format_duration(self.error_after)}")
        return ", ".join(parts)

    def status_for(self, lag: timedelta | None) -> FreshnessStatus:
        """``None`` lag (no rows at all) is an error: there is nothing fresh to wait less for."""
        if lag is None:
            return FreshnessStatus.ERROR
        if self.error_after is not None and lag > self.error_after:
            return FreshnessStatus.ERROR
        if self.warn_after is not None and lag > self.warn_after:
            return FreshnessStatus.WARN
        return FreshnessStatus.FRESH


@dataclass(frozen=True)
class FreshnessResult:
    """One evaluated observation of a table."""

    table: str
    measured: str  # "max(loaded_at)" or "loaded_at_query"
    status: FreshnessStatus
    max_loaded_at: datetime | None
    observed_at: datetime
    sla: FreshnessSLA

    @property
    def lag(self) -> timedelta | None:
        if self.max_loaded_at is None:
            return None
        return max(timedelta(0), self.observed_at - self.max_loaded_at)

    @property
    def lag_seconds(self) -> float | None:
        lag = self.lag
        return None if lag is None else round(lag.total_seconds(), 3)

    @property
    def empty(self) -> bool:
        return self.max_loaded_at is None

    @property
    def breached_threshold(self) -> timedelta | None:
        """The threshold this result is past (error_after for errors, warn_after for warnings)."""
        if self.status is FreshnessStatus.ERROR:
            return self.sla.error_after
        if self.status is FreshnessStatus.WARN:
            return self.sla.warn_after
        return None

    def as_xcom(self) -> dict[str, Any]:
        """``{max_loaded_at, lag_seconds, status}`` (ISO timestamp, float seconds, status string)."""
        return {
            "max_loaded_at": self.max_loaded_at.isoformat() if self.max_loaded_at else None,
            "lag_seconds": self.lag_seconds,
            "status": self.status.value,
        }

    def message(self) -> str:
        """One line for the log and notifications: table, lag, SLA, max timestamp."""
        if self.empty:
            return (
                f"{self.table} has no rows ({self.measured} is NULL): treated as {self.status.value}; "
                f"SLA: {self.sla.describe()}"
            )
        stamp = self.max_loaded_at.isoformat() if self.max_loaded_at else "-"
        lag = format_duration(self.lag)
        if self.status is FreshnessStatus.FRESH:
            return f"{self.table} is fresh: lag {lag} ({self.measured} = {stamp}); SLA: {self.sla.describe()}"
        which = "error_after" if self.status is FreshnessStatus.ERROR else "warn_after"
        return (
            f"{self.table} is stale ({self.status.value}): lag {lag} exceeds {which} "
            f"{format_duration(self.breached_threshold)} ({self.measured} = {stamp}, observed at "
            f"{self.observed_at.isoformat()}); SLA: {self.sla.describe()}"
        )

    def breach_message(self, waited_seconds: float | None) -> str:
        """The failure message after the sensor's timeout: observed lag, threshold and max timestamp."""
        waited = f" after waiting {format_duration(waited_seconds)}" if waited_seconds is not None else ""
        if self.empty:
            return (
                f"Freshness SLA breached: table {self.table} is empty ({self.measured} is NULL){waited}; "
                f"SLA: {self.sla.describe()}"
            )
        return (
            f"Freshness SLA breached{waited}: {self.table} observed lag {format_duration(self.lag)} "
            f"({self.lag_seconds:.0f}s) exceeds error_after {format_duration(self.sla.error_after)}; "
            f"{self.measured} = {self.max_loaded_at.isoformat() if self.max_loaded_at else '-'} "
            f"(observed at {self.observed_at.isoformat()}); SLA: {self.sla.describe()}"
        )

    def to_payload(self) -> dict[str, Any]:
        """JSON-able form (trigger events)."""
        return {
            "table": self.table,
            "measured": self.measured,
            "status": self.status.value,
            "max_loaded_at": self.max_loaded_at.isoformat() if self.max_loaded_at else None,
            "observed_at": self.observed_at.isoformat(),
            "lag_seconds": self.lag_seconds,
            "warn_after_seconds": _seconds(self.sla.warn_after),
            "error_after_seconds": _seconds(self.sla.error_after),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> FreshnessResult:
        return cls(
            table=payload["table"],
            measured=payload["measured"],
            status=FreshnessStatus(payload["status"]),
            max_loaded_at=_parse_dt(payload.get("max_loaded_at")),
            observed_at=_parse_dt(payload["observed_at"]),  # type: ignore[arg-type]
            sla=FreshnessSLA(
                warn_after=_delta(payload.get("warn_after_seconds")),
                error_after=_delta(payload.get("error_after_seconds")),
            ),
        )

    def breach_info(self) -> dict[str, Any]:
        """What a notifier needs (put into the context as ``freshness``)."""
        return {
            **self.to_payload(),
            "lag": format_duration(self.lag) if not self.empty else None,
            "sla": self.sla.describe(),
            "threshold": format_duration(self.breached_threshold) if self.breached_threshold else None,
            "empty": self.empty,
            "message": self.message(),
        }


def evaluate(table: str, measured: str, observation: Observation, sla: FreshnessSLA) -> FreshnessResult:
    """Classify one observation against the SLA."""
    lag = None
    if observation.max_loaded_at is not None:
        lag = max(timedelta(0), observation.observed_at - observation.max_loaded_at)
    return FreshnessResult(
        table=table,
        measured=measured,
        status=sla.status_for(lag),
        max_loaded_at=observation.max_loaded_at,
        observed_at=observation.observed_at,
        sla=sla,
    )


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _delta(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _parse_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
