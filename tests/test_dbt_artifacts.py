"""Tasks start from the build-time artifacts (no full parse per task), a project changed after the build is
logged, and packages come from ``dbt deps`` at build time or, opt-in, in a per-try working copy."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_dataeng.dbt.parse_project import parse_project
from airflow_provider_dataeng.dbt.results import DbtRunError
from airflow_provider_dataeng.dbt.runner import DbtRunner
from airflow_provider_dataeng.dbt.workspace import BUILD_INFO_FILE, copy_project
from tests.fixtures import dbt_shop

pytestmark = pytest.mark.slow

FULL_PARSE = "Unable to do partial parsing because saved manifest not found. Starting full parse."
NO_PARTIAL = "Unable to do partial parsing"
# the runner's log line when dbt gets the shipped Manifest (in-process, or from the warm worker)
PRELOADED = "dbt is handed the build-time Manifest"


def _logger() -> tuple[logging.Logger, dbt_shop.LogLines]:
    return dbt_shop.capture_log("dbt-artifacts")


@pytest.fixture(scope="module")
def warehouse(pg_cluster) -> Iterator[tuple[str, str]]:
    with dbt_shop.warehouse(pg_cluster, "dbt_art") as found:
        yield found


def test_a_task_starts_from_the_shipped_parse_and_a_changed_project_is_logged(
    warehouse: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id, dbname = warehouse
    project = copy_project(dbt_shop.PROJECT_DIR, tmp_path / "project")
    # built for another database: relation names differ, so the parse cannot serve this warehouse
    other = parse_project(project, tmp_path / "other-target", quiet=True)
    log, lines = _logger()
    DbtRunner(conn_id, project, log=log).run("run", run_dir=tmp_path / "tx", select="stg_products",
                                             artifacts_dir=other.parent)
    assert any(f"it was made for warehouse.analytics and this task targets {dbname}.analytics" in line
               for line in lines.lines)
    assert NO_PARTIAL in (tmp_path / "tx" / "logs" / "dbt.log").read_text()

    monkeypatch.setenv("DATAENG_DBT_DBNAME", dbname)  # the build step with production's database name
    manifest = parse_project(project, quiet=True)
    artifacts = manifest.parent
    assert (artifacts / "partial_parse.msgpack").is_file() and (artifacts / BUILD_INFO_FILE).is_file()

    log, lines = _logger()
    runner = DbtRunner(conn_id, project, log=log)
    result = runner.run("run", run_dir=tmp_path / "t1", select="stg_products", artifacts_dir=artifacts)
    assert result.success and [n.unique_id for n in result.nodes] == ["model.dataeng_shop.stg_products"]
    dbt_log = (tmp_path / "t1" / "logs" / "dbt.log").read_text()
    # verified current (file hashes, versions, no --vars): dbt is handed the shipped Manifest and parses nothing
    assert FULL_PARSE not in dbt_log and NO_PARTIAL not in dbt_log and "Partial parsing enabled" not in dbt_log
    assert any("Starting from the build-time parse" in line for line in lines.lines)
    assert any(PRELOADED in line for line in lines.lines), lines.lines
    assert not any("changed since its artifacts" in line for line in lines.lines)

    # without the shipped parse, the same task parses the whole project
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(manifest, bare / "manifest.json")
    runner.run("run", run_dir=tmp_path / "t0", select="stg_products", artifacts_dir=bare)
    assert FULL_PARSE in (tmp_path / "t0" / "logs" / "dbt.log").read_text()

    # the project changes, the artifacts are not rebuilt: logged, and dbt re-parses the changed file
    model = project / "models" / "staging" / "stg_products.sql"
    model.write_text(model.read_text().replace("    category,\n", "    category,\n    'changed' as note,\n"))
    log2, lines2 = _logger()
    result = DbtRunner(conn_id, project, log=log2).run("run", run_dir=tmp_path / "t2", select="stg_products",
                                                        artifacts_dir=artifacts)
    assert result.success
    warning = next(line for line in lines2.lines if "changed since its artifacts" in line)
    assert "1 file(s) differ (models/staging/stg_products.sql)" in warning and "make manifest" in warning
    dbt_log = (tmp_path / "t2" / "logs" / "dbt.log").read_text()
    assert FULL_PARSE not in dbt_log and "1 files changed" in dbt_log


LOCAL_PACKAGE = {
    "dbt_project.yml": "name: shop_utils\nversion: '1.0.0'\nconfig-version: 2\nmacro-paths: ['macros']\n",
    "macros/cents.sql": "{% macro to_cents(column) %}({{ column }} * 100)::bigint{% endmacro %}\n",
}


def _project_with_a_local_package(tmp_path: Path) -> Path:
    package = tmp_path / "packages" / "shop_utils"
    for rel, text in LOCAL_PACKAGE.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    project = copy_project(dbt_shop.PROJECT_DIR, tmp_path / "project")
    (project / "packages.yml").write_text("packages:\n  - local: ../packages/shop_utils\n")
    (project / "models" / "marts" / "product_cents.sql").write_text(
        "select product_id, {{ shop_utils.to_cents('price') }} as price_cents from {{ ref('stg_products') }}\n")
    return project


def test_packages_are_installed_at_build_time_and_shipped(
    warehouse: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id, dbname = warehouse
    monkeypatch.setenv("DATAENG_DBT_DBNAME", dbname)
    project = _project_with_a_local_package(tmp_path)
    manifest = parse_project(project, quiet=True)  # runs dbt deps first: the project declares packages
    assert (project / "dbt_packages" / "shop_utils").exists()
    result = DbtRunner(conn_id, project).run("run", run_dir=tmp_path / "t1", select="stg_products product_cents",
                                               artifacts_dir=manifest.parent)
    assert result.success and {n.name for n in result.nodes} == {"stg_products", "product_cents"}
    assert FULL_PARSE not in (tmp_path / "t1" / "logs" / "dbt.log").read_text()


def test_install_deps_runs_dbt_deps_in_a_working_copy(warehouse: tuple[str, str], tmp_path: Path) -> None:
    conn_id, _ = warehouse
    project = _project_with_a_local_package(tmp_path)
    manifest = parse_project(project, quiet=True)
    shutil.rmtree(project / "dbt_packages")  # shipped without packages
    before = {p for p in project.rglob("*")}
    with pytest.raises(DbtRunError, match=r"Run \"dbt deps\".*install_deps=True"):  # no package: a clear error
        DbtRunner(conn_id, project).run("run", run_dir=tmp_path / "t0", select="product_cents",
                                          artifacts_dir=manifest.parent)
    log, lines = _logger()
    result = DbtRunner(conn_id, project, log=log).run("run", run_dir=tmp_path / "t1",
                                                      select="stg_products product_cents",
                                                      artifacts_dir=manifest.parent, install_deps=True)
    assert result.success
    assert any("dbt deps in the working copy" in line for line in lines.lines)
    assert (tmp_path / "t1" / "project" / "dbt_packages" / "shop_utils").exists()
    assert {p for p in project.rglob("*")} == before  # the shipped project was not written to


def test_docs_site_is_built_at_build_time_and_by_a_task(warehouse: tuple[str, str], tmp_path: Path) -> None:
    import json

    from airflow_provider_dataeng.dbt.docs import model_doc_path, publish_docs

    project = copy_project(dbt_shop.PROJECT_DIR, tmp_path / "project")
    manifest = parse_project(project, quiet=True, docs=True)  # no database: an empty catalog
    assert (manifest.parent / "index.html").is_file()
    assert json.loads((manifest.parent / "catalog.json").read_text())["nodes"] == {}

    conn_id, _ = warehouse
    DbtRunner(conn_id, project).run("run", run_dir=tmp_path / "run", select="stg_products")
    result = DbtRunner(conn_id, project).run("docs generate", run_dir=tmp_path / "docs", select="stg_products",
                                             artifacts_dir=manifest.parent)
    site = publish_docs(Path(result.target_dir), tmp_path / "site" / "dag.task")
    catalog = json.loads((site / "catalog.json").read_text())
    columns = catalog["nodes"]["model.dataeng_shop.stg_products"]["columns"]
    assert {"product_id", "name", "price"} <= set(columns)  # read from the warehouse
    assert model_doc_path("model.dataeng_shop.stg_products") == "index.html#!/model/model.dataeng_shop.stg_products"
    assert sorted(p.name for p in site.iterdir()) == ["catalog.json", "index.html", "manifest.json"]
    publish_docs(Path(result.target_dir), site)  # republishing replaces the site whole
    assert sorted(p.name for p in site.parent.iterdir()) == ["dag.task"]
