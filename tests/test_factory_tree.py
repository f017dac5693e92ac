"""Config folders with subfolders: recursive scan, defaults.yaml down the tree, collisions, parsing context."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from airflow_provider_dataeng.factory import loader as loader_mod
from airflow_provider_dataeng.factory.folder import build_dags
from tests.fixtures.factory_configs import DEFAULTS, EMPTY, dagbag, empty_pipeline, write_dags_folder
from tests.fixtures.hostile_configs import _bomb


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """configs/ with nested team folders, each level with its own defaults.yaml."""
    folder = write_dags_folder(tmp_path, {"top.yaml": empty_pipeline("a")})
    _write(folder / "configs", {
        "sales/defaults.yaml": """\
            owner: sales
            tags: [sales]
            retries: 5
            pool: sales_pool
            queue: sales_q
            resources: {memory: 1Gi}
        """,
        "sales/orders.yaml": empty_pipeline("a"),
        "sales/eu/defaults.yaml": "resources: {cpu: '1'}\nretries: 7\n",
        "sales/eu/orders_eu.yaml": empty_pipeline("a", extra="owner: eu-team"),
        "sales/eu/explicit.yaml": "dag_id: renamed_eu\n" + empty_pipeline("a"),
        "finance/ledger.yml": empty_pipeline("a"),
        ".hidden/ghost.yaml": empty_pipeline("a"),
        "_drafts/draft.yaml": empty_pipeline("a"),
    })
    return folder


def _pod(task) -> tuple[dict, dict]:
    (container,) = task.executor_config["pod_override"].spec.containers
    return container.resources.requests, container.resources.limits


def test_subfolders_are_scanned_hidden_and_underscore_ones_skipped(tree: Path) -> None:
    bag = dagbag(tree)
    assert bag.import_errors == {}
    assert set(bag.dags) == {"top", "orders", "orders_eu", "renamed_eu", "ledger"}
    assert not any("config-error" in d.tags for d in bag.dags.values())


def test_defaults_merge_down_the_tree_nearest_wins(tree: Path) -> None:
    bag = dagbag(tree)
    top, orders, eu = bag.dags["top"], bag.dags["orders"], bag.dags["orders_eu"]
    # root defaults only
    assert top.default_args["owner"] == "tests" and top.default_args["retries"] == 2
    assert _pod(top.get_task("a"))[0] == {"cpu": "250m", "memory": "256Mi"}
    # root + sales: sales wins; resources merge key by key (cpu from the root, memory from sales)
    assert orders.default_args["owner"] == "sales" and orders.default_args["retries"] == 5
    assert set(orders.tags) == {"sales"}  # lists replace
    assert _pod(orders.get_task("a"))[0] == {"cpu": "250m", "memory": "1Gi"}
    # root + sales + sales/eu (+ the file itself): nearest wins at every level
    assert eu.default_args["owner"] == "eu-team" and eu.default_args["retries"] == 7
    assert _pod(eu.get_task("a")) == ({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})
    # queue and pool from defaults reach every task
    task = eu.get_task("a")
    assert (task.queue, task.pool) == ("sales_q", "sales_pool")
    assert bag.dags["ledger"].get_task("a").pool == "default_pool"  # finance/ does not inherit sales/


def test_a_bad_defaults_file_only_breaks_the_pipelines_below_it(tree: Path) -> None:
    (tree / "configs" / "sales" / "eu" / "defaults.yaml").write_text("resources: {cpu: '1'}\nretries: lots\n")
    bag = dagbag(tree)
    assert bag.import_errors == {}
    for dag_id in ("orders_eu", "renamed_eu"):  # below sales/eu: placeholders naming the file and the field
        dag = bag.dags[dag_id] if dag_id in bag.dags else bag.dags["config_error__sales.eu.explicit"]
        assert dag.task_ids == ["config_error"]
        assert "inherits an invalid defaults file sales/eu/defaults.yaml" in dag.doc_md
        assert f"{tree / 'configs' / 'sales' / 'eu' / 'defaults.yaml'}:2: retries:" in dag.doc_md
    # the placeholder keeps the schedule it can read (the pipeline file's) so its runs fail and alert
    assert type(bag.dags["orders_eu"].timetable).__name__ == "CronDataIntervalTimetable"
    # everything above and beside it still loads
    for dag_id in ("top", "orders", "ledger"):
        assert bag.dags[dag_id].task_ids == ["a"]


def test_a_bad_file_anywhere_is_only_its_own_placeholder(tree: Path) -> None:
    _write(tree / "configs", {
        "sales/eu/broken.yaml": "tasks: {a: {type: nope}}\n",
        "finance/deep/deeper/latin1.yaml": "",
    })
    (tree / "configs" / "finance" / "deep" / "deeper" / "latin1.yaml").write_bytes(
        b"description: caf\xe9\ntasks: {}\n")
    bag = dagbag(tree)
    assert bag.import_errors == {}
    assert {"top", "orders", "orders_eu", "renamed_eu", "ledger"} <= set(bag.dags)
    assert "unknown task type" in bag.dags["broken"].doc_md
    assert "not valid UTF-8" in bag.dags["latin1"].doc_md


def test_dag_id_collisions_across_subfolders_name_both_files(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {})
    _write(folder / "configs", {
        "a/orders.yaml": empty_pipeline("from_a"),
        "b/orders.yaml": empty_pipeline("from_b"),
        "c/other.yaml": "dag_id: orders\n" + empty_pipeline("from_c"),
    })
    bag = dagbag(folder)
    assert bag.import_errors == {}
    assert bag.dags["orders"].task_ids == ["from_a"]  # named after the id, first by path
    loser_b, loser_c = bag.dags["config_error__b.orders"], bag.dags["config_error__c.other"]
    assert ("dag_id 'orders' is already defined by a/orders.yaml (which keeps it: it is named after the id), "
            "so b/orders.yaml cannot use it") in loser_b.doc_md
    assert "so c/other.yaml cannot use it" in loser_c.doc_md and "a/orders.yaml" in loser_c.doc_md


def test_symlink_loops_and_unreadable_folders(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {"ok.yaml": empty_pipeline("a")})
    configs = folder / "configs"
    _write(configs, {"team/p.yaml": empty_pipeline("a")})
    os.symlink(configs, configs / "team" / "loop")  # back to the root: scanned once
    os.symlink(configs / "team", configs / "team_alias")  # a second link to one folder
    os.symlink("nowhere", configs / "dangling")  # a broken link (not a .yaml): ignored
    bag = dagbag(folder)
    assert bag.import_errors == {}
    assert set(bag.dags) == {"ok", "p"}
    assert bag.dags["p"].task_ids == ["a"]


def test_unreadable_folder_becomes_a_visible_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dags_folder(tmp_path, {"ok.yaml": empty_pipeline("a")})
    _write(folder / "configs", {"locked/p.yaml": empty_pipeline("a")})
    real = os.scandir

    def scandir(path):  # a folder the DAG processor's user cannot list (tests run as root: chmod is moot)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = build_dags(folder / "configs")
    assert result.dags["ok"].task_ids == ["a"]
    assert "cannot list the folder: Permission denied" in result.dags["config_error__locked"].doc_md


# --- parsing context: build one DAG without parsing the other files ---------------------------------------
@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files YAML-parsed (pipelines and defaults) while the test runs."""
    seen: list[Path] = []
    real = loader_mod.load_file

    def spy(path, *args, **kwargs):
        seen.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loader_mod, "load_file", spy)
    return seen


