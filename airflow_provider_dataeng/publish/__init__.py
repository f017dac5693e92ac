"""Quality-gated atomic publish: staging tables, checks, table and partition swaps, rollback, ledger."""

from airflow_provider_dataeng.durations import parse_seconds
from airflow_provider_dataeng.publish.assets import table_asset, table_asset_uri
from airflow_provider_dataeng.publish.bounds import normalize_bound, partition_ref, partition_suffix
from airflow_provider_dataeng.publish.checks import (
    AcceptedValuesCheck,
    Check,
    CheckContext,
    CheckError,
    CheckResult,
    DriftCheck,
    NullFractionCheck,
    RowCountCheck,
    SqlCheck,
    UniqueCheck,
    build_checks,
    run_checks,
)
from airflow_provider_dataeng.publish.engine import PublishEngine, PublishResult
from airflow_provider_dataeng.publish.errors import (
    ChecksFailed,
    PublishError,
    PublishRejected,
    SwapLockTimeout,
    format_check_table,
)
from airflow_provider_dataeng.publish.ledger import (
    LEDGER_TABLE,
    LedgerEntry,
    ensure_ledger,
    last_published,
    write_ledger_row,
)
from airflow_provider_dataeng.publish.locks import lock_key
from airflow_provider_dataeng.publish.staging import LoadStats
from airflow_provider_dataeng.publish.table_ref import TableRef, suffixed_name

__all__ = [
    "LEDGER_TABLE", "AcceptedValuesCheck", "Check", "CheckContext", "CheckError", "CheckResult", "ChecksFailed",
    "DriftCheck", "LedgerEntry", "LoadStats", "NullFractionCheck", "PublishEngine", "PublishError",
    "PublishRejected", "PublishResult", "RowCountCheck", "SqlCheck", "SwapLockTimeout", "TableRef",
    "UniqueCheck", "build_checks", "ensure_ledger", "format_check_table", "last_published", "lock_key",
    "normalize_bound", "parse_seconds", "partition_ref", "partition_suffix", "run_checks", "suffixed_name",
    "table_asset", "table_asset_uri", "write_ledger_row",
]
