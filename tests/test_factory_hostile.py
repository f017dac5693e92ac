"""No config file can take the other DAGs down: hostile files become placeholders that keep alerting."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from airflow import __version__ as airflow_version

from airflow_provider_dataeng.factory.compat import timetable_expression
from devstack.airflow_env import run_dag
from devstack.webhook_receiver import webhook_receiver
from tests.fixtures.factory_configs import EMPTY, REPO_ROOT, dagbag, empty_pipeline, write_dags_folder
from tests.fixtures.hostile_configs import write_hostile

_DAG_TEST_RUNS_CALLBACKS = tuple(int(x) for x in airflow_version.split(".")[:2]) >= (3, 1)
GOOD = {f"good_{i}.yaml": empty_pipeline("a", "b", "c") for i in range(5)}


def test_hostile_corpus_good_dags_load_and_each_bad_file_is_its_placeholder(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, dict(GOOD, **{"bom.yaml": "\ufeff" + empty_pipeline("a")}))
    expected = write_hostile(folder / "configs")
    started = time.process_time()
    bag = dagbag(folder)
    elapsed = time.process_time() - started
    assert bag.import_errors == {}
    for name in GOOD:
        assert bag.dags[Path(name).stem].task_ids == ["a", "b", "c"]
    assert bag.dags["bom"].task_ids == ["a"]  # a UTF-8 byte order mark is fine
    for name, message in expected.items():
        dag = bag.dags[Path(name).stem]
        assert dag.task_ids == ["config_error"], name
        assert "config-error" in dag.tags
        assert message in dag.doc_md, (name, dag.doc_md)
        assert f"{name}:" in dag.description
    assert set(bag.dags) == {Path(n).stem for n in [*GOOD, *expected]} | {"bom"}
    # generous (CPU seconds; the benchmark measures the real figure): the bomb must not be expanded
    assert elapsed < 30


def test_hostile_messages_name_the_line(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {})
    write_hostile(folder / "configs")
    bag = dagbag(folder)
    assert "latin1.yaml:1: <root>: not valid UTF-8: byte 0xE9 at line 1, column 17" in bag.dags["latin1"].doc_md
    assert "duplicate_keys.yaml:5: <root>: invalid YAML: duplicate key 'schedule' (first defined on line 1)" \
        in bag.dags["duplicate_keys"].doc_md
    assert "alias_bomb.yaml:" in bag.dags["alias_bomb"].description


def test_budget_per_file_turns_a_slow_file_into_its_placeholder(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dags_folder(tmp_path, {"p.yaml": empty_pipeline(*[f"t{i}" for i in range(30)])})
    monkeypatch.setenv("AIRFLOW__DATAENG__CONFIG_FILE_BUDGET", "0.000001")
    doc = dagbag(folder).dags["p"].doc_md
    assert "over the 1e-06 s budget per config file ([dataeng] config_file_budget)" in doc


def test_unreadable_file_read_as_the_postgres_user(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests run as root, for whom chmod 000 denies nothing: the folder is parsed as the ``postgres`` user
    (the harness's unprivileged account) in a subprocess, with one file it may not read."""
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user")
    root = Path(tempfile.mkdtemp(prefix="dataeng-perm-"))
    try:
        os.chmod(root, 0o755)
        folder = write_dags_folder(root, {"good.yaml": empty_pipeline("a"), "secret.yaml": empty_pipeline("a")})
        for p in [root, *root.rglob("*")]:
            os.chown(p, user.pw_uid, user.pw_gid)
        os.chown(folder / "configs" / "secret.yaml", 0, 0)
        os.chmod(folder / "configs" / "secret.yaml", 0o600)
        script = (
            "import sys; sys.path.insert(0, sys.argv[2]);"
            "from airflow_provider_dataeng.factory.folder import build_dags;"
            "r = build_dags(sys.argv[1]);"
            "print(sorted(r.dags)); print(r.dags['secret'].doc_md)"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(HOME=str(root), AIRFLOW_HOME=str(root / "airflow_home"), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(
            ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
             sys.executable, "-c", script, str(folder / "configs"), str(REPO_ROOT)],
            capture_output=True, text=True, env=env, cwd=root, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "['good', 'secret']" in proc.stdout
        assert "secret.yaml:1: <root>: cannot read the file: permission denied" in proc.stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_files_vanishing_and_appearing_mid_scan(tmp_path: Path) -> None:
    from airflow_provider_dataeng.factory.folder import build_dags

    folder = write_dags_folder(tmp_path, GOOD)
    configs = folder / "configs"
    stop = threading.Event()

    def churn() -> None:  # what git-sync and editors do: files come and go while the folder is read
        i = 0
        while not stop.is_set():
            tmp = configs / f".churn_{i % 7}.tmp"  # written whole, then renamed in (atomic)
            try:
                tmp.write_text(empty_pipeline("x"))
                os.replace(tmp, configs / f"churn_{i % 7}.yaml")
                os.replace(configs / f"churn_{i % 7}.yaml", configs / f"churn_{(i + 3) % 7}.yaml")
                (configs / f"churn_{(i + 5) % 7}.yaml").unlink(missing_ok=True)
            except OSError:
                pass
            i += 1

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        for _ in range(15):
            result = build_dags(configs)
            for name in GOOD:
                assert result.dags[Path(name).stem].task_ids == ["a", "b", "c"]
            assert not any("churn" in str(p) for p in result.errors), result.errors
    finally:
        stop.set()
        thread.join()


def test_placeholder_keeps_the_schedule_and_its_failing_task_pages(tmp_path: Path) -> None:
    """A pipeline that breaks keeps running on its schedule, and each run's failure calls its notifier."""
    with webhook_receiver() as hook:
        folder = write_dags_folder(tmp_path, {"orders.yaml": f"""\
            schedule: "0 3 * * *"
            timezone: Europe/Berlin
            tags: [shop]
            notifications:
              on_failure:
                notifier: airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier
                kwargs: {{webhook_url: "{hook.url}/page", raise_on_error: true}}
            tasks:
              a: {{operator: {EMPTY}, retires: 3}}
            """})
        dag = dagbag(folder).dags["orders"]
        assert dag.task_ids == ["config_error"]
        assert timetable_expression(dag.timetable) == "0 3 * * *" and "Europe/Berlin" in str(getattr(dag.timetable, "timezone", None) or dag.timetable._timezone)
        assert dag.start_date.isoformat() == "2025-12-31T23:00:00+00:00"  # defaults.yaml's, in Berlin time
        assert set(dag.tags) == {"config-error", "shop"}
        assert "keeps the pipeline's schedule" in dag.doc_md
        task = dag.get_task("config_error")
        (notifier,) = task.on_failure_callback
        assert type(notifier).__name__ == "SlaWebhookNotifier"
        assert run_dag(dag) == {"config_error": "failed"}
        if not _DAG_TEST_RUNS_CALLBACKS:  # Airflow 3.0's dag.test() skips task callbacks (the scheduler runs them)
            return
        deadline = time.monotonic() + 30
        while not hook.payloads() and time.monotonic() < deadline:
            time.sleep(0.2)
        (payload,) = hook.payloads()
        assert "config_error" in str(payload) and "orders" in str(payload)


def test_placeholder_of_an_unreadable_file_keeps_the_defaults_schedule(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {}, defaults='start_date: 2026-01-01\nschedule: "@hourly"\n')
    (folder / "configs" / "p.yaml").write_bytes("tasks: {é: 1}".encode("latin-1"))
    dag = dagbag(folder).dags["p"]
    assert timetable_expression(dag.timetable) == "0 * * * *"


def test_validate_cli_reports_hostile_files_without_hanging(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    expected = write_hostile(configs)
    proc = subprocess.run([sys.executable, "-m", "airflow_provider_dataeng.factory.cli", "validate", "--no-build",
                           str(configs)], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    for name, message in expected.items():
        assert f"{name}:" in proc.stdout and message in proc.stdout, name