@pytest.fixture
def many(tmp_path: Path) -> Path:
    configs = tmp_path / "configs"
    files = {"defaults.yaml": DEFAULTS, "team/defaults.yaml": "retries: 9\n"}
    for i in range(60):
        files[f"{'team/' if i % 2 else ''}sub{i % 3}/p{i:03d}.yaml"] = empty_pipeline("a")
    files["team/x/renamed.yaml"] = "dag_id: special\n" + empty_pipeline("s")
    files["team/x/special_looking.yaml"] = "description: mentions special but is not it\n" + empty_pipeline("n")
    files["team/y/named_elsewhere.yaml"] = "dag_id: p007\n" + empty_pipeline("dup")  # loses to p007.yaml
    files["team/broken.yaml"] = "tasks: {a: {type: nope}}\n"
    _write(configs, files)
    return configs


def test_parsing_context_reads_only_the_named_file(many: Path, parsed: list[Path]) -> None:
    result = build_dags(many, only_dag_id="p007")
    assert set(result.dags) == {"p007"}
    assert result.dags["p007"].default_args["retries"] == 9  # team/defaults.yaml applies
    target = many / "team" / "sub1" / "p007.yaml"
    assert sorted(parsed) == sorted([target, many / "defaults.yaml", many / "team" / "defaults.yaml"])


