"""Ingestion dashboard in a real browser (issue 17 item 5): headless Chromium (Debian's ``chromium``, driven by
Playwright; nothing downloaded) against the session's real Airflow (``airflow_stack``: scheduler, DAG
processor, triggerer, API server), over a ledger written by real extract runs under the scheduler.

Screenshots are saved to ``$DATAENG_ARTIFACTS_DIR`` (default ``.artifacts/dashboard/`` in the repository).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("DATAENG_ARTIFACTS_DIR") or Path(__file__).resolve().parents[1] / ".artifacts") / "dashboard"
DAY = timedelta(days=1)
DAYS = 8
HOLES = (2, 5)  # intervals never run: the dashboard must show them missing
REJECTED = DAYS - 1  # the last day has too few rows for the row_count check

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                "(scripts/system_deps.sh installs it)")

DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow_provider_dataeng.operators.extract import IdempotentExtractOperator

with DAG({dag_id!r}, schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
         start_date=datetime({y}, {m}, {d}, tzinfo=timezone.utc), catchup=False, max_active_runs=8,
         default_args={{"retries": 0}}):
    IdempotentExtractOperator(
        task_id="extract_orders",
        source_conn_id="shop_source",
        target_conn_id="warehouse",
        source_sql="select * from {source} where updated_at >= '{{{{ data_interval_start }}}}'::timestamptz"
                   " and updated_at < '{{{{ data_interval_end }}}}'::timestamptz",
        target_table="raw.{dag_id}",
        checks=[{{"check": "row_count", "min": 3}}],
    )
"""


def _utc_iso(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).isoformat()


def _rows_on(day: int) -> int:
    return 2 if day == REJECTED else 4 + day


@pytest.fixture(scope="module")
def loaded(airflow_stack: Any, source_cluster: Any, pg_cluster: Any) -> Iterator[dict[str, Any]]:
    """A daily extract DAG run by the scheduler for every day of the last week but the holes."""
    dag_id = f"dash_browser_{uuid.uuid4().hex[:8]}"
    source = f"orders_{dag_id}"
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - DAYS * DAY
    with psycopg.connect(source_cluster.dsn("shop"), autocommit=True) as conn:
        conn.execute(f'create table "{source}" (id int primary key, amount numeric, updated_at timestamptz not null)')
        rows, next_id = [], 1
        for day in range(DAYS):
            for k in range(_rows_on(day)):
                rows.append((next_id, 10 + k, first + day * DAY + timedelta(hours=1 + k)))
                next_id += 1
        with conn.cursor() as cur:
            cur.executemany(f'insert into "{source}" values (%s, %s, %s)', rows)
    airflow_stack.add_dag_file(dag_id, DAG.format(dag_id=dag_id, source=source, y=first.year, m=first.month,
                                                  d=first.day))
    airflow_stack.wait_dag(dag_id, timeout=120)
    # Unpaused, the scheduler itself runs the latest interval (catchup=False): the last day. The other days
    # are triggered with the scheduler's convention for data-interval timetables (logical date = start).
    wanted = {(first + day * DAY).isoformat() for day in range(DAYS) if day not in HOLES}
    for day in range(DAYS - 1):
        if day in HOLES:
            continue
        lo = first + day * DAY
        body = {"logical_date": lo.isoformat(), "data_interval_start": lo.isoformat(),
                "data_interval_end": (lo + DAY).isoformat(), "conf": {}}
        response = airflow_stack.api("POST", f"dags/{dag_id}/dagRuns", json=body)
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + 120
    while True:
        runs = {_utc_iso(r["data_interval_start"]): r["dag_run_id"] for r in airflow_stack.runs(dag_id)}
        if set(runs) >= wanted or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(runs) == wanted, sorted(runs)
    states = {day: airflow_stack.wait_run(dag_id, run_id, timeout=400) for day, run_id in runs.items()}
    assert states[(first + REJECTED * DAY).isoformat()] == "failed", states  # rejected: the task fails
    assert sorted(states.values()) == ["failed"] + ["success"] * (len(wanted) - 1), states
    yield {"dag_id": dag_id, "first": first, "today": today, "stack": airflow_stack, "source": source,
           "source_dsn": source_cluster.dsn("shop"),
           "dsn": pg_cluster.dsn("warehouse"), "target": f"warehouse:{dag_id}:raw.{dag_id}"}


def _ledger(dsn: str, dag_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select partition_start, status, rows, run_id from dataeng.load_ledger where pipeline = %s order by id",
            [dag_id]).fetchall()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _signed_in(browser: Any, stack: Any) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": "_token", "value": stack.token, "url": stack.base_url + "/"}])
    return context


