"""``dataeng validate`` / ``dataeng render`` (console script and ``airflow dataeng``), JSON Schema up to date."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from airflow_provider_dataeng.factory import cli
from airflow_provider_dataeng.factory.compat import provider_cli_supported
from airflow_provider_dataeng.factory.schema import SCHEMA_DIR, schema_text, shipped
from tests.fixtures.factory_configs import DEFAULTS, EMPTY, EXAMPLE_CONFIGS, REPO_ROOT, empty_pipeline

BIN = Path(sys.executable).parent


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "_AIRFLOW_PARSING_CONTEXT_DAG_ID"}
    return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)


@pytest.fixture
def bad_dir(tmp_path: Path) -> Path:
    (tmp_path / "defaults.yaml").write_text(DEFAULTS)
    (tmp_path / "good.yaml").write_text(empty_pipeline("a", "b"))
    (tmp_path / "typo.yaml").write_text(empty_pipeline("a", "b").replace("  b:\n", "  b:\n    dependson: [a]\n"))
    (tmp_path / "cycle.yaml").write_text(f"tasks:\n  a: {{operator: {EMPTY}, depends_on: b}}\n"
                                         f"  b: {{operator: {EMPTY}, depends_on: a}}\n")
    (tmp_path / "garbage.yaml").write_text("tasks: [unclosed\n")
    return tmp_path


def test_validate_clean_examples_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(EXAMPLE_CONFIGS)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "OK: 6 pipeline file(s) valid" in captured.err


def test_validate_reports_every_error_as_file_line_path(bad_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(bad_dir)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"{bad_dir / 'typo.yaml'}:6: tasks.b.dependson: unknown key 'dependson'" in lines[-1] or any(
        line.startswith(f"{bad_dir / 'typo.yaml'}:6: tasks.b.dependson: unknown key") for line in lines)
    assert any(line.startswith(f"{bad_dir / 'cycle.yaml'}:2: tasks.a.depends_on: dependency cycle") for line in lines)
    assert any(line.startswith(f"{bad_dir / 'garbage.yaml'}:2: <root>: invalid YAML") for line in lines)
    assert not any("good.yaml" in line for line in lines)
    assert len(lines) == 3
    for line in lines:  # FILE:LINE: field.path: message
        file, lineno, path, message = line.split(":", 3)
        assert Path(file).is_file() and lineno.isdigit() and path.strip() and message.strip()


def test_validate_single_files_and_missing_path(bad_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(bad_dir / "good.yaml")]) == 0
    assert cli.main(["validate", str(bad_dir / "good.yaml"), str(bad_dir / "nope.yaml")]) == 1
    assert f"{bad_dir / 'nope.yaml'}:1: <root>: no such file or directory" in capsys.readouterr().out


def test_validate_duplicate_dag_ids_across_given_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.yaml").write_text(empty_pipeline("t"))
    (tmp_path / "b" / "x.yaml").write_text(empty_pipeline("t"))
    assert cli.main(["validate", str(tmp_path / "a" / "x.yaml"), str(tmp_path / "b" / "x.yaml")]) == 1
    assert "dag_id 'x' is already defined by" in capsys.readouterr().out


def test_validate_build_errors_and_no_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text("tasks:\n  a: {operator: no_such_module.Op}\n")
    assert cli.main(["validate", str(tmp_path)]) == 1
    assert f"{tmp_path / 'p.yaml'}:2: tasks.a.operator: cannot import the operator" in capsys.readouterr().out
    assert cli.main(["validate", "--no-build", str(tmp_path)]) == 0


def test_render_prints_graph_types_resources_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", str(EXAMPLE_CONFIGS / "monitoring.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("DAG monitoring")
    assert "schedule: 0 * * * *" in out
    assert "freshness.orders_fresh  [freshness: FreshnessSensor]" in out
    assert "cpu=250m memory=256Mi ephemeral-storage=1Gi qos=Guaranteed" in out
    report = out[out.index("  report  "):]
    assert "[operator: EmptyOperator]" in report and "<- freshness.orders_fresh" in report


def test_render_bad_file_exits_1(bad_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", str(bad_dir / "cycle.yaml")]) == 1
    assert "dependency cycle" in capsys.readouterr().out


def test_console_script_never_prints_a_traceback(bad_dir: Path) -> None:
    proc = _run(str(BIN / "dataeng"), "validate", str(bad_dir))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) == 3
    assert _run(str(BIN / "dataeng"), "validate", str(EXAMPLE_CONFIGS)).returncode == 0


@pytest.mark.slow  # an `airflow` CLI process
@pytest.mark.skipif(not provider_cli_supported(), reason="provider CLI commands need Airflow 3.2+")
def test_airflow_cli_group(bad_dir: Path) -> None:
    proc = _run(str(BIN / "airflow"), "dataeng", "validate", str(bad_dir), timeout=240)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"{bad_dir / 'cycle.yaml'}:2: tasks.a.depends_on: dependency cycle" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_provider_cli_commands_definition() -> None:
    (group,) = cli.get_provider_cli_commands()
    assert group.name == "dataeng"
    assert {c.name for c in group.subcommands} == {"validate", "render", "schema"}


def test_schema_is_up_to_date() -> None:
    for kind in ("pipeline", "defaults"):
        committed = (SCHEMA_DIR / f"{kind}.schema.json").read_text()
        assert committed == schema_text(kind), (
            f"airflow_provider_dataeng/schema/{kind}.schema.json is stale: run "
            "`python -m airflow_provider_dataeng.factory.schema`")


def _examples() -> list[tuple[Path, object]]:
    out = []
    for path in sorted(EXAMPLE_CONFIGS.rglob("*.yaml")):
        out.append((path, json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))))
    return out


def test_example_configs_validate_against_the_shipped_schema() -> None:
    pipeline, defaults = shipped("pipeline"), shipped("defaults")
    jsonschema.Draft202012Validator.check_schema(pipeline)
    for path, data in _examples():
        jsonschema.validate(data, defaults if path.name == "defaults.yaml" else pipeline)


def test_schema_picks_the_task_model_by_type() -> None:
    """The ``type`` discriminator: errors name the fields of the task's own type, not of every type."""
    validator = jsonschema.Draft202012Validator(shipped("pipeline"))
    bad = {"tasks": {"a": {"type": "extract", "source_conn_id": "x"}}}
    messages = [e.message for e in validator.iter_errors(bad)]
    messages += [c.message for e in validator.iter_errors(bad) for c in e.context or []]
    assert any("'target_table' is a required property" in m for m in messages), messages
    assert "'conn_id' is a required property" not in messages  # other types' required fields are not asked
    wrong = {"tasks": {"a": {"type": "quality", "conn_id": "w", "table": "t", "checks": [{"check": "row_count"}],
                             "select_sql": "select 1"}}}
    assert not validator.is_valid(wrong)  # a publish field on a quality task
    operator = {"tasks": {"a": {"operator": EMPTY}}}
    assert validator.is_valid(operator)  # no type: an operator task
    assert not validator.is_valid({"tasks": {"a": {"type": "nope"}}})


