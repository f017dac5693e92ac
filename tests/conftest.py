"""Session-wide harness: throwaway PostgreSQL clusters, a fresh database per test, an Airflow home."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.airflow_env import configure_airflow_home, migrate_metadata_db, register_cluster_connection
from devstack.airflow_stack import AirflowStack
from devstack.pg import PgCluster, stop_all

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="dataeng-airflow-home-"))
# Before anything imports airflow. The DAGs folder is empty: tests sync the DAGs they build themselves
# (devstack.airflow_env.run_dag), and factory tests load dags/ explicitly.
configure_airflow_home(_AIRFLOW_HOME, dags_folder=_AIRFLOW_HOME / "dags")
(_AIRFLOW_HOME / "dags").mkdir(exist_ok=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "airflow: uses the session's real Airflow (scheduler, DAG processor, triggerer, API server); "
        "given to every test that uses the airflow_stack fixture"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "airflow_stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.airflow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """A failed test that used the real Airflow gets the components' log tails in its report."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("airflow_stack")
    if report.failed and isinstance(stack, AirflowStack):
        report.sections.append(("Airflow components (last lines)", stack.log_tails()))
    return report


def pytest_sessionstart(session: pytest.Session) -> None:
    if not (_AIRFLOW_HOME / "airflow.db").exists():
        migrate_metadata_db()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_all()


@pytest.fixture(autouse=True)
def _no_stale_task_sigterm_handler() -> Iterator[None]:
    """A task run in this process (``dag.test()``, ``run_dag``) leaves Airflow's task-runner SIGTERM handler
    installed: it calls that old task's ``on_kill`` and returns, and in a forked child (a test's process
    pool) it ignores SIGTERM altogether, so ``Pool.terminate()`` waits forever. Put back what was there."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    after = signal.getsignal(signal.SIGTERM)
    if after is not before and getattr(after, "__module__", "").startswith("airflow."):
        signal.signal(signal.SIGTERM, before)


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


@pytest.fixture(scope="session")
def airflow_stack(pg_cluster: PgCluster, source_cluster: PgCluster) -> Iterator[AirflowStack]:
    """The session's real Airflow (devstack.airflow_stack), started on first use, stopped at session end.

    Its DAGs folder holds dags/ (the example configs) and the files tests add; connections ``warehouse``
    (database ``warehouse`` on the warehouse cluster) and ``shop_source`` (database ``shop`` on the source
    cluster), the conn ids of the example configs. A test that needs another connection creates it through
    the API (``POST /connections``). OpenLineage events (when the provider is installed) go to
    ``<home>/openlineage.jsonl``.
    """
    pg_cluster.create_database("warehouse")
    source_cluster.create_database("shop")
    home = Path(tempfile.mkdtemp(prefix="dataeng-airflow-stack-"))
    connections = {
        "warehouse": f"postgres://postgres@{pg_cluster.host}:{pg_cluster.port}/warehouse",
        "shop_source": f"postgres://postgres@{source_cluster.host}:{source_cluster.port}/shop",
    }
    transport = {"type": "file", "log_file_path": str(home / "openlineage.jsonl"), "append": True}
    # The metadata database lives on the warehouse cluster too (database ``airflow``): one initdb less.
    stack = AirflowStack(home, connections=connections, metadata_cluster=pg_cluster,
                         extra_env={"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport)})
    try:
        yield stack.start()
    finally:
        stack.stop()


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
