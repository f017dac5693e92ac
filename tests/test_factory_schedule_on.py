"""schedule: {after: [pipelines]} / {tables: [...]}: scheduling on other pipelines and tables by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_dataeng.publish.assets import table_asset
from tests.fixtures.factory_configs import EMPTY, dagbag, write_dags_folder

EXTRACT = """\
schedule: "@daily"
tasks:
  load:
    type: extract
    source_conn_id: src
    target_conn_id: warehouse
    source_table: public.{name}
    target_table: raw.{name}
"""


def _uris(dag) -> set[str]:
    return {a.uri for a in dag.timetable.asset_condition.objects}


def _folder(tmp_path: Path, **extra: str) -> Path:
    configs = {"orders.yaml": EXTRACT.format(name="orders"), "customers.yaml": EXTRACT.format(name="customers")}
    configs.update(extra)
    return write_dags_folder(tmp_path, configs)


def test_after_pipelines_uses_their_outlets(tmp_path: Path) -> None:
    folder = _folder(tmp_path, **{"marts.yaml": f"schedule: {{after: [orders, customers]}}\ntasks: {{a: {{operator: {EMPTY}}}}}\n"})
    bag = dagbag(folder)
    marts = bag.dags["marts"]
    produced = {a.uri for name in ("orders", "customers") for t in bag.dags[name].tasks for a in t.outlets}
    assert _uris(marts) == produced == {table_asset("warehouse", "raw.orders").uri,
                                        table_asset("warehouse", "raw.customers").uri}
    assert type(marts.timetable.asset_condition).__name__ == "AssetAll"


def test_tables_by_name_and_any(tmp_path: Path) -> None:
    folder = _folder(tmp_path, **{"marts.yaml": (
        "schedule: {tables: [raw.orders, raw.payments], conn_id: warehouse, when: any}\n"
        f"tasks: {{a: {{operator: {EMPTY}}}}}\n")})
    marts = dagbag(folder).dags["marts"]
    assert _uris(marts) == {table_asset("warehouse", "raw.orders").uri, table_asset("warehouse", "raw.payments").uri}
    assert type(marts.timetable.asset_condition).__name__ == "AssetAny"


@pytest.mark.parametrize(("after", "message"), [
    ("[ordrs]", "marts.yaml:1: schedule.after[0]: unknown pipeline 'ordrs'; did you mean 'orders'?"),
    ("[broken]", "schedule.after[0]: pipeline 'broken' is broken"),
    ("[marts]", "schedule.after[0]: schedule.after cycle: marts -> marts"),
    ("[empty]", "schedule.after[0]: pipeline 'empty' updates no table"),
])
def test_after_errors_name_the_entry(tmp_path: Path, after: str, message: str) -> None:
    folder = _folder(tmp_path, **{
        "marts.yaml": f"schedule: {{after: {after}}}\ntasks: {{a: {{operator: {EMPTY}}}}}\n",
        "broken.yaml": "tasks: {a: {type: nope}}\n",
        "empty.yaml": f"tasks: {{a: {{operator: {EMPTY}}}}}\n",
    })
    bag = dagbag(folder)
    assert bag.dags["orders"].task_ids == ["load"]
    assert message in bag.dags["marts"].doc_md


def test_after_under_a_parsing_context_loads_only_what_it_needs(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path, **{"marts.yaml": f"schedule: {{after: [orders]}}\ntasks: {{a: {{operator: {EMPTY}}}}}\n",
                                  "broken.yaml": "tasks: {a: {type: nope}}\n"})
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "marts")
    bag = dagbag(folder)
    assert set(bag.dags) == {"marts"}
    assert _uris(bag.dags["marts"]) == {table_asset("warehouse", "raw.orders").uri}


def test_after_schedule_is_validated() -> None:
    from pydantic import ValidationError

    from airflow_provider_dataeng.factory.pipeline import Pipeline

    with pytest.raises(ValidationError, match="'tables' needs 'conn_id'"):
        Pipeline.model_validate({"schedule": {"tables": ["raw.x"]}, "tasks": {"a": {"operator": EMPTY}}})
    with pytest.raises(ValidationError, match="give 'after'"):
        Pipeline.model_validate({"schedule": {"when": "any"}, "tasks": {"a": {"operator": EMPTY}}})
