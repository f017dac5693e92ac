"""Dashboard benchmark: the page's API call and a full page load over a 50 x 1,000 interval ledger.

Run: ``.venv/bin/python benchmarks/dashboard.py [--targets 50] [--intervals 1000] [--repeat 15]``.
Starts a throwaway warehouse cluster and fills ``dataeng.load_ledger`` with ``targets x intervals`` rows
(daily intervals up to today; every 50th interval left out and another loaded twice, every 97th rejected,
every 89th failed), one
DAG per target (daily ``CronDataIntervalTimetable``) serialized into a fresh Airflow metadata DB, and a real
``airflow api-server`` with the dashboard plugin. Then, in one run:

- ``api_ms``: median wall time of ``GET /dataeng/api/targets`` (every target's counts, one letter per
  interval and freshness: the call behind the page), after one warm-up call (reported as ``cold_api_ms``:
  the first call computes the expected intervals from the timetable and caches them);
- ``changed_api_ms`` (progress lines and the JSON): the same call when one new ledger row arrived since the
  previous call (what a page polling during a backfill sees): the new rows are merged, one target recomputed;
- ``page_load_ms``: median time from navigation to the rendered overview (50 rows, their calendar strips)
  in headless Chromium (Debian's ``chromium``, driven by Playwright), one fresh page per sample, as the
  driver sees it; ``page_ready_ms``: the same in the page's own clock (navigation start to the ``dataeng-ready``
  mark), with its parts ``page_html_ms`` (the HTML received: it carries the first overview) and
  ``page_api_ms`` (a separate overview request, 0 when the page needed none);
- ``detail_api_ms``: median time of ``GET /dataeng/api/target`` (one target's 1,000 cells, checks and
  freshness: what a click on a row loads), and ``overview_kb`` / ``detail_kb``: the responses' sizes as sent
  (gzip).

The counts the API returns are checked against the ledger before timing. The last line is one JSON object:
``{"targets": 50, "intervals": 1000, "api_ms": .., "page_load_ms": .., "cold_api_ms": .., "changed_api_ms": .., ...}``.
The screenshot of the overview goes to ``$DATAENG_ARTIFACTS_DIR`` (default ``.artifacts/``).
Targets: api_ms <= 300, page_load_ms <= 2000.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from devstack.airflow_env import configure_airflow_home, migrate_metadata_db
from devstack.pg import PgCluster, free_port

HOME = Path(tempfile.mkdtemp(prefix="dataeng-bench-dashboard-"))
ENV = configure_airflow_home(HOME, dags_folder=HOME / "dags")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DAG_SOURCE = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow.providers.standard.operators.empty import EmptyOperator
for i in range({targets}):
    with DAG(f"bench_dash_{{i:03d}}", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
             start_date=datetime({y}, {m}, {d}, tzinfo=timezone.utc), catchup=False) as dag:
        EmptyOperator(task_id="extract")
    globals()[dag.dag_id] = dag
"""


