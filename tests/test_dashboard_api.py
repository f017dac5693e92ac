"""Ingestion dashboard (issue 17): the plugin's registration, its calendar logic, and its API behind Airflow's
authentication on a real ``airflow api-server`` over a real warehouse ledger.

The API server runs with an auth manager that is Airflow's SimpleAuthManager except that user ``limited`` may
read only DAGs whose id starts with ``dash_ok``: the dashboard must show that user nothing else.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from airflow_provider_dataeng.dashboard.calendar import (
    CompactLoads,
    classify_cells,
    classify_codes,
    drift_band,
)
from airflow_provider_dataeng.dashboard.ledger_queries import CatalogState, IntervalLoad
from airflow_provider_dataeng.gaps.catalog import LedgerRow, Partition, TableState
from airflow_provider_dataeng.gaps.check import classify
from airflow_provider_dataeng.gaps.expected import Interval, expected_intervals, resolve_timetable
from airflow_provider_dataeng.publish.ledger import LedgerEntry, ensure_ledger, write_ledger_row
from devstack.pg import free_port

try:  # the API server imports this module for its auth manager: keep it importable there
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
except ImportError:  # pragma: no cover
    SimpleAuthManager = object  # type: ignore[assignment,misc]

REPO = Path(__file__).resolve().parents[1]
DAY = timedelta(days=1)


class DashOkOnlyAuthManager(SimpleAuthManager):  # type: ignore[misc,valid-type]
    """SimpleAuthManager, but user ``limited`` may only touch DAGs whose id starts with ``dash_ok``."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if user.get_name() == "limited" and not (details and details.id and details.id.startswith("dash_ok")):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)


# -- registration ------------------------------------------------------------------------------------------
def test_provider_registers_the_plugin_with_relative_urls() -> None:
    from importlib.metadata import entry_points

    from airflow._shared.module_loading import import_string
    from airflow.plugins_manager import AirflowPlugin

    from airflow_provider_dataeng.get_provider_info import get_provider_info

    (entry,) = get_provider_info()["plugins"]
    plugin = import_string(entry["plugin-class"])
    assert issubclass(plugin, AirflowPlugin) and plugin.name == entry["name"]
    # Airflow loads provider-info plugins only with [core] lazy_discover_providers=False: the entry point is
    # what loads it by default.
    (ep,) = [e for e in entry_points(group="airflow.plugins") if e.name == entry["name"]]
    assert ep.load() is plugin
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/dataeng"
    (view,) = plugin.external_views
    for url in (view["href"], view["icon"]):
        assert not url.startswith(("/", "http:", "https:")), f"{url!r} must be relative to the UI's base href"


# -- calendar logic ----------------------------------------------------------------------------------------
def test_calendar_verdicts_equal_the_gap_checks() -> None:
    """On random ledgers and partitions, both of the dashboard's classifications (cells for a target's page,
    letters for the overview) give gaps.check.classify's verdicts."""
    rng = random.Random(17)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    expected = [Interval(start + i * DAY, start + (i + 1) * DAY, start + i * DAY) for i in range(60)]
    for _ in range(30):
        rows, loads, next_id = [], {}, 1
        for i in rng.sample(range(60), 45):
            for _attempt in range(rng.randint(1, 3)):
                status = rng.choice(["published", "published", "rejected", "failed"])
                lo, hi = start + i * DAY, start + (i + 1) * DAY
                rows.append(LedgerRow(next_id, status, lo, hi, f"r{next_id}", "p", "boom" if status == "failed" else None, None))
                loads[lo] = IntervalLoad(next_id, lo, hi, status, 10, f"r{next_id}", "t", error="boom" if status == "failed" else None)
                next_id += 1
        attached = sorted(rng.sample(range(60), 50))
        parts = tuple(Partition(f"p{i}", "", start + i * DAY, start + (i + 1) * DAY) for i in attached)
        for exists, partitioned in ((True, True), (True, False), (False, False)):
            state = TableState(exists, partitioned, parts if partitioned else ())
            catalog = CatalogState(exists, partitioned, tuple((p.lower, p.upper) for p in state.partitions))
            cells = classify_cells(expected, list(loads.values()), catalog)
            ordered = sorted(loads.values(), key=lambda x: x.start)
            compact = CompactLoads([int(x.start.timestamp()) for x in ordered], [int(x.end.timestamp()) for x in ordered],
                                   [x.ledger_id for x in ordered], "".join(x.status[0].upper() for x in ordered))
            letters = classify_codes([int(iv.start.timestamp()) for iv in expected],
                                     [int(iv.end.timestamp()) for iv in expected], compact, catalog)
            for iv, cell, letter in zip(expected, cells, letters, strict=True):
                hole = classify(iv, state, rows)
                assert cell.status == (hole.kind if hole else "published"), (iv, exists, partitioned)
                assert letter == cell.status[0].upper(), (iv, exists, partitioned)


