"""Session-wide harness: throwaway PostgreSQL clusters, a fresh database per test, an Airflow home."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.airflow_env import configure_airflow_home, migrate_metadata_db, register_cluster_connection
from devstack.pg import PgCluster, stop_all

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="dataeng-airflow-home-"))
# Before anything imports airflow. The DAGs folder is empty: tests sync the DAGs they build themselves
# (devstack.airflow_env.run_dag), and factory tests load dags/ explicitly.
configure_airflow_home(_AIRFLOW_HOME, dags_folder=_AIRFLOW_HOME / "dags")
(_AIRFLOW_HOME / "dags").mkdir(exist_ok=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    if not (_AIRFLOW_HOME / "airflow.db").exists():
        migrate_metadata_db()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_all()


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The main throwaway cluster (plays the warehouse)."""
    cluster = PgCluster.create("warehouse")
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def source_cluster() -> Iterator[PgCluster]:
    """A second, separate cluster (plays the source database)."""
    cluster = PgCluster.create("source")
    try:
        yield cluster
    finally:
        cluster.destroy()


def _fresh_db(cluster: PgCluster, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    cluster.create_database(name)
    try:
        yield name
    finally:
        cluster.drop_database(name)


@pytest.fixture
def pg_db(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh database on the warehouse cluster, dropped after the test."""
    yield from _fresh_db(pg_cluster, "wh")


@pytest.fixture
def source_db(source_cluster: PgCluster) -> Iterator[str]:
    """A fresh database on the source cluster, dropped after the test."""
    yield from _fresh_db(source_cluster, "src")


@pytest.fixture
def warehouse_conn_id(pg_cluster: PgCluster, pg_db: str) -> Iterator[str]:
    """An Airflow connection (``AIRFLOW_CONN_*``) to this test's warehouse database."""
    conn_id = f"wh_{uuid.uuid4().hex[:8]}"
    register_cluster_connection(conn_id, pg_cluster, pg_db)
    yield conn_id
    os.environ.pop(f"AIRFLOW_CONN_{conn_id.upper()}", None)


@pytest.fixture
def source_conn_id(source_cluster: PgCluster, source_db: str) -> Iterator[str]:
    """An Airflow connection to this test's source database."""
    conn_id = f"src_{uuid.uuid4().hex[:8]}"
    register_cluster_connection(conn_id, source_cluster, source_db)
    yield conn_id
    os.environ.pop(f"AIRFLOW_CONN_{conn_id.upper()}", None)


# -- publish engine tests ----------------------------------------------------------------------------


@pytest.fixture
def wh_hook(warehouse_conn_id: str) -> Any:
    """The provider's hook for this test's warehouse database (built the one way: ``connections.connect``)."""
    from airflow_provider_dataeng.connections import connect

    return connect(warehouse_conn_id)


@pytest.fixture
def db(pg_cluster: PgCluster, pg_db: str) -> Iterator[psycopg.Connection]:
    """An autocommit psycopg 3 connection to the test database (the 'other session')."""
    conn = psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def dsn(pg_cluster: PgCluster, pg_db: str) -> str:
    """The libpq DSN of the test database."""
    return pg_cluster.dsn(pg_db)