# Models whose owners are still writing their descriptions (issue 12 item 1): remove an entry once its
# model is complete (the test fails while an entry is no longer needed).
PENDING_DESCRIPTIONS = {
    "AcceptedValuesCheck": "publish", "DriftCheck": "publish", "NullFractionCheck": "publish",
    "RowCountCheck": "publish", "SqlCheck": "publish", "UniqueCheck": "publish",
}


def test_every_schema_property_has_a_description() -> None:
    missing = []
    for kind in ("pipeline", "defaults"):
        schema = shipped(kind)
        models = {"<root>": schema, **schema.get("$defs", {})}
        for model, node in models.items():
            for name, prop in (node.get("properties") or {}).items():
                if "description" not in prop and model != "Task":
                    missing.append(f"{kind}:{model}.{name}")
    pending = {m for m in missing if m.split(":")[1].split(".")[0] in PENDING_DESCRIPTIONS}
    assert sorted(set(missing) - pending) == [], "properties without a description (add Field(description=...))"
    done = set(PENDING_DESCRIPTIONS) - {m.split(":")[1].split(".")[0] for m in pending}
    assert not done, f"complete now; remove from PENDING_DESCRIPTIONS: {sorted(done)}"


def test_schema_cli_writes_both_schemas(tmp_path: Path) -> None:
    proc = _run(str(BIN / "dataeng"), "schema", "--output-dir", str(tmp_path / "schema"))
    assert proc.returncode == 0, proc.stderr
    for kind in ("pipeline", "defaults"):
        assert json.loads((tmp_path / "schema" / f"{kind}.schema.json").read_text()) == shipped(kind)


