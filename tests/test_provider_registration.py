"""The package registers as an Airflow provider: `airflow providers list/hooks` show it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_dataeng.get_provider_info import get_provider_info

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _airflow(*args: str) -> str:
    out = subprocess.run([AIRFLOW, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_provider_info_matches_airflow_schema():
    import jsonschema

    schema_path = Path(__import__("airflow").__file__).with_name("provider_info.schema.json")
    jsonschema.validate(get_provider_info(), json.loads(schema_path.read_text()))


def test_every_module_listed_in_provider_info_imports():
    import importlib

    info = get_provider_info()
    modules = [m for kind in ("hooks", "operators", "sensors", "triggers") for e in info[kind] for m in e["python-modules"]]
    for dotted in modules + [c["hook-class-name"].rpartition(".")[0] for c in info["connection-types"]]:
        importlib.import_module(dotted)
    for path in info["notifications"] + info["cli"]:
        module, _, attr = path.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), path


@pytest.mark.parametrize(
    ("command", "expected"),
    [(("providers", "list", "-o", "json"), "airflow-provider-dataeng"),
     (("providers", "hooks", "-o", "json"), "dataeng_postgres")],
)
def test_airflow_cli_lists_the_provider(command, expected):
    assert expected in _airflow(*command)
