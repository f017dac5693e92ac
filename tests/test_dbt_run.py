"""Real dbt on real PostgreSQL: the example project builds, failing tests block downstream models, retries
re-run only failed and skipped nodes, and the password reaches no log and no artifact."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from airflow_provider_dataeng.connections import connect
from airflow_provider_dataeng.dbt.profile import profile_from_connection
from airflow_provider_dataeng.dbt.results import DbtRunError, DbtRunResult
from airflow_provider_dataeng.dbt.runner import DbtRunner
from devstack.airflow_env import register_cluster_connection, register_connection, unregister_connection
from tests.fixtures import dbt_shop
from tests.fixtures.dbt_manifest import example_manifest

pytestmark = pytest.mark.slow

ACCEPTED_STATUS = "test.dataeng_shop.accepted_values_stg_orders_status__placed__paid__shipped__delivered__cancelled__returned.69d802cd53"
BLOCKED_MODELS = {"model.dataeng_shop.fct_orders", "model.dataeng_shop.daily_revenue",
                  "model.dataeng_shop.customer_lifetime_value"}


class Shop:
    """A warehouse database with the raw shop tables, a password role and an Airflow connection."""

    def __init__(self, cluster, tag: str) -> None:
        self.cluster = cluster
        self.dbname = f"dbt_{tag}_{uuid.uuid4().hex[:8]}"
        self.role = f"dbt_runner_{uuid.uuid4().hex[:8]}"
        self.password = f"Pw-{uuid.uuid4().hex}"
        self.conn_id = f"dbt_wh_{uuid.uuid4().hex[:8]}"
        cluster.create_database(self.dbname)
        dbt_shop.create_login_role(cluster, self.role, self.password, self.dbname)
        dbt_shop.create_raw_tables(cluster, self.dbname, owner=self.role)
        register_cluster_connection(self.conn_id, cluster, self.dbname, login=self.role, password=self.password)

    def q(self, sql: str) -> list[tuple]:
        return dbt_shop.query(self.cluster, self.dbname, sql)

    def close(self) -> None:
        unregister_connection(self.conn_id)
        self.cluster.drop_database(self.dbname)
        from psycopg import sql

        with dbt_shop.psycopg.connect(self.cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(self.role)))


@pytest.fixture
def shop(pg_cluster) -> Iterator[Shop]:
    s = Shop(pg_cluster, "f")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def built(pg_cluster, tmp_path_factory) -> Iterator[tuple[Shop, DbtRunResult, Path, list[str], set[Path]]]:
    """The example project built once (in-process dbtRunner) into a module-scoped warehouse."""
    s = Shop(pg_cluster, "m")
    capture, handler = dbt_shop.capture_log()  # everything the runner logs
    before = dbt_shop.project_files()
    run_dir = tmp_path_factory.mktemp("dbt-build") / "try-1"
    result = DbtRunner(s.conn_id, dbt_shop.PROJECT_DIR, log=capture).run("build", run_dir=run_dir)
    try:
        yield s, result, run_dir, handler.lines, before
    finally:
        s.close()


def test_build_example_project_dedups_and_fills_the_marts(built) -> None:
    shop, result, run_dir, _, _ = built
    assert result.success and result.counts == {"success": 8, "pass": 30}
    # staging keeps the latest version per key: order 3 was extracted three times
    assert shop.q("select order_id, status from analytics_staging.stg_orders order by 1") == [
        (1, "paid"), (2, "paid"), (3, "delivered"), (4, "cancelled"), (5, "returned")]
    assert shop.q("select customer_id, country from analytics_staging.stg_customers order by 1") == [
        (1, "DE"), (2, "ES"), (3, "DE")]
    revenue = {str(d): {"orders": n, "revenue": r} for d, n, r in
               shop.q("select order_date, orders, revenue from analytics.daily_revenue")}
    assert revenue == dbt_shop.EXPECTED_DAILY_REVENUE
    assert dict(shop.q("select customer_id, lifetime_value from analytics.customer_lifetime_value")) == \
        dbt_shop.EXPECTED_LIFETIME_VALUE
    # the incremental model is a table, staging are views
    kinds = dict(shop.q("select c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                        "where n.nspname in ('analytics', 'analytics_staging')"))
    assert kinds["fct_orders"] == "r" and kinds["stg_orders"] == "v"
    xcom = result.as_xcom()
    assert xcom["counts"] == {"success": 8, "pass": 30} and json.dumps(xcom)
    row = next(n for n in xcom["nodes"] if n["node"] == "model.dataeng_shop.fct_orders")
    assert row["status"] == "success" and row["rows"] == 5 and row["time_s"] >= 0


def test_password_is_in_no_log_no_artifact_and_the_project_dir_is_untouched(built) -> None:
    shop, result, run_dir, lines, before = built
    secret = shop.password.encode()
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "dbt.log" for p in files) and any(p.name == "run_results.json" for p in files)
    assert any(p.name == "manifest.json" for p in files)
    leaks = [str(p) for p in files if secret in p.read_bytes()]
    assert leaks == []
    assert lines and any("dbt: " in line for line in lines)  # dbt's output went through our logger
    assert not [line for line in lines if shop.password in line]
    # nothing was written into the project (target/ and logs/ went to the run dir)
    assert dbt_shop.project_files() == before
    assert Path(result.target_dir) == run_dir / "target"


def test_failing_test_blocks_downstream_models_and_retry_runs_only_failed_nodes(shop: Shop, tmp_path: Path) -> None:
    shop.q("insert into raw.orders values (6, 1, 'lost', 60.00, '2024-01-02 10:00+00', '2024-01-02 10:00+00', "
           "null, '2024-01-02') returning id")
    runner = DbtRunner(shop.conn_id, dbt_shop.PROJECT_DIR, use_subprocess=True)  # first try: the dbt CLI
    with pytest.raises(DbtRunError) as info:
        runner.run("build", run_dir=tmp_path / "try-1")
    first = {n.unique_id: n.status for n in info.value.result.nodes}
    assert first[ACCEPTED_STATUS] == "fail"
    assert {u for u, s in first.items() if s == "skipped"} >= BLOCKED_MODELS
    assert all(first[u] == "success" for u in first if u.startswith("model.dataeng_shop.stg_"))
    assert first["model.dataeng_shop.dim_products"] == "success"  # not downstream of the failure
    message = str(info.value)
    assert "accepted_values_stg_orders_status" in message and "compiled SQL: " in message
    compiled = info.value.result.failed[0].compiled_path
    assert compiled and Path(compiled).is_file() and "'lost'" not in Path(compiled).read_text()
    assert shop.q("select count(*) from pg_tables where schemaname = 'analytics' and tablename = 'fct_orders'") == [(0,)]

    shop.q("update raw.orders set status = 'placed' where id = 6 returning id")  # fix the data
    retry = DbtRunner(shop.conn_id, dbt_shop.PROJECT_DIR).run("build", run_dir=tmp_path / "try-2",
                                                           retry_from=tmp_path / "try-1")
    retried = {n.unique_id for n in retry.nodes}
    assert retried == {u for u, s in first.items() if s in ("fail", "error", "skipped")}
    assert retry.success and retry.command == "retry"
    retry_log = (tmp_path / "try-2" / "logs" / "dbt.log").read_text()
    assert "Unable to do partial parsing" not in retry_log  # try 1's parse was reused
    assert shop.q("select orders, revenue from analytics.daily_revenue where order_date = '2024-01-02'") == [
        (3, Decimal("0.00"))]

    # the incremental model picks up a new version of order 6 without a full refresh
    shop.q("insert into raw.orders values (6, 1, 'paid', 60.00, '2024-01-02 10:00+00', '2024-01-04 10:00+00', "
           "null, '2024-01-04') returning id")
    inc = DbtRunner(shop.conn_id, dbt_shop.PROJECT_DIR).run("build", run_dir=tmp_path / "inc",
                                                         select="fct_orders+", exclude="customer_lifetime_value")
    assert inc.success
    assert shop.q("select revenue from analytics.daily_revenue where order_date = '2024-01-02'") == [(Decimal("60.00"),)]
    log = (tmp_path / "inc" / "logs" / "dbt.log").read_text()
    assert "delete from" in log.lower() and '"fct_orders"' in log  # delete+insert, not a rebuild


def test_dag_group_mode_failure_blocks_the_downstream_task_and_an_airflow_retry_resumes(
    shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_dataeng.dbt.render import render_dbt
    from airflow_provider_dataeng.dbt.spec import DbtRenderSpec
    from airflow_provider_dataeng.factory.builder import build_rendered
    from devstack.airflow_env import run_dag

    monkeypatch.setenv("DATAENG_DBT_STATE_DIR", str(tmp_path / "state"))
    shop.q("insert into raw.orders values (6, 1, 'lost', 60.00, '2024-01-02 10:00+00', '2024-01-02 10:00+00', "
           "null, '2024-01-02') returning id")

    def fix_data(context) -> None:
        shop.q("update raw.orders set status = 'placed' where id = 6 returning id")

    def build(dag_id: str, **op) -> DAG:
        with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)) as dag:
            spec = DbtRenderSpec(project_dir=str(dbt_shop.PROJECT_DIR), manifest_path=str(example_manifest()),
                                 conn_id=shop.conn_id, render="group", group_by="folder")
            build_rendered(render_dbt("dbt", spec), op)
        return dag

    # no retries: the failing staging test fails its task and the marts task never runs
    states = run_dag(build(f"dbt_fail_{uuid.uuid4().hex[:6]}", retries=0), logical_date=datetime(2024, 1, 5, tzinfo=timezone.utc))
    assert states == {"dbt.staging": "failed", "dbt.marts": "upstream_failed"}

    # with a retry (the data is fixed between the tries): try 2 re-runs only the failed test
    dag = build(f"dbt_retry_{uuid.uuid4().hex[:6]}", retries=1, retry_delay=timedelta(0), on_retry_callback=fix_data)
    states = run_dag(dag, logical_date=datetime(2024, 1, 5, tzinfo=timezone.utc))
    assert states == {"dbt.staging": "success", "dbt.marts": "success"}
    staging_runs = next((tmp_path / "state" / dag.dag_id / "dbt.staging").iterdir())
    tries = {p.name: json.loads((p / "target" / "run_results.json").read_text()) for p in staging_runs.iterdir()}
    assert set(tries) == {"try-1", "try-2"}
    assert {r["unique_id"] for r in tries["try-2"]["results"]} == {ACCEPTED_STATUS}
    assert tries["try-2"]["args"]["which"] == "build"  # so a third try could `dbt retry` from try 2
    assert len(tries["try-1"]["results"]) == 20  # 4 staging models + their 16 tests
    marts_runs = next((tmp_path / "state" / dag.dag_id / "dbt.marts").iterdir())
    assert [p.name for p in marts_runs.iterdir()] == ["try-1"]
    assert shop.q("select count(*) from analytics.daily_revenue") == [(2,)]


def test_target_session_attrs_reach_dbt_and_mixed_ports_resolve_the_primary(tmp_path: Path) -> None:
    from devstack.pg import running_cluster

    with running_cluster(f"dbt-primary-{uuid.uuid4().hex[:6]}") as primary:
        primary.create_database("wh")
        primary.psql("checkpoint")  # pg_basebackup's spread checkpoint then has nothing to write
        standby = primary.make_standby(f"dbt-standby-{uuid.uuid4().hex[:6]}")
        conn_id = f"dbt_mixed_{uuid.uuid4().hex[:6]}"
        try:
            # hosts on different ports: dbt-postgres takes one port, so the hook resolves the read-write node
            register_connection(conn_id, host=f"{standby.host}:{standby.port},{primary.host}:{primary.port}",
                                schema="wh", extra={"target_session_attrs": "read-write"})
            profile, _ = profile_from_connection(connect(conn_id))
            assert (profile.host, profile.port) == (primary.host, primary.port)
            # only the standby: libpq gets target_session_attrs through PGTARGETSESSIONATTRS and refuses it.
            # connect_deadline: the runner's own pre-dbt connect (it creates the schemas) gives up on the
            # standby after 3 s instead of retrying for the default 120 s; dbt's connect is what is checked.
            register_connection(conn_id, host=standby.host, port=standby.port, schema="wh",
                                extra={"target_session_attrs": "read-write", "dbt_connect_retries": 0,
                                       "connect_deadline": 3})
            with pytest.raises(DbtRunError) as info:
                DbtRunner(conn_id, dbt_shop.PROJECT_DIR).run("run", run_dir=tmp_path / "try-1", select="stg_products")
            log = (tmp_path / "try-1" / "logs" / "dbt.log").read_text()
            assert "failed: session is read-only" in log, str(info.value)  # libpq's target_session_attrs check
            # the same standby with target_session_attrs=any connects (and fails later: no raw tables)
            register_connection(conn_id, host=standby.host, port=standby.port, schema="wh",
                                extra={"target_session_attrs": "any", "dbt_connect_retries": 0,
                                       "connect_deadline": 3})
            with pytest.raises(DbtRunError) as info:
                DbtRunner(conn_id, dbt_shop.PROJECT_DIR).run("run", run_dir=tmp_path / "try-2", select="stg_products")
            log = (tmp_path / "try-2" / "logs" / "dbt.log").read_text()
            assert "session is read-only" not in log
            assert "cannot execute CREATE SCHEMA in a read-only transaction" in log
        finally:
            unregister_connection(conn_id)
            standby.destroy()


def test_source_freshness_reports_each_raw_table(built, tmp_path: Path) -> None:
    shop = built[0]
    # the seed rows' newest interval is 2024-01-03: far past error_after (72 h) -> dbt fails the command
    with pytest.raises(DbtRunError) as info:
        DbtRunner(shop.conn_id, dbt_shop.PROJECT_DIR).run("source freshness", run_dir=tmp_path / "try-1")
    nodes = {n.unique_id: n.status for n in info.value.result.nodes}
    assert nodes == {f"source.dataeng_shop.raw.{t}": "error" for t in dbt_shop.RAW_TABLES}
    assert "source.dataeng_shop.raw.orders" in str(info.value)
    shop.q("update raw.orders set _interval_start = now() - interval '1 hour' returning id")
    with pytest.raises(DbtRunError) as info:
        DbtRunner(shop.conn_id, dbt_shop.PROJECT_DIR).run("source freshness", run_dir=tmp_path / "try-2",
                                                       select="source:raw.orders source:raw.payments")
    nodes = {n.unique_id: n.status for n in info.value.result.nodes}
    assert nodes == {"source.dataeng_shop.raw.orders": "pass", "source.dataeng_shop.raw.payments": "error"}


def test_a_schema_another_task_is_creating_at_the_same_moment_does_not_fail_the_run(shop, tmp_path: Path) -> None:
    """Issue 13: two model tasks of one schema start together and both find it missing. Here the other task is
    a session holding ``create schema analytics_staging`` uncommitted (the race's losing interleaving, made
    deterministic); the run waits on it, and must succeed once it commits instead of failing on a duplicate."""
    import threading
    import time

    import psycopg
    from psycopg import sql

    holder = psycopg.connect(shop.cluster.dsn(shop.dbname))
    try:
        holder.execute(sql.SQL("create schema analytics_staging authorization {}").format(sql.Identifier(shop.role)))
        out: dict[str, object] = {}

        def run() -> None:
            try:
                out["result"] = DbtRunner(shop.conn_id, dbt_shop.PROJECT_DIR).run(
                    "build", run_dir=tmp_path / "try-1", select=["dataeng_shop.staging.stg_products"],
                    indirect_selection="empty", artifacts_dir=example_manifest().parent)
            except Exception as exc:
                out["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 240
        while worker.is_alive() and time.monotonic() < deadline:
            waiting = shop.q(f"select count(*) from pg_stat_activity where datname = current_database() and "
                             f"wait_event_type = 'Lock' and pid <> {holder.info.backend_pid}")[0][0]
            if waiting:
                break
            time.sleep(0.2)
        assert worker.is_alive(), f"the run never waited on the schema being created: {out}"
        holder.commit()
        worker.join(300)
    finally:
        holder.close()
    assert "error" not in out, out.get("error")
    assert out["result"].success  # type: ignore[union-attr]
    assert shop.q("select count(*) from analytics_staging.stg_products") == [(2,)]
