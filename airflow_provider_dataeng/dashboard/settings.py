"""The dashboard's settings, from the ``[dataeng]`` section of airflow.cfg (or ``AIRFLOW__DATAENG__*``).

``dashboard_conn_ids``
    Comma-separated Airflow connection ids of the warehouses whose ``dataeng.load_ledger`` the dashboard
    reads (default ``warehouse``, the connection the example pipelines publish to). The API server can
    not read the pipelines' YAML (on managed Airflow it has no DAG files) and a serialized DAG does not
    carry an operator's ``target_conn_id``, so the warehouses are named here, once per deployment.
``dashboard_monitor_conn_id``
    A ``pg_auto_failover`` monitor connection: when set, the page shows the formation's nodes.
``dashboard_formation``
    The formation to show (default ``default``).
``dashboard_max_intervals``
    How many of the most recent expected intervals a target shows (default 1000).
``dashboard_freshness_warn_intervals`` / ``dashboard_freshness_error_intervals``
    Freshness of a target without a freshness sensor on its table (with one, the sensor's ``warn_after`` /
    ``error_after`` decide): ``warn`` when this many of its latest expected intervals are not published
    (default 1), ``error`` from the second number on (default 2).
``dbt_docs_dirs``
    Comma-separated directories holding dbt documentation sites that the page links to (default: where
    ``docs generate`` tasks publish, ``$DATAENG_DBT_STATE_DIR/docs``). Each ``<dag_id>.<task_id>/``
    subdirectory is a site of that DAG; a directory holding ``index.html`` itself (a project's ``target/``
    after ``parse_project --docs``) is a site too.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTION = "dataeng"


@dataclass(frozen=True)
class DashboardSettings:
    conn_ids: tuple[str, ...] = ("warehouse",)
    monitor_conn_id: str | None = None
    formation: str = "default"
    max_intervals: int = 1000
    warn_intervals: int = 1
    error_intervals: int = 2
    dbt_docs_dirs: tuple[str, ...] = ()


def _get(key: str, default: str) -> str:
    from airflow.configuration import conf

    value = conf.get(SECTION, key, fallback=default)
    return default if value is None else str(value).strip()


def _int(key: str, default: int, minimum: int) -> int:
    raw = _get(key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"[{SECTION}] {key}={raw!r}: expected an integer") from None
    if value < minimum:
        raise ValueError(f"[{SECTION}] {key}={value}: expected at least {minimum}")
    return value


def load_settings() -> DashboardSettings:
    """Read the settings now (they are cheap; read per request so a changed env var is seen)."""
    conn_ids = tuple(c.strip() for c in _get("dashboard_conn_ids", "warehouse").split(",") if c.strip())
    if not conn_ids:
        raise ValueError(f"[{SECTION}] dashboard_conn_ids: expected at least one connection id")
    warn = _int("dashboard_freshness_warn_intervals", 1, 1)
    error = _int("dashboard_freshness_error_intervals", 2, 1)
    if error < warn:
        raise ValueError(f"[{SECTION}] dashboard_freshness_error_intervals={error}: expected >= warn ({warn})")
    return DashboardSettings(
        conn_ids=conn_ids,
        monitor_conn_id=_get("dashboard_monitor_conn_id", "") or None,
        formation=_get("dashboard_formation", "default") or "default",
        max_intervals=_int("dashboard_max_intervals", 1000, 1),
        warn_intervals=warn,
        error_intervals=error,
        dbt_docs_dirs=tuple(d.strip() for d in _get("dbt_docs_dirs", "").split(",") if d.strip()) or _default_docs_dirs(),
    )


def _default_docs_dirs() -> tuple[str, ...]:
    from airflow_provider_dataeng.dbt.docs import docs_root

    return (str(docs_root()),)
