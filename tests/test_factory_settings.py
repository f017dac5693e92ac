"""[dataeng] settings the Airflow way, and the connection forms declared in provider info."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_dataeng import settings
from airflow_provider_dataeng.get_provider_info import get_provider_info
from tests.fixtures.factory_configs import dagbag, empty_pipeline, write_dags_folder

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_provider_info_declares_the_dataeng_section() -> None:
    options = get_provider_info()["config"]["dataeng"]["options"]
    assert set(options) == set(settings.SETTINGS)
    assert all(o["description"] and o["type"] in {"string", "integer", "float", "boolean"} for o in options.values())


def test_env_override_as_airflow_does_and_legacy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.get("max_config_bytes") == 1024 * 1024
    monkeypatch.setenv("AIRFLOW__DATAENG__MAX_CONFIG_BYTES", "2048")
    assert settings.get("max_config_bytes") == 2048
    monkeypatch.setenv("DATAENG_CONFIG_DIR", "/legacy")
    assert settings.get("config_dir") == "/legacy"
    monkeypatch.setenv("AIRFLOW__DATAENG__CONFIG_DIR", "/new")
    assert settings.get("config_dir") == "/new"  # the [dataeng] option wins over the legacy variable
    monkeypatch.setenv("AIRFLOW__DATAENG__MAX_CONFIG_NODES", "lots")
    with pytest.raises(ValueError, match=r"\[dataeng\] max_config_nodes must be an integer, found 'lots'"):
        settings.get("max_config_nodes")


def test_a_setting_changes_what_the_factory_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dags_folder(tmp_path, {"p.yaml": empty_pipeline("a") + "# " + "x" * 3000 + "\n"})
    assert dagbag(folder).dags["p"].task_ids == ["a"]
    monkeypatch.setenv("AIRFLOW__DATAENG__MAX_CONFIG_BYTES", "2000")
    assert "over the 2,000-byte limit" in dagbag(folder).dags["p"].doc_md


def test_config_dir_setting_moves_the_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dags_folder(tmp_path / "dags", {})
    other = write_dags_folder(tmp_path / "elsewhere", {"moved.yaml": empty_pipeline("a")})
    monkeypatch.setenv("AIRFLOW__DATAENG__CONFIG_DIR", str(other / "configs"))
    assert set(dagbag(folder).dags) == {"moved"}


@pytest.mark.slow  # an `airflow` CLI process
def test_airflow_config_lists_the_section_and_the_connection_form() -> None:
    env = dict(os.environ, AIRFLOW__DATAENG__CONFIG_FILE_BUDGET="3.5")
    out = subprocess.run([AIRFLOW, "config", "get-value", "dataeng", "config_file_budget"], capture_output=True,
                         text=True, env=env, timeout=240)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "3.5", out.stderr[-2000:]
    from airflow.providers_manager import ProvidersManager

    if not hasattr(ProvidersManager, "_load_ui_metadata"):
        pytest.skip("connection forms from provider info need Airflow 3.2+ (older: the default form)")
    code = ("from airflow.providers_manager import ProvidersManager as P; p = P(); "
            "w = p.connection_form_widgets; b = p.field_behaviours; "
            "print(sorted(k for k in w if 'dataeng_postgres' in k)); print(b['dataeng_postgres']['relabeling'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("target_session_attrs", "connect_deadline", "driver"):
        assert f"extra__dataeng_postgres__{name}" in out.stdout
    assert "Hosts (comma-separated" in out.stdout