@pytest.mark.slow  # builds a wheel (~20 s)
def test_wheel_ships_the_schema(tmp_path: Path) -> None:
    import zipfile

    proc = subprocess.run([str(BIN / "uv"), "build", "--wheel", "-o", str(tmp_path), str(REPO_ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "airflow_provider_dataeng/schema/pipeline.schema.json" in names
    assert "airflow_provider_dataeng/schema/defaults.schema.json" in names


def _line_of(path: Path, text: str) -> int:
    """1-based number of the only line of ``path`` that starts with ``text`` (indentation aside)."""
    (number,) = [i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(text)]
    return number


def test_render_shows_where_each_value_came_from(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", str(EXAMPLE_CONFIGS / "orders.yaml")]) == 0
    out = capsys.readouterr().out
    config = out[out.index("effective config"):].splitlines()
    orders, defaults = EXAMPLE_CONFIGS / "orders.yaml", EXAMPLE_CONFIGS / "defaults.yaml"
    retries = _line_of(defaults, "retries: 3")
    for line in (
        '  dag_id: "orders"  <- default (the file name)',
        f'  schedule: "@daily"  <- {orders}:{_line_of(orders, "schedule:")}',  # from the file
        f"  retries: 3  <- {defaults}:{retries}",  # from defaults.yaml
        f'  dagrun_timeout: "6h"  <- {defaults}:{_line_of(defaults, "dagrun_timeout: 6h")}',  # as written
        f'    memory: "512Mi"  <- {defaults}:{_line_of(defaults, "memory: 512Mi")}',  # merged key by key
        f'      source_table: "public.orders"  <- {orders}:{_line_of(orders, "source_table: public.orders")}',
        '      partition_column: "_interval_start"  <- default',  # a spec default
        '      swap_attempts: 5  <- default',
        f"      retries: 3  <- {defaults}:{retries} (pipeline-wide)",  # a task setting inherited from the pipeline
        f'        memory: "1Gi"  <- {orders}:{_line_of(orders, "memory: 1Gi")}',  # the task's own override
        f'        cpu: "500m"  <- {defaults}:{_line_of(defaults, "cpu: 500m")} (pipeline-wide)',
    ):
        assert line in config, line


def test_render_in_a_subfolder_shows_each_defaults_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "team" / "eu").mkdir(parents=True)
    (tmp_path / "defaults.yaml").write_text("owner: root\nretries: 1\nresources: {cpu: 250m, memory: 256Mi}\n")
    (tmp_path / "team" / "defaults.yaml").write_text("retries: 4\nqueue: team_q\n")
    (tmp_path / "team" / "eu" / "defaults.yaml").write_text("resources: {memory: 1Gi}\n")
    (tmp_path / "team" / "eu" / "p.yaml").write_text(
        f"pool: eu_pool\ntasks:\n  a: {{operator: {EMPTY}, pool_slots: 2}}\n  b: {{operator: {EMPTY}, queue: fast}}\n")
    assert cli.main(["render", str(tmp_path / "team" / "eu" / "p.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    root, team, eu, p = (tmp_path / "defaults.yaml", tmp_path / "team" / "defaults.yaml",
                         tmp_path / "team" / "eu" / "defaults.yaml", tmp_path / "team" / "eu" / "p.yaml")
    for line in (f'  owner: "root"  <- {root}:1', f"  retries: 4  <- {team}:1", f'  queue: "team_q"  <- {team}:2',
                 f'  pool: "eu_pool"  <- {p}:1', f'    cpu: "250m"  <- {root}:3', f'    memory: "1Gi"  <- {eu}:1',
                 f'      queue: "team_q"  <- {team}:2 (pipeline-wide)', f"      pool_slots: 2  <- {p}:3",
                 f'      queue: "fast"  <- {p}:4'):
        assert line in out, line
    # the same through `airflow dataeng render` is covered by test_airflow_cli_render


@pytest.mark.slow  # an `airflow` CLI process
@pytest.mark.skipif(not provider_cli_supported(), reason="provider CLI commands need Airflow 3.2+")
def test_airflow_cli_render() -> None:
    proc = _run(str(BIN / "airflow"), "dataeng", "render", str(EXAMPLE_CONFIGS / "orders.yaml"), timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    defaults = EXAMPLE_CONFIGS / "defaults.yaml"
    assert f"  retries: 3  <- {defaults}:{_line_of(defaults, 'retries: 3')}" in proc.stdout
