"""Quality-gated atomic publish: staging tables, checks, table and partition swaps, rollback, ledger.

Names are imported on first use, so reading a config (``publish.spec``) does not load the engine.
"""

from __future__ import annotations

from airflow_provider_dataeng.values import lazy_exports

_EXPORTS = {
    "parse_seconds": "airflow_provider_dataeng.durations",
    "table_asset": "airflow_provider_dataeng.publish.assets",
    "table_asset_uri": "airflow_provider_dataeng.publish.assets",
    **dict.fromkeys(("AcceptedValuesCheck", "Check", "CheckContext", "CheckError", "CheckResult", "DriftCheck",
                     "NullFractionCheck", "RowCountCheck", "SqlCheck", "UniqueCheck", "build_checks", "run_checks"),
                    "airflow_provider_dataeng.publish.checks"),
    **dict.fromkeys(("normalize_bound", "partition_ref", "partition_suffix"), "airflow_provider_dataeng.publish.bounds"),
    "PublishEngine": "airflow_provider_dataeng.publish.engine",
    "PublishResult": "airflow_provider_dataeng.publish.result",
    **dict.fromkeys(("ChecksFailed", "PublishError", "PublishRejected", "SwapLockTimeout", "format_check_table"),
                    "airflow_provider_dataeng.publish.errors"),
    **dict.fromkeys(("LEDGER_TABLE", "LedgerEntry", "ensure_ledger", "last_published", "write_ledger_row"),
                    "airflow_provider_dataeng.publish.ledger"),
    "lock_key": "airflow_provider_dataeng.publish.locks",
    "LoadStats": "airflow_provider_dataeng.publish.staging",
    **dict.fromkeys(("TableRef", "suffixed_name"), "airflow_provider_dataeng.publish.table_ref"),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