def test_parsing_context_finds_an_explicit_dag_id_by_a_bytes_scan(many: Path, parsed: list[Path]) -> None:
    result = build_dags(many, only_dag_id="special")
    assert set(result.dags) == {"special"}
    assert result.dags["special"].task_ids == ["s"]
    assert many / "team" / "x" / "renamed.yaml" in parsed
    assert {p.name for p in parsed} == {"renamed.yaml", "defaults.yaml"}  # not the 60 others


def test_parsing_context_for_a_placeholder(many: Path, parsed: list[Path]) -> None:
    assert set(build_dags(many, only_dag_id="broken").dags) == {"broken"}
    assert {p.name for p in parsed} == {"broken.yaml", "defaults.yaml"}
    parsed.clear()
    result = build_dags(many, only_dag_id="config_error__team.y.named_elsewhere")
    assert set(result.dags) == {"config_error__team.y.named_elsewhere"}
    assert "is already defined by team/sub1/p007.yaml" in result.dags["config_error__team.y.named_elsewhere"].doc_md


def test_parsing_context_agrees_with_the_full_parse(many: Path) -> None:
    full = build_dags(many)
    for dag_id in ("p000", "p007", "special", "broken", "config_error__team.y.named_elsewhere"):
        single = build_dags(many, only_dag_id=dag_id)
        assert set(single.dags) == {dag_id}
        assert single.dags[dag_id].task_ids == full.dags[dag_id].task_ids
        assert single.dags[dag_id].default_args == full.dags[dag_id].default_args


def test_pipeline_level_executor_is_checked(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {
        "p.yaml": f"executor: LocalExecuter\ntasks:\n  a: {{operator: {EMPTY}}}\n",
    })
    doc = dagbag(folder).dags["p"].doc_md
    assert "p.yaml:1: executor: executor not configured in [core] executor" in doc
    assert "did you mean 'LocalExecutor'?" in doc


def test_validate_a_subfolder_or_a_file_uses_the_defaults_above_it(tree: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_provider_dataeng.factory import cli

    configs = tree / "configs"
    assert cli.main(["validate", str(configs)]) == 0
    assert "OK: 5 pipeline file(s) valid" in capsys.readouterr().err
    assert cli.main(["validate", str(configs / "sales")]) == 0
    assert "OK: 3 pipeline file(s) valid" in capsys.readouterr().err
    # a bad value in a subfolder's defaults: reported at its line, for the pipelines below it only
    (configs / "sales" / "defaults.yaml").write_text("owner: sales\nretries: many\n")
    assert cli.main(["validate", str(configs / "sales" / "eu" / "orders_eu.yaml")]) == 1
    out = capsys.readouterr().out
    assert f"{configs / 'sales' / 'defaults.yaml'}:2: retries: " in out
    assert "inherits an invalid defaults file sales/defaults.yaml" in out
    assert cli.main(["validate", str(configs / "finance")]) == 0
    # a pipeline value that is only wrong together with inherited settings points at the defaults line
    (configs / "sales" / "defaults.yaml").write_text("owner: sales\nresources: {limits: {memory: 2Gi}}\n")
    assert cli.main(["validate", "--no-build", str(configs / "sales" / "orders.yaml")]) == 1
    out = capsys.readouterr().out
    assert f"{configs / 'sales' / 'defaults.yaml'}:2: resources.limits: limits differ from requests" in out


@pytest.mark.parametrize(("content", "message"), [
    (_bomb().encode(), "more than 20,000 YAML nodes"),
    (b"owner: caf\xe9\n", "not valid UTF-8"),
    (b"- a list\n", "defaults.yaml must be a mapping"),
])
def test_a_hostile_defaults_file_in_a_subfolder(tree: Path, content: bytes, message: str) -> None:
    (tree / "configs" / "sales" / "defaults.yaml").write_bytes(content)
    result = build_dags(tree / "configs")
    for dag_id in ("orders", "orders_eu", "renamed_eu"):  # everything below sales/: a placeholder saying why
        doc = result.dags[dag_id].doc_md
        assert "inherits an invalid defaults file sales/defaults.yaml" in doc and message in doc
    assert result.dags["ledger"].task_ids == ["a"] and result.dags["top"].task_ids == ["a"]