IN_PAGE_TIMES = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const api = performance.getEntriesByType("resource").find((e) => e.name.includes("/api/targets"));
  const ready = performance.getEntriesByName("dataeng-ready")[0];
  return {page_ready_ms: ready ? ready.startTime : null, page_html_ms: nav ? nav.responseEnd : null,
          page_api_ms: api ? api.responseEnd - api.startTime : 0};
}"""


def _wire_kb(base: str, token: str, path: str, params: dict[str, str] | None = None) -> float:
    """Size of a response as the browser receives it (gzip), in kB."""
    import httpx

    with httpx.Client(base_url=base, timeout=300) as client, client.stream(
            "GET", path, params=params, headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"}) as r:
        r.raise_for_status()
        return round(sum(len(chunk) for chunk in r.iter_raw()) / 1024, 1)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fill_ledger(dsn: str, targets: int, intervals: int, first: datetime) -> dict[str, dict[str, int]]:
    """The ledger rows, written in one statement; returns per DAG the intervals by their newest row's status."""
    import psycopg

    from airflow_provider_dataeng.publish.ledger import ensure_ledger

    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_ledger(conn)
        conn.execute("create schema raw")
        for t in range(targets):
            conn.execute(f"create table raw.bench_{t:03d} (id bigint)")
        conn.execute(
            """
            insert into dataeng.load_ledger (pipeline, task_id, target_schema, target_table, partition_column,
                partition_start, partition_end, run_id, mode, rows, bytes, checks, status, error, started_at,
                finished_at)
            select format('bench_dash_%%s', lpad(t::text, 3, '0')), 'extract', 'raw', format('bench_%%s', lpad(t::text, 3, '0')),
                   'updated_at', %(first)s + i * interval '1 day', %(first)s + (i + 1) * interval '1 day',
                   'scheduled__' || to_char(%(first)s + i * interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS+00:00'),
                   'incremental_timestamp', 1000 + (i * 37 + t * 11) %% 400, 65536,
                   jsonb_build_array(jsonb_build_object('check', 'row_count', 'observed', 1000, 'threshold', '>= 1', 'passed', true),
                                     jsonb_build_object('check', 'drift', 'observed', '+1.00%%', 'threshold', '+-50.0%%', 'passed', true)),
                   case when i %% 97 = 5 then 'rejected' when i %% 89 = 7 then 'failed' else 'published' end,
                   case when i %% 89 = 7 and i %% 97 <> 5 then 'source unreachable' end,
                   %(first)s + (i + 1) * interval '1 day', %(first)s + (i + 1) * interval '1 day' + interval '5 minutes'
            from generate_series(0, %(targets)s - 1) t, generate_series(0, %(intervals)s - 1) i,
                 generate_series(1, case when i %% 50 = 30 then 2 else 1 end) attempt
            where i %% 50 <> 25
            """,
            {"first": first, "targets": targets, "intervals": intervals},
        )
        conn.execute("vacuum analyze dataeng.load_ledger")
        counts: dict[str, dict[str, int]] = {}
        for pipeline, status, n in conn.execute(
                "select pipeline, status, count(*) from (select distinct on (pipeline, partition_start) pipeline,"
                " status from dataeng.load_ledger order by pipeline, partition_start, id desc) newest"
                " group by 1, 2").fetchall():
            counts.setdefault(pipeline, {})[status] = n
        return counts