@pytest.mark.timeout(900)
def test_page_shows_the_ledger_and_its_buttons_fill_the_holes(loaded: dict[str, Any], browser: Any) -> None:
    stack, dag_id, first = loaded["stack"], loaded["dag_id"], loaded["first"]
    ledger = _ledger(loaded["dsn"], dag_id)
    by_status = {s: sum(1 for row in ledger if row[1] == s) for s in ("published", "rejected", "failed")}
    assert by_status == {"published": DAYS - len(HOLES) - 1, "rejected": 1, "failed": 0}, ledger

    context = _signed_in(browser, stack)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = page.goto(f"{stack.base_url}/dataeng/dashboard/?target={loaded['target']}")
    assert response is not None and response.status == 200
    page.wait_for_selector("body[data-ready=true]")
    row = page.locator(f"tr[data-target='{loaded['target']}']")
    for status, n in (*by_status.items(), ("missing", len(HOLES))):
        assert row.locator(f"[data-count={status}]").inner_text() == str(n), status
    page.wait_for_selector("#detail:not([hidden]) .cell")
    cells = page.locator("#calendar .cell")
    assert cells.count() == DAYS
    statuses = [cells.nth(i).get_attribute("data-status") for i in range(DAYS)]
    assert statuses == ["missing" if d in HOLES else "rejected" if d == REJECTED else "published"
                        for d in range(DAYS)]
    assert [cells.nth(i).get_attribute("data-start") for i in range(DAYS)] == [
        (first + d * DAY).isoformat() for d in range(DAYS)]
    # Rows per interval as the ledger has them (the chart's dots), and links to the run and its task log.
    dots = page.locator("#chart circle")
    ledger_rows = sorted(r[2] for r in ledger)
    assert sorted(int(dots.nth(i).get_attribute("data-rows")) for i in range(dots.count())) == ledger_rows
    cells.nth(0).click()
    href = page.locator("#selection dd a").first.get_attribute("href")
    assert href.startswith(f"{stack.base_url}/dags/{dag_id}/runs/"), href
    log_href = page.locator("#selection dd a").nth(1).get_attribute("href")
    assert log_href.endswith("/tasks/extract_orders"), log_href
    assert page.locator("#freshness .badge").inner_text().startswith("warn")  # the last day was rejected
    page.screenshot(path=str(ARTIFACTS / "dashboard-ledger.png"), full_page=True)

    # Fill the first hole from the page: a backfill of that one interval, as the signed-in user.
    hole = HOLES[0]
    cells.nth(hole).click()
    button = page.locator("#fill")
    assert button.inner_text() == "Backfill this interval"
    button.click()
    page.wait_for_selector("#actions li[data-done]", timeout=30_000)
    page.wait_for_selector(f"#calendar .cell[data-index='{hole}'][data-status=published]", timeout=400_000)
    page.wait_for_selector("#actions li[data-done=true]", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "dashboard-after-backfill.png"), full_page=True)
    assert not page.locator("#actions .fail").count(), page.locator("#actions").inner_text()

    filled = [r for r in _ledger(loaded["dsn"], dag_id) if r[0] == first + hole * DAY]
    assert [(r[1], r[2]) for r in filled] == [("published", _rows_on(hole))], filled
    backfills = stack.api("GET", "backfills", params={"dag_id": dag_id}).json()["backfills"]
    assert len(backfills) == 1 and backfills[0]["from_date"].startswith((first + hole * DAY).date().isoformat())
    run = stack.run(dag_id, filled[0][3])
    assert run["run_type"] == "backfill" and run["state"] == "success"
    # The rejected day: its source gets the rows it lacked; "Clear and re-run this run" re-runs that DAG run.
    rejected_start = first + REJECTED * DAY
    with psycopg.connect(loaded["source_dsn"], autocommit=True) as conn:
        conn.execute(f'insert into "{loaded["source"]}" values (100001, 1, %s), (100002, 2, %s)',
                     [rejected_start + timedelta(hours=20), rejected_start + timedelta(hours=21)])
    cells.nth(REJECTED).click()
    assert button.inner_text() == "Clear and re-run this run"
    rejected_run = [r for r in _ledger(loaded["dsn"], dag_id) if r[0] == rejected_start][0][3]
    button.click()
    page.wait_for_selector(f"#calendar .cell[data-index='{REJECTED}'][data-status=published]", timeout=400_000)
    reloaded = [r for r in _ledger(loaded["dsn"], dag_id) if r[0] == rejected_start]
    assert [(r[1], r[2], r[3]) for r in reloaded] == [("rejected", 2, rejected_run), ("published", 4, rejected_run)]
    assert page.locator("#freshness .badge").inner_text() == "fresh"

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert row.locator("[data-count=missing]").inner_text() == str(len(HOLES) - 1)
    assert row.locator("[data-count=rejected]").inner_text() == "0"
    assert not errors, errors
    context.close()


@pytest.mark.timeout(600)
def test_unauthenticated_browser_is_refused_and_the_ui_shows_the_page(loaded: dict[str, Any], browser: Any) -> None:
    stack = loaded["stack"]
    anonymous = browser.new_context()
    page = anonymous.new_page()
    response = page.goto(f"{stack.base_url}/dataeng/dashboard/")
    assert response is not None and response.status == 401
    assert "Sign in" in page.inner_text("body")
    api = page.request.get(f"{stack.base_url}/dataeng/api/targets")
    assert api.status == 401
    page.screenshot(path=str(ARTIFACTS / "dashboard-unauthenticated.png"))
    anonymous.close()

    # Inside Airflow's UI: the "Ingestion" entry (external view) shows the page in a frame.
    context = _signed_in(browser, stack)
    page = context.new_page()
    page.goto(f"{stack.base_url}/plugin/dataeng-ingestion")
    frame = page.frame_locator("iframe[title=Ingestion]")
    frame.locator(f"tr[data-target='{loaded['target']}']").wait_for(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "dashboard-in-airflow-ui.png"))
    context.close()