def test_drift_band_is_the_range_the_drift_check_accepted() -> None:
    # DriftCheck reports observed as f"{change:+.2f}%" and threshold as f"+-{pct}%" (publish/checks.py).
    published, rows, pct = 1000, 1100, 20.0
    checks = [{"check": "drift", "observed": f"{(rows - published) * 100.0 / published:+.2f}%", "threshold": f"+-{pct}%",
               "passed": True}]
    lo, hi = drift_band(rows, checks)
    assert lo == pytest.approx(800) and hi == pytest.approx(1200)
    assert drift_band(rows, [{"check": "drift", "observed": None, "threshold": "+-20.0%"}]) is None


@pytest.mark.parametrize("schedule", ["@daily", "0 */6 * * *", timedelta(hours=8)])
def test_interval_cache_extends_to_what_a_full_computation_gives(schedule: Any) -> None:
    from airflow_provider_dataeng.dashboard.airflow_side import IntervalCache

    timetable = resolve_timetable(schedule)
    cache = IntervalCache()
    a = datetime(2026, 3, 1, tzinfo=timezone.utc)
    first = cache.get(timetable, a, a + 10 * DAY)
    assert first == expected_intervals(timetable, a, a + 10 * DAY)
    later = cache.get(timetable, a + 2 * DAY + timedelta(hours=3), a + 25 * DAY + timedelta(hours=5))
    assert later == expected_intervals(timetable, a + 2 * DAY + timedelta(hours=3), a + 25 * DAY + timedelta(hours=5))
    assert cache.get(timetable, a - 3 * DAY, a + 5 * DAY) == expected_intervals(timetable, a - 3 * DAY, a + 5 * DAY)


# -- freshness SLAs from the sensors' serialized tasks --------------------------------------------------------
def _serialized(dag: Any) -> dict[str, Any]:
    try:
        from airflow.serialization.serialized_objects import DagSerialization as Serializer
    except ImportError:  # Airflow < 3.1
        from airflow.serialization.serialized_objects import SerializedDAG as Serializer
    return json.loads(json.dumps(Serializer.to_dict(dag)))  # what the API server reads from serialized_dag


def test_freshness_slas_of_config_sensors_are_read_from_the_serialized_dag() -> None:
    """The monitoring config's freshness tasks: the page gets each sensor's own warn_after/error_after."""
    from airflow_provider_dataeng.dashboard.airflow_side import SensorSla, sensor_slas
    from airflow_provider_dataeng.factory.folder import build_dags

    dag = build_dags(REPO / "dags" / "configs", only_dag_id="monitoring").dags["monitoring"]
    sensors = {t.task_id.rsplit(".", 1)[-1]: t for t in dag.tasks if type(t).__name__ == "FreshnessSensor"}
    assert set(sensors) == {"orders_fresh", "payments_fresh"}
    slas = {(s.schema, s.table): s for s in sensor_slas("monitoring", _serialized(dag))}
    for name, table in (("orders_fresh", "orders"), ("payments_fresh", "payments")):
        spec = sensors[name].spec()
        sla = slas[("raw", table)]
        assert isinstance(sla, SensorSla) and sla.conn_id == "warehouse" and sla.task_id.endswith(name)
        assert (sla.warn_after, sla.error_after) == (spec.warn_after, spec.error_after) == (
            timedelta(hours=26), timedelta(hours=50))
        # The same verdicts as the sensor's own rule.
        check = spec.check()
        for lag in (None, timedelta(hours=1), timedelta(hours=27), timedelta(hours=51)):
            assert sla.status(lag) == check.sla.status_for(lag).value, lag


@pytest.mark.parametrize("warn, error", [(timedelta(hours=2), timedelta(days=1, hours=3)), ("90m", "2d"),
                                         ({"count": 3, "period": "hour"}, None), (None, 7200)])
