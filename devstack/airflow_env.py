"""An isolated Airflow home for tests, the demo and benchmarks; connections; DAG runs with task states."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def configure_airflow_home(home: Path, dags_folder: Path | None = None) -> dict[str, str]:
    """Point Airflow at ``home`` (SQLite metadata, no examples). Call before importing airflow."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or REPO_ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": "(airflow|airflow_provider_dataeng)\\..*",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACKS": "True",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    }
    os.environ.update(env)
    return env


def migrate_metadata_db() -> None:
    """Create the Airflow metadata tables (``airflow db migrate``) in the configured home.

    A SQLite metadata DB is copied from this environment's cache of a freshly migrated one when there is
    one (milliseconds instead of 10-30 s of CPU; keyed like the stack's schema cache, see
    :func:`devstack.airflow_stack.migrated_schema_cache`), else migrated and then cached.
    """
    import shutil

    from devstack.airflow_stack import migrated_schema_cache

    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    db = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    cache = migrated_schema_cache().with_suffix(".sqlite")
    if db is not None and cache.exists():
        shutil.copyfile(cache, db)
        return
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy(),
    )
    if db is not None and db.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        shutil.copyfile(db, tmp)
        tmp.replace(cache)


def connection_env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def register_connection(
    conn_id: str,
    *,
    host: str,
    port: int | None = None,
    login: str = "postgres",
    password: str | None = None,
    schema: str | None = None,
    conn_type: str = "postgres",
    extra: dict[str, Any] | None = None,
) -> str:
    """Register an Airflow connection through its ``AIRFLOW_CONN_*`` environment variable (JSON form)."""
    payload: dict[str, Any] = {"conn_type": conn_type, "host": host, "login": login}
    if port is not None:
        payload["port"] = port
    if password is not None:
        payload["password"] = password
    if schema is not None:
        payload["schema"] = schema
    if extra:
        payload["extra"] = extra
    os.environ[connection_env_name(conn_id)] = json.dumps(payload)
    return conn_id


def register_cluster_connection(conn_id: str, cluster: Any, dbname: str, **kwargs: Any) -> str:
    """Register a connection to one database of a :class:`devstack.pg.PgCluster`."""
    return register_connection(conn_id, host=cluster.host, port=cluster.port, schema=dbname, **kwargs)


def unregister_connection(conn_id: str) -> None:
    os.environ.pop(connection_env_name(conn_id), None)


def serialize_dag_to_db(dag: Any, bundle_name: str = "dags-folder") -> None:
    """Write a DAG defined in Python (a test, the demo) to the metadata DB, as the DAG processor would.

    Airflow 3.3's ``dag.test()`` needs the DAG serialized in a bundle; a DAG built in a test module
    lives in no bundle, so we sync it ourselves first.
    """
    from types import SimpleNamespace

    from airflow.dag_processing.bundles.manager import DagBundlesManager

    try:
        from airflow.dag_processing.dagbag import sync_bag_to_db
    except ImportError:  # Airflow < 3.2 (the lowest-versions CI run): dag.test() serializes by itself, but
        # does not register the DAG's assets, so a task with an Asset outlet fails as "inactive asset";
        # write the DAG (and activate its assets) as the DAG processor does.
        from airflow.models.dag import DAG as SchedulerDAG
        from airflow.serialization.serialized_objects import LazyDeserializedDAG, SerializedDAG

        DagBundlesManager().sync_bundles_to_db()
        data = SerializedDAG.to_dict(dag)
        data["dag"].setdefault("relative_fileloc", os.path.basename(dag.fileloc or "") or None)
        SchedulerDAG.bulk_write_to_db(bundle_name, None, [LazyDeserializedDAG(data=data)])
        return

    DagBundlesManager().sync_bundles_to_db()
    bag = SimpleNamespace(
        dags={dag.dag_id: dag}, import_errors={}, bundle_path=None, file_last_changed={}, dag_warnings=set()
    )
    sync_bag_to_db(bag, bundle_name, None)  # type: ignore[arg-type]


def run_dag(dag: Any, logical_date: datetime | None = None, **kwargs: Any) -> dict[str, str | None]:
    """Run ``dag.test()`` and return ``{task_id: state}`` for the run."""
    serialize_dag_to_db(dag)
    # Airflow 3.3.2's dag.test() crashes at the end of a run of a DAG with Deadline Alerts
    # ('dict' object has no attribute 'hex' in DagRun.update_state): its in-memory scheduler DAG holds the
    # serialized alerts where the scheduler holds their ids. Deadlines are scheduler features; run without.
    deadline, dag.deadline = getattr(dag, "deadline", None), None
    try:
        dag_run = dag.test(logical_date=logical_date, **kwargs)
    finally:
        dag.deadline = deadline
    return task_states(dag_run)


def task_states(dag_run: Any) -> dict[str, str | None]:
    """``{task_id: state}`` of a DagRun returned by ``dag.test()``."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
        )
        return {ti.task_id: (str(ti.state.value) if hasattr(ti.state, "value") else ti.state) for ti in tis}
