"""Exceptions raised by the publish engine and the quality checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow_provider_dataeng.publish.checks import CheckResult


def format_check_table(results: list[CheckResult]) -> str:
    """A plain-text table: check | observed | threshold | result."""
    rows = [("check", "observed", "threshold", "result")]
    rows += [(r.check, _show(r.observed), _show(r.threshold), "ok" if r.passed else "FAILED") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class PublishError(AirflowException):
    """A publish could not complete (live data is untouched)."""


class SwapLockTimeout(PublishError):
    """The swap could not get its locks within lock_timeout after every attempt."""


class ChecksFailed(AirflowFailException):
    """One or more quality checks failed; ``results`` holds every check's outcome."""

    def __init__(self, subject: str, results: list[CheckResult]) -> None:
        self.subject = subject
        self.results = list(results)
        failed = [r.check for r in results if not r.passed]
        super().__init__(
            f"{len(failed)} of {len(results)} quality checks failed on {subject}: {', '.join(failed)}\n"
            + format_check_table(self.results)
        )


class PublishRejected(ChecksFailed):
    """Checks on the staging table failed: nothing was published (a 'rejected' ledger row was written)."""

    def __init__(self, subject: str, results: list[CheckResult], result: Any = None) -> None:
        super().__init__(subject, results)
        self.result = result