def start_api_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = HOME / "api-server.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("airflow")), "api-server", "-p", str(port), "--host", "127.0.0.1"],
        env={**env, "AIRFLOW__API__BASE_URL": base + "/"}, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"api-server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"api-server not up:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--intervals", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--page-repeat", type=int, default=7)
    args = parser.parse_args()

    import httpx
    import psycopg
    from playwright.sync_api import sync_playwright

    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=args.intervals)
    cluster = PgCluster.create("bench-dashboard")
    proc = None
    try:
        cluster.create_database("warehouse")
        say(f"ledger: {args.targets} targets x {args.intervals} daily intervals")
        counts = fill_ledger(cluster.dsn("warehouse"), args.targets, args.intervals, first)
        with psycopg.connect(cluster.dsn("warehouse")) as conn:
            say(f"ledger rows: {conn.execute('select count(*) from dataeng.load_ledger').fetchone()[0]}")

        (HOME / "dags").mkdir(exist_ok=True)
        (HOME / "dags" / "bench_dashboard.py").write_text(
            DAG_SOURCE.format(targets=args.targets, y=first.year, m=first.month, d=first.day))
        migrate_metadata_db()
        subprocess.run([str(Path(sys.executable).with_name("airflow")), "dags", "reserialize"], check=True,
                       env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        passwords = HOME / "passwords.json"
        passwords.write_text(json.dumps({"admin": "bench-pw"}))
        env = {
            **os.environ, **ENV,
            "AIRFLOW_CONN_WAREHOUSE": json.dumps({"conn_type": "postgres", "host": cluster.host, "port": cluster.port,
                                                  "login": "postgres", "schema": "warehouse"}),
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        say("starting airflow api-server")
        proc, base = start_api_server(env)
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": "bench-pw"}, timeout=60).json()[
            "access_token"]
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=300)

        t0 = time.perf_counter()
        body = client.get("/dataeng/api/targets").raise_for_status().json()
        cold_ms = (time.perf_counter() - t0) * 1000
        assert not body["errors"], body["errors"]
        assert len(body["targets"]) == args.targets, len(body["targets"])
        for t in body["targets"]:
            assert t["intervals"] == args.intervals, (t["dag_id"], t["intervals"])
            for status in ("published", "rejected", "failed"):
                assert t["counts"][status] == counts[t["dag_id"]].get(status, 0), (t["dag_id"], status)
            assert t["counts"]["missing"] == args.intervals - sum(counts[t["dag_id"]].values())
        say(f"cold API call: {cold_ms:.0f} ms; counts equal the ledger's")

        samples = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            client.get("/dataeng/api/targets").raise_for_status()
            samples.append((time.perf_counter() - t0) * 1000)
        api_ms = statistics.median(samples)
        say(f"api_ms median of {args.repeat}: {api_ms:.0f} (min {min(samples):.0f}, max {max(samples):.0f})")
        overview_kb = _wire_kb(base, token, "/dataeng/api/targets")

        detail_params = {"conn_id": "warehouse", "dag_id": "bench_dash_007", "schema": "raw", "table": "bench_007"}
        detail = client.get("/dataeng/api/target", params=detail_params).raise_for_status().json()
        assert len(detail["cells"]) == args.intervals, len(detail["cells"])
        detail_samples = []
        for _ in range(max(3, args.repeat // 3)):
            t0 = time.perf_counter()
            client.get("/dataeng/api/target", params=detail_params).raise_for_status()
            detail_samples.append((time.perf_counter() - t0) * 1000)
        detail_ms = statistics.median(detail_samples)
        detail_kb = _wire_kb(base, token, "/dataeng/api/target", detail_params)
        say(f"detail_api_ms median: {detail_ms:.0f}; sizes as sent: overview {overview_kb} kB, detail {detail_kb} kB")

        changed = []
        with psycopg.connect(cluster.dsn("warehouse"), autocommit=True) as conn:
            for k in range(args.repeat):
                conn.execute(
                    "insert into dataeng.load_ledger (pipeline, task_id, target_schema, target_table, partition_start,"
                    " partition_end, mode, rows, status, started_at) select pipeline, task_id, target_schema,"
                    " target_table, partition_start, partition_end, mode, rows + 1, 'published', now()"
                    " from dataeng.load_ledger where id = %s", [1 + k * 997])
                t0 = time.perf_counter()
                client.get("/dataeng/api/targets").raise_for_status()
                changed.append((time.perf_counter() - t0) * 1000)
        changed_ms = statistics.median(changed)
        say(f"changed_api_ms median of {args.repeat}: {changed_ms:.0f}")

        page_samples, in_page = [], []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_cookies([{"name": "_token", "value": token, "url": base + "/"}])
            for _ in range(args.page_repeat):
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(f"{base}/dataeng/dashboard/")
                page.wait_for_selector("body[data-ready=true]")
                rows = page.locator("#targets tbody tr").count()
                page_samples.append((time.perf_counter() - t0) * 1000)
                assert rows == args.targets, rows
                in_page.append(page.evaluate(IN_PAGE_TIMES))
                page.close()
            artifacts = Path(os.environ.get("DATAENG_ARTIFACTS_DIR") or Path(__file__).resolve().parents[1] / ".artifacts")
            artifacts.mkdir(parents=True, exist_ok=True)
            shot = artifacts / "dashboard-benchmark.png"
            page = context.new_page()
            page.goto(f"{base}/dataeng/dashboard/")
            page.wait_for_selector("body[data-ready=true]")
            page.screenshot(path=str(shot))
            browser.close()
        page_ms = statistics.median(page_samples)
        parts = {k: round(statistics.median(s[k] for s in in_page), 1) if all(s[k] is not None for s in in_page) else None
                 for k in ("page_ready_ms", "page_html_ms", "page_api_ms")}
        say(f"page_load_ms median of {args.page_repeat}: {page_ms:.0f}; in the page: {parts}; screenshot {shot}")
    finally:
        if proc is not None:
            stop(proc)
        cluster.destroy()
    print(json.dumps({"targets": args.targets, "intervals": args.intervals, "api_ms": round(api_ms, 1),
                      "page_load_ms": round(page_ms, 1), "cold_api_ms": round(cold_ms, 1),
                      "changed_api_ms": round(changed_ms, 1), **parts, "detail_api_ms": round(detail_ms, 1),
                      "overview_kb": overview_kb, "detail_kb": detail_kb, "load_avg_1m": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