def test_freshness_sla_values_survive_serialization(warn: Any, error: Any) -> None:
    from airflow.sdk import DAG

    from airflow_provider_dataeng.dashboard.airflow_side import sensor_slas
    from airflow_provider_dataeng.durations import parse_duration
    from airflow_provider_dataeng.sensors.freshness import FreshnessSensor

    with DAG("sla_values", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
        FreshnessSensor(task_id="fresh", conn_id="wh2", table="analytics.daily", timestamp_column="at",
                        warn_after=warn, error_after=error)
    (sla,) = sensor_slas("sla_values", _serialized(dag))
    assert (sla.conn_id, sla.schema, sla.table) == ("wh2", "analytics", "daily")
    assert sla.warn_after == parse_duration(warn, field="w") and sla.error_after == parse_duration(error, field="e")


def test_loads_cache_merges_new_rows_like_a_full_read(pg_cluster: Any, pg_db: str) -> None:
    """Appended rows are merged (newest id wins), deleted rows force a reload; always equal to a fresh read."""
    from airflow_provider_dataeng.dashboard.ledger_queries import list_targets
    from airflow_provider_dataeng.dashboard.loads_cache import LoadsCache

    start = datetime(2026, 5, 1, tzinfo=timezone.utc)
    keys = [("dag_a", "raw", "a"), ("dag_b", "raw", "b")]

    def add(conn: Any, dag: str, table: str, day: int, status: str) -> None:
        lo = start + day * DAY
        write_ledger_row(conn, LedgerEntry(target_schema="raw", target_table=table, mode="m", status=status,
                                           started_at=lo, pipeline=dag, partition_start=lo, partition_end=lo + DAY))

    def read(cache: LoadsCache) -> dict:
        with psycopg.connect(pg_cluster.dsn(pg_db)) as conn:
            version = cache.version(conn, "wh")
            got = cache.get(conn, "wh", version, keys, start)
            # The targets (first load, last span and task, number of loads) equal a fresh aggregate as well.
            assert cache.targets(conn, "wh", version, {"dag_a", "dag_b"}) == list_targets(conn, {"dag_a", "dag_b"})
            assert cache.targets(conn, "wh", version, {"dag_b"}) == list_targets(conn, {"dag_b"})
        return {k: (v.starts, v.ends, v.ids, v.codes) for k, v in got.items()}

    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as conn:
        ensure_ledger(conn)
        for day in range(5):
            add(conn, "dag_a", "a", day, "published")
            add(conn, "dag_b", "b", day, "failed" if day == 2 else "published")
        cache = LoadsCache()
        first = read(cache)
        assert cache.last_action == "reload" and first[keys[1]][3] == "PPFPP"
        assert read(cache) == first and cache.last_action == "hit"
        add(conn, "dag_b", "b", 2, "published")  # the failed interval re-run
        add(conn, "dag_a", "a", 7, "rejected")
        merged = read(cache)
        assert cache.last_action == "merge" and cache.targets_action == "merge" and merged == read(LoadsCache())
        assert merged[keys[1]][3] == "PPPPP" and merged[keys[0]][3] == "PPPPPR"
        conn.execute("delete from dataeng.load_ledger where pipeline = 'dag_a' and partition_start = %s", [start])
        after_delete = read(cache)
        assert cache.last_action == cache.targets_action == "reload" and after_delete == read(LoadsCache())
        assert after_delete[keys[0]][3] == "PPPPR"

        # A publish that took its id first and commits after a later one was read (concurrent publishes):
        # merged rows above it, then a reload when it shows up, never lost.
        with psycopg.connect(pg_cluster.dsn(pg_db)) as slow:
            add(slow, "dag_b", "b", 8, "published")  # id taken, not committed
            add(conn, "dag_b", "b", 9, "published")
            assert read(cache)[keys[1]][3] == "PPPPPP" and cache.last_action == "merge"
            slow.commit()
        late = read(cache)
        assert cache.last_action == cache.targets_action == "reload" and late == read(LoadsCache())
        assert late[keys[1]][3] == "PPPPPPP"
        assert read(cache) == late and cache.last_action == "hit"

        # A delete in the middle of the ledger (not the oldest row): seen once PostgreSQL's statistics have it.
        conn.execute("delete from dataeng.load_ledger where pipeline = 'dag_b' and partition_start = %s",
                     [start + 9 * DAY])
        deadline = time.monotonic() + 30
        while (got := read(cache)) != read(LoadsCache()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert got == read(LoadsCache()) and got[keys[1]][3] == "PPPPPP" and cache.last_action in ("hit", "reload")
        conn.execute("truncate dataeng.load_ledger")
        add(conn, "dag_a", "a", 0, "failed")
        assert read(cache) == read(LoadsCache()) and cache.last_action == "reload"


# -- the API on a real API server --------------------------------------------------------------------------
DAG_TEMPLATE = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow.providers.standard.operators.empty import EmptyOperator
with DAG({dag_id!r}, schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
         start_date=datetime({y}, {m}, {d}, tzinfo=timezone.utc), catchup=False) as dag:
    EmptyOperator(task_id="extract_orders")
"""


class ApiServer:
    """``airflow api-server`` on a free port, with users admin (admin) and limited (viewer, dash_ok* only)."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"api-server-{self.port}.log"
        passwords = home / "dashboard-passwords.json"
        passwords.write_text(json.dumps({"admin": "admin-pw", "limited": "limited-pw"}))
        self.env = {
            **env,
            "AIRFLOW__CORE__AUTH_MANAGER": f"{__name__}.DashOkOnlyAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,limited:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
            "AIRFLOW__API__BASE_URL": self.base_url + "/",
            "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        }
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "api-server", "-p", str(self.port), "--host", "127.0.0.1"],
            env=self.env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait()

    def _wait(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api-server exited ({self.proc.returncode}):\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"api-server not up in {timeout}s:\n{self.log.read_text()[-4000:]}")

    def token(self, user: str, password: str) -> str:
        r = httpx.post(f"{self.base_url}/auth/token", json={"username": user, "password": password}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def get(self, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.base_url}/dataeng/{path}", headers=headers, timeout=120, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


SENSOR_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_dataeng.sensors.freshness import FreshnessSensor
with DAG({dag_id!r}, schedule="@hourly", start_date=datetime({y}, {m}, {d}, tzinfo=timezone.utc),
         catchup=False) as dag:
    FreshnessSensor(task_id="payments_fresh", conn_id="warehouse", table="raw.payments",
                    timestamp_column="updated_at", warn_after="1s", error_after={{"count": 3, "period": "day"}})
"""


def _serialize_dag_file(home: Path, dag_id: str, start: datetime, template: str = DAG_TEMPLATE) -> None:
    """Write a DAG file and sync it to the metadata DB the way the DAG processor would."""
    from devstack.airflow_env import serialize_dag_to_db

    path = home / "dags" / f"{dag_id}.py"
    path.write_text(template.format(dag_id=dag_id, y=start.year, m=start.month, d=start.day))
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # the DAG object, as the processor builds it
    dag = next(v for v in namespace.values() if getattr(v, "dag_id", None) == dag_id)
    serialize_dag_to_db(dag)


@pytest.fixture(scope="module")
def dbt_docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project's docs site, built by the build step ``parse_project --docs`` (real dbt, no database),
    published as a docs generate task publishes it, for a DAG the limited user may read and one it may not."""
    import importlib.util

    from airflow_provider_dataeng.dbt.docs import publish_docs
    from airflow_provider_dataeng.dbt.parse_project import parse_project

    root = tmp_path_factory.mktemp("dbt-docs")
    if importlib.util.find_spec("dbt") is None:  # dbt is an extra: without it there are no sites (tests skip)
        return root
    target = tmp_path_factory.mktemp("dbt-target")
    parse_project(REPO / "dbt_project", target_path=target, quiet=True, docs=True)
    for site in ("dash_ok_orders.docs", "dash_secret.docs"):
        publish_docs(target, root / site)
    return root


# The row_count check of each DAG's loads: a minimum only, a maximum only, both.
THRESHOLDS = {"dash_ok_orders": ">= 1", "dash_ok_payments": "<= 5000", "dash_secret": "50..5000"}


@pytest.fixture(scope="module")
def dashboard_api(airflow_home: Path, pg_cluster: Any, dbt_docs_dir: Path) -> Iterator[dict[str, Any]]:
    """A warehouse with a ledger for three DAGs (one the limited user may not read), a DAG with a freshness
    sensor on one of their tables, dbt docs sites, and an API server."""
    dbname = f"dash_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(dbname)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - 30 * DAY
    for dag_id in ("dash_ok_orders", "dash_ok_payments", "dash_secret"):
        _serialize_dag_file(airflow_home, dag_id, start)
    _serialize_dag_file(airflow_home, "dash_ok_monitor", start, SENSOR_DAG)
    holes = {"dash_ok_orders": {3, 4, 17}, "dash_ok_payments": {9}, "dash_secret": set()}
    with psycopg.connect(pg_cluster.dsn(dbname), autocommit=True) as conn:
        ensure_ledger(conn)
        conn.execute("create schema raw")
        for dag_id, table in (("dash_ok_orders", "orders"), ("dash_ok_payments", "payments"), ("dash_secret", "secret")):
            conn.execute(f"create table raw.{table} (id bigint)")
            for i in range(30):
                if i in holes[dag_id]:
                    continue
                lo = start + i * DAY
                status = "failed" if (dag_id, i) == ("dash_ok_orders", 10) else "rejected" if i == 20 else "published"
                write_ledger_row(conn, LedgerEntry(
                    target_schema="raw", target_table=table, mode="incremental_timestamp", status=status,
                    started_at=lo + DAY, pipeline=dag_id, task_id="extract_orders", partition_column="updated_at",
                    partition_start=lo, partition_end=lo + DAY, run_id=f"scheduled__{lo.isoformat()}", rows=100 + i,
                    checks=[{"check": "row_count", "observed": 100 + i, "threshold": THRESHOLDS[dag_id], "passed": True}],
                    error="source unreachable" if status == "failed" else None))
    env = {**os.environ, "AIRFLOW_CONN_WAREHOUSE": json.dumps(
        {"conn_type": "postgres", "host": pg_cluster.host, "port": pg_cluster.port, "login": "postgres", "schema": dbname}),
        "AIRFLOW__DATAENG__DBT_DOCS_DIRS": str(dbt_docs_dir)}
    server = ApiServer(airflow_home, env)
    try:
        yield {"server": server, "dsn": pg_cluster.dsn(dbname), "start": start, "today": today, "holes": holes,
               "docs": dbt_docs_dir,
               "admin": server.token("admin", "admin-pw"), "limited": server.token("limited", "limited-pw")}
    finally:
        server.stop()
        pg_cluster.drop_database(dbname)


@pytest.mark.timeout(600)
def test_unauthenticated_requests_are_refused(dashboard_api: dict[str, Any]) -> None:
    server = dashboard_api["server"]
    target = {"conn_id": "warehouse", "dag_id": "dash_ok_orders", "schema": "raw", "table": "orders"}
    for path, params in (("api/targets", None), ("api/target", target), ("api/formation", None), ("dashboard/", None)):
        assert server.get(path, params=params).status_code == 401, path
        forged = server.get(path, token="not-a-jwt", params=params)
        assert forged.status_code in (401, 403), path
    page = server.get("dashboard/")
    assert "Sign in" in page.text and "ledger" not in page.text.lower()
    html = server.get("dashboard/", token=dashboard_api["admin"])
    assert html.status_code == 200
    # Everything ships in the package: no script, style or image from elsewhere, every URL relative.
    urls = re.findall(r'(?:src|href)="([^"]*)"', html.text)
    assert urls and all(not u.startswith(("http:", "https:", "//", "/")) for u in urls), urls
    assert "<script>" in html.text and "<style>" in html.text
    # Cookie sessions (the UI's) work as well as bearer tokens.
    r = httpx.get(f"{server.base_url}/dataeng/api/targets", cookies={"_token": dashboard_api["admin"]}, timeout=120)
    assert r.status_code == 200


@pytest.mark.timeout(600)
def test_counts_equal_the_ledger_and_users_see_only_readable_dags(dashboard_api: dict[str, Any]) -> None:
    server = dashboard_api["server"]
    admin = server.get("api/targets", token=dashboard_api["admin"]).json()
    assert not admin["errors"], admin["errors"]
    by_dag = {t["dag_id"]: t for t in admin["targets"]}
    assert set(by_dag) == {"dash_ok_orders", "dash_ok_payments", "dash_secret"}
    with psycopg.connect(dashboard_api["dsn"]) as conn:
        ledger = dict(((p, s), n) for p, s, n in conn.execute(
            "select pipeline, status, count(*) from dataeng.load_ledger group by 1, 2").fetchall())
    for dag_id, t in by_dag.items():
        for status in ("published", "rejected", "failed"):
            assert t["counts"][status] == ledger.get((dag_id, status), 0), (dag_id, status)
        # Missing: expected by the timetable (30 daily intervals up to today) without a ledger row.
        assert t["counts"]["missing"] == len(dashboard_api["holes"][dag_id]), dag_id
        assert t["intervals"] == 30 and len(t["codes"]) == 30
        assert [i for i, c in enumerate(t["codes"]) if c == "M"] == sorted(dashboard_api["holes"][dag_id])

    limited = server.get("api/targets", token=dashboard_api["limited"]).json()
    assert {t["dag_id"] for t in limited["targets"]} == {"dash_ok_orders", "dash_ok_payments"}
    # The page carries its first overview (one request to render): the same, filtered the same way.
    page = server.get("dashboard/", token=dashboard_api["limited"]).text
    boot = json.loads(re.search(r'<script id="boot" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert [t["id"] for t in boot["targets"]] == [t["id"] for t in limited["targets"]]
    assert boot["targets"][0]["codes"] == limited["targets"][0]["codes"] and "dash_secret" not in page
    secret = {"conn_id": "warehouse", "dag_id": "dash_secret", "schema": "raw", "table": "secret"}
    assert server.get("api/target", token=dashboard_api["limited"], params=secret).status_code == 403
    assert server.get("api/target", token=dashboard_api["admin"], params=secret).status_code == 200


@pytest.mark.timeout(600)
def test_target_detail_lists_intervals_checks_and_freshness(dashboard_api: dict[str, Any]) -> None:
    server = dashboard_api["server"]
    params = {"conn_id": "warehouse", "dag_id": "dash_ok_orders", "schema": "raw", "table": "orders"}
    d = server.get("api/target", token=dashboard_api["limited"], params=params).json()
    start = dashboard_api["start"]
    assert [c["start"] for c in d["cells"]] == [(start + i * DAY).isoformat() for i in range(30)]
    cells = d["cells"]
    assert cells[10]["status"] == "failed" and "source unreachable" in cells[10]["detail"]
    assert cells[10]["run_id"] == f"scheduled__{(start + 10 * DAY).isoformat()}"
    assert cells[3]["status"] == "missing" and cells[3]["rows"] is None and cells[3]["run_id"] is None
    assert [c["rows"] for c in cells if c["status"] == "published"] == [
        100 + i for i in range(30) if i not in (3, 4, 17, 10, 20)]
    assert d["checks"][0]["checks"][0]["threshold"] == ">= 1"
    fresh = d["freshness"]
    assert fresh["latest"] == dashboard_api["today"].isoformat() and fresh["status"] == "fresh"
    assert d["row_count_band"] == [1.0, None]
    bands = {dag_id: server.get("api/target", token=dashboard_api["admin"], params={
        **params, "dag_id": dag_id, "table": table}).json()["row_count_band"]
        for dag_id, table in (("dash_ok_payments", "payments"), ("dash_secret", "secret"))}
    assert bands == {"dash_ok_payments": [None, 5000.0], "dash_secret": [50.0, 5000.0]}
    missing = server.get("api/target", token=dashboard_api["admin"], params={**params, "table": "nope"})
    assert missing.status_code == 404


@pytest.mark.timeout(600)
def test_freshness_uses_the_sensors_thresholds(dashboard_api: dict[str, Any]) -> None:
    """raw.payments has a FreshnessSensor (warn_after 1s, error_after 3 days): its latest interval is published,
    so the interval rule says fresh, but its lag (since today 00:00 UTC) is past the sensor's warn_after."""
    server = dashboard_api["server"]
    rows = {t["table"]: t for t in server.get("api/targets", token=dashboard_api["limited"]).json()["targets"]}
    pay, orders = rows["payments"]["freshness"], rows["orders"]["freshness"]
    assert pay["source"] == "sensor" and pay["sensor"] == {"dag_id": "dash_ok_monitor", "task_id": "payments_fresh"}
    assert (pay["warn_after_seconds"], pay["error_after_seconds"]) == (1.0, 3 * 86400.0)
    assert pay["status"] == "warn" and pay["behind_intervals"] == 0 and pay["lag_seconds"] > 1
    assert orders["source"] == "intervals" and orders["status"] == "fresh"
    params = {"conn_id": "warehouse", "dag_id": "dash_ok_payments", "schema": "raw", "table": "payments"}
    detail = server.get("api/target", token=dashboard_api["limited"], params=params).json()["freshness"]
    assert (detail["source"], detail["status"], detail["error_after_seconds"]) == ("sensor", "warn", 3 * 86400.0)


@pytest.mark.timeout(600)
def test_dbt_docs_are_served_with_a_link_per_model(dashboard_api: dict[str, Any]) -> None:
    server, docs = dashboard_api["server"], dashboard_api["docs"]
    if not any(docs.iterdir()):
        pytest.skip("dbt (the [dbt] extra) is not installed: no docs site to serve")
    page = f"{server.base_url}/dataeng/dashboard/"
    sites = {s["id"]: s for s in server.get("api/dbt", token=dashboard_api["admin"]).json()["sites"]}
    assert set(sites) == {"dash_ok_orders.docs", "dash_secret.docs"}
    limited = {s["id"]: s for s in server.get("api/dbt", token=dashboard_api["limited"]).json()["sites"]}
    assert set(limited) == {"dash_ok_orders.docs"}
    site = limited["dash_ok_orders.docs"]
    assert (site["dag_id"], site["task_id"]) == ("dash_ok_orders", "docs")
    manifest = json.loads((docs / "dash_ok_orders.docs" / "manifest.json").read_text())
    models = {uid for uid, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    nodes = {n["unique_id"]: n for n in site["nodes"]}
    assert models and models <= set(nodes)
    fct = nodes["model.dataeng_shop.fct_orders"]
    assert fct["relation"] == "analytics.fct_orders"
    assert fct["url"] == "../dbt-docs/dash_ok_orders.docs/#!/model/model.dataeng_shop.fct_orders"
    # raw.orders is a dbt source: the target row of the orders pipeline links to its page.
    assert [n["url"] for n in site["nodes"] if n["relation"] == "raw.orders"] == [
        "../dbt-docs/dash_ok_orders.docs/#!/source/source.dataeng_shop.raw.orders"]
    # The link serves the docs index (dbt's own page), and the files it loads, behind Airflow's auth.
    url = httpx.URL(page).join(fct["url"].split("#")[0])
    headers = {"Authorization": f"Bearer {dashboard_api['limited']}"}
    index = httpx.get(url, headers=headers, timeout=60)
    assert index.status_code == 200 and index.content == (docs / "dash_ok_orders.docs" / "index.html").read_bytes()
    assert "dbt" in index.text.lower() and index.headers["content-type"].startswith("text/html")
    served = httpx.get(url.join("manifest.json"), headers=headers, timeout=60)
    assert served.status_code == 200 and "model.dataeng_shop.fct_orders" in served.json()["nodes"]
    assert httpx.get(url.join("catalog.json"), headers=headers, timeout=60).status_code == 200
    assert httpx.get(url, timeout=60).status_code == 401
    assert httpx.get(url.join("manifest.json"), timeout=60).status_code == 401
    secret = httpx.URL(page).join("../dbt-docs/dash_secret.docs/")
    assert httpx.get(secret, headers=headers, timeout=60).status_code == 404
    admin = {"Authorization": f"Bearer {dashboard_api['admin']}"}
    assert httpx.get(secret, headers=admin, timeout=60).status_code == 200
    for name in ("dataeng_build_info.json", "..%2F..%2Fdash_secret.docs%2Findex.html", "logs"):
        assert httpx.get(url.join(name), headers=admin, timeout=60).status_code == 404, name


@pytest.mark.timeout(600)
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed")
def test_page_in_chromium_shows_sensor_freshness_and_opens_dbt_docs(dashboard_api: dict[str, Any]) -> None:
    """The page as a user sees it (headless Chromium, the UI's cookie): friendly times, the sensor's SLA on the
    payments row, and the dbt docs link of raw.orders (a dbt source) opening dbt's own docs page."""
    from playwright.sync_api import sync_playwright

    server = dashboard_api["server"]
    if not any(dashboard_api["docs"].iterdir()):
        pytest.skip("dbt (the [dbt] extra) is not installed: no docs site to open")
    artifacts = Path(os.environ.get("DATAENG_ARTIFACTS_DIR") or REPO / ".artifacts") / "dashboard"
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_cookies([{"name": "_token", "value": dashboard_api["limited"], "url": server.base_url + "/"}])
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server.base_url}/dataeng/dashboard/")
            page.wait_for_selector("body[data-ready=true][data-dbt-ready=true]")
            status = page.inner_text("#status")
            assert re.fullmatch(r"2 target\(s\), as of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", status), status
            payments = page.locator("tr[data-target='warehouse:dash_ok_payments:raw.payments']")
            assert re.fullmatch(r"warn: lag \S+", payments.locator(".badge").inner_text())
            assert "dash_ok_monitor.payments_fresh" in payments.locator(".badge").get_attribute("title")
            orders = page.locator("tr[data-target='warehouse:dash_ok_orders:raw.orders']")
            assert orders.locator(".badge").inner_text() == "fresh"
            link = orders.locator("a.dbt-link")
            assert link.get_attribute("href") == "../dbt-docs/dash_ok_orders.docs/#!/source/source.dataeng_shop.raw.orders"
            model = page.locator("#dbt a[data-node='model.dataeng_shop.fct_orders']")
            assert model.get_attribute("href") == "../dbt-docs/dash_ok_orders.docs/#!/model/model.dataeng_shop.fct_orders"
            page.screenshot(path=str(artifacts / "dashboard-sla-and-dbt.png"), full_page=True)
            orders.click()
            page.wait_for_selector("#detail:not([hidden]) .cell")
            assert page.inner_text("#freshness [data-field=sla]").startswith("no freshness sensor on this table")
            page.locator("#calendar .cell").nth(3).click()
            assert re.fullmatch(r"\d{4}-\d\d-\d\d 00:00 UTC \.\. \d{4}-\d\d-\d\d 00:00 UTC",
                                page.locator("#selection dd").first.inner_text())
            # the chart's legend: the row_count check's range as people write it, not "1..-"
            assert page.inner_text("#band-note").endswith("dashed: row_count \u2265 1"), page.inner_text("#band-note")
            page.screenshot(path=str(artifacts / "dashboard-detail.png"), full_page=True)
            assert not errors, errors
            for token, row, legend in ((dashboard_api["limited"], "dash_ok_payments:raw.payments", "\u2264 5,000"),
                                       (dashboard_api["admin"], "dash_secret:raw.secret", "50..5,000")):
                other = browser.new_context(viewport={"width": 1400, "height": 900})
                other.add_cookies([{"name": "_token", "value": token, "url": server.base_url + "/"}])
                view = other.new_page()
                view.goto(f"{server.base_url}/dataeng/dashboard/")
                view.wait_for_selector("body[data-ready=true]")
                view.locator(f"tr[data-target='warehouse:{row}']").click()
                view.wait_for_selector("#detail:not([hidden]) .cell")
                assert view.inner_text("#band-note").endswith(f"dashed: row_count {legend}"), view.inner_text("#band-note")
                view.screenshot(path=str(artifacts / f"dashboard-legend-{row.split(':')[0]}.png"), full_page=True)
                other.close()

            with context.expect_page() as opened:
                model.click()  # target=_blank: dbt's docs app in a new tab, loading manifest/catalog with the cookie
            docs = opened.value
            loaded: dict[str, int] = {}
            docs.on("response", lambda r: loaded.__setitem__(r.url.rsplit("/", 1)[-1].split("?")[0], r.status))
            docs.wait_for_load_state()
            assert docs.url.startswith(f"{server.base_url}/dataeng/dbt-docs/dash_ok_orders.docs/")
            docs.get_by_text("fct_orders").first.wait_for(timeout=60_000)
            docs.screenshot(path=str(artifacts / "dbt-docs-from-dashboard.png"))
            # The site's data came through the plugin with the user's cookie (dbt's page may also ask for its
            # own unrendered template URLs: those 404s are dbt's, not ours).
            assert loaded.get("manifest.json") == 200 and loaded.get("catalog.json") == 200, loaded
            context.close()
        finally:
            browser.close()


def test_pool_reuses_connections_and_replaces_dead_or_old_ones(pg_cluster: Any, pg_db: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_dataeng.dashboard.pool import WarehousePool

    monkeypatch.setenv("AIRFLOW_CONN_POOL_WH", json.dumps(
        {"conn_type": "postgres", "host": pg_cluster.host, "port": pg_cluster.port, "login": "postgres", "schema": pg_db}))
    pool = WarehousePool(max_age=60)
    pid = lambda conn: conn.execute("select pg_backend_pid()").fetchone()[0]  # noqa: E731
    with pool.connection("pool_wh") as conn:
        first = pid(conn)
        assert conn.read_only and conn.isolation_level == psycopg.IsolationLevel.REPEATABLE_READ
    with pool.connection("pool_wh") as conn:
        assert pid(conn) == first and pool.opened == 1
    with psycopg.connect(pg_cluster.dsn(pg_db), autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", [first])
    with pool.connection("pool_wh") as conn:  # the dead one is noticed before it is handed out
        second = pid(conn)
        assert second != first and pool.opened == 2
    with pytest.raises(psycopg.errors.UndefinedTable), pool.connection("pool_wh") as conn:
        conn.execute("select * from no_such_table")
    with pool.connection("pool_wh") as conn:  # a request that failed does not give its connection back
        assert pid(conn) != second and pool.opened == 3
    pool.max_age = 0
    with pool.connection("pool_wh") as conn:
        assert pool.opened == 4
    pool.clear()
