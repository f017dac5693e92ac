"""The main job end to end: ``python -m demo --plain --days 2`` (a shortened ``make demo``).

Real parts only: a source PostgreSQL with the generated shop, a plain warehouse cluster, a real Airflow
(scheduler, DAG processor, triggerer, API server) running every example pipeline in dags/configs, dbt
building the marts when the extracts' asset events trigger it, the monitoring checks.
What users rely on: every interval is published with its checks, the rerun of an interval leaves its
partitions byte-identical, dbt builds the models, the checks report, and no server survives the demo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    demo_dir = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_", "AIRFLOW__")) and k != "PYTHONDONTWRITEBYTECODE"}
    env["DEMO_DIR"] = str(demo_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "demo", "--plain", "--days", "2"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=1500, check=False,
    )
    report_path = demo_dir / "report.json"
    assert report_path.exists(), f"no report (rc={proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc, json.loads(report_path.read_text()), demo_dir


@pytest.mark.slow
def test_demo_succeeds_and_prints_the_summary(demo_run: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    proc, report, _ = demo_run
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    out = proc.stdout
    assert "DEMO OK" in out
    for heading in ("Summary: pipeline runs per interval", "Idempotency: interval", "Checks (monitoring DAG)"):
        assert heading in out
    assert report["ok"] and report["warehouse"] == "plain"
    failed = [r for r in report["runs"] if not r["ok"]]
    assert not failed, f"failed runs: {[(r['dag_id'], r['interval_start'], r['tasks']) for r in failed]}"
    # It ends by saying where the ingestion dashboard is once `make airflow` runs (issue 17 item 5).
    from demo.standalone import dashboard_urls

    last = "\n".join(out.rstrip().splitlines()[-2:])
    assert "make airflow" in last and dashboard_urls()[0] in last, last


@pytest.mark.slow
def test_every_interval_is_published_with_passing_checks(demo_run: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    _, report, _ = demo_run
    extract = [p for p in report["pipelines"] if p["kind"] == "extract"]
    assert {t for p in extract for t in p["targets"]} >= {"raw.orders", "raw.customers", "raw.products",
                                                           "raw.payments"}
    for p in extract:
        for target in p["targets"]:
            for start, _end in report["intervals"]:
                rows = [e for e in report["ledger"] if e["target"] == target and e["partition_start"] == start]
                assert rows, f"{target} {start}: no ledger row"
                assert all(e["status"] == "published" for e in rows), rows
                assert all(c["passed"] for e in rows for c in e["checks"]), rows
    # The snapshots and the order changes are never empty; all payments land somewhere.
    published = [e for e in report["ledger"] if e["status"] == "published"]
    for target in ("raw.orders", "raw.customers", "raw.products"):
        assert all(e["rows"] > 0 for e in published if e["target"] == target), target
    assert sum(e["rows"] for e in published if e["target"] == "raw.payments") > 0


@pytest.mark.slow
def test_rerun_of_an_interval_is_identical(demo_run: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    _, report, _ = demo_run
    pairs = report["idempotency"]
    targets = {t for p in report["pipelines"] if p["kind"] == "extract" for t in p["targets"]}
    assert {p["target"] for p in pairs} == targets
    for pair in pairs:
        assert pair["after"] == pair["before"], pair
    assert any(pair["before"][0] > 0 for pair in pairs), "every rerun partition is empty: nothing was compared"
    reruns = [r for r in report["runs"] if r["label"] == "rerun"]
    assert len(reruns) == len([p for p in report["pipelines"] if p["kind"] == "extract"])
    assert all(r["ok"] for r in reruns)


@pytest.mark.slow
def test_dbt_builds_the_marts_and_checks_report(demo_run: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    _, report, _ = demo_run
    dbt_runs = [r for r in report["runs"] if any(p["dag_id"] == r["dag_id"] and p["kind"] == "dbt"
                                                 for p in report["pipelines"])]
    assert dbt_runs, "no dbt pipeline ran"
    manifest = json.loads((REPO / "dbt_project" / "target" / "manifest.json").read_text())
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    assert all(r["dbt_models"] == len(models) for r in dbt_runs), dbt_runs  # every run builds every model
    assert all(r["dbt_tests"] > 0 for r in dbt_runs) and sum(r["dbt_failed"] for r in dbt_runs) == 0
    checks = [r for r in report["runs"] if any(p["dag_id"] == r["dag_id"] and p["kind"] == "checks"
                                               for p in report["pipelines"])]
    assert checks and all(r["ok"] for r in checks)
    freshness = [v for r in checks for v in r["xcom"].values() if isinstance(v, dict) and "lag_seconds" in v]
    assert freshness and all(v["status"] in ("fresh", "warn") for v in freshness)


@pytest.mark.slow
def test_no_server_survives_the_demo(demo_run: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    _, report, demo_dir = demo_run
    airflow_home = f"AIRFLOW_HOME={demo_dir / 'airflow'}".encode()
    airflow = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _environ_has(p, airflow_home)]
    assert not airflow, f"Airflow processes of the demo still run: {airflow}"
    assert report["data_dirs"], "the report names no server directories"
    leftovers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(d in cmdline for d in report["data_dirs"]):
            leftovers.append(cmdline)
    assert not leftovers, leftovers
    assert not any(Path(d).exists() for d in report["data_dirs"]), "server directories were not removed"


@pytest.mark.slow
def test_the_deployment_ran_it_scheduled_runs_and_asset_triggered_dbt(
    demo_run: tuple[subprocess.CompletedProcess, dict, Path],
) -> None:
    """What a deployment does: the scheduler's own run of the last complete day, dbt_marts from asset events."""
    _, report, _ = demo_run
    last_start = report["intervals"][-1][0]
    extract = {t for p in report["pipelines"] if p["kind"] == "extract" for t in [p["dag_id"]]}
    scheduled = {r["dag_id"] for r in report["runs"]
                 if r["run_type"] == "scheduled" and r["interval_start"] == last_start and r["ok"]}
    assert scheduled == extract, report["runs"]
    dbt = [r for r in report["runs"] if r["dag_id"] == "dbt_marts"]
    assert dbt and all(r["run_type"] == "asset_triggered" and r["ok"] for r in dbt), dbt
    assert all(r["dbt_models"] > 0 for r in dbt), dbt


def _environ_has(proc: Path, entry: bytes) -> bool:
    try:
        return entry in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
