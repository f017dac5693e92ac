"""Dynamic task mapping in configs (``expand``, ``expand_kwargs``): validation with lines, and real runs."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_provider_dataeng.factory.errors import ConfigError
from airflow_provider_dataeng.factory.folder import build_dags
from airflow_provider_dataeng.factory.loader import load_pipeline
from devstack.airflow_env import run_dag
from tests.fixtures.extract import rows_of
from tests.fixtures.factory_configs import EMPTY

BASH = "airflow.providers.standard.operators.bash.BashOperator"
LIST = "tests.fixtures.mapping_ops.ListOperator"


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    return [i.format() for i in info.value.issues]


def _has(lines: list[str], needle: str) -> None:
    assert any(needle in line for line in lines), f"{needle!r} not in:\n" + "\n".join(lines)


EXTRACT = f"""\
tasks:
  tables: {{operator: {LIST}, kwargs: {{values: []}}}}
  ex:
    type: extract
    source_conn_id: src
    target_conn_id: wh
"""


def test_each_literal_instance_is_validated_at_its_line(tmp_path: Path) -> None:
    lines = _errors(tmp_path, EXTRACT + """\
    expand_kwargs:
      - {source_table: public.a, target_table: raw.a}
      - {source_table: public.b, target_table: raw.b, mode: sometimes}
      - {target_table: raw.c}
    """)
    _has(lines, "p.yaml:9: tasks.ex.expand_kwargs[1].mode: invalid value (expected one of 'full_snapshot'")
    _has(lines, "p.yaml:10: tasks.ex.expand_kwargs[2]: source_table / source_sql: give exactly one of them")
    assert len(lines) == 2


def test_mapping_mistakes_name_the_key(tmp_path: Path) -> None:
    _has(_errors(tmp_path, EXTRACT + """\
    expand: {source_tabel: [a, b], target_table: [raw.a]}
    """), "p.yaml:7: tasks.ex.expand.source_tabel: 'source_tabel' is not a parameter of a extract task, so it "
          "cannot be mapped")
    lines = _errors(tmp_path, EXTRACT + """\
    target_table: raw.t
    expand: {target_table: [raw.a]}
    """)
    _has(lines, "tasks.ex.expand.target_table: 'target_table' is both set on the task and mapped")
    _has(_errors(tmp_path, EXTRACT + """\
    target_table: raw.t
    expand: {source_table: {xcom: tabels}}
    """), "p.yaml:8: tasks.ex.expand.source_table.xcom: unknown task (expected a task of this pipeline; found "
          "'tabels'); did you mean 'tables'?")
    _has(_errors(tmp_path, EXTRACT + """\
    target_table: raw.t
    expand: {source_table: []}
    """), "tasks.ex.expand.source_table: ")
    _has(_errors(tmp_path, EXTRACT + """\
    expand: {target_table: [raw.a]}
    expand_kwargs: [{source_table: a}]
    """), "tasks.ex: give expand or expand_kwargs, not both")
    _has(_errors(tmp_path, f"""\
    tasks:
      a: {{operator: {LIST}, kwargs: {{values: []}}, expand: {{values: {{xcom: b}}}}}}
      b: {{operator: {LIST}, kwargs: {{}}, expand: {{values: {{xcom: a}}}}}}
    """), "dependency cycle: a -> b -> a")


def test_a_mapped_task_builds_a_mapped_operator(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(EXTRACT + "    retries: 4\n    max_active_tis_per_dagrun: 2\n"
                                     "    expand_kwargs: {xcom: tables}\n")
    dag = build_dags(tmp_path).dags["p"]
    ex = dag.get_task("ex")
    assert type(ex).__name__ == "MappedOperator"
    assert ex.partial_kwargs["source_conn_id"] == "src" and ex.partial_kwargs["retries"] == 4
    assert ex.max_active_tis_per_dagrun == 2
    assert "pod_override" in ex.partial_kwargs["executor_config"]
    assert "source_table" not in ex.partial_kwargs  # mapped at run time, not the placeholder
    assert ex.upstream_task_ids == {"tables"}  # the XCom makes it downstream


def test_literal_expand_runs_one_instance_per_value(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "m.yaml").write_text(textwrap.dedent(f"""\
        start_date: 2026-01-01
        tasks:
          write:
            operator: {BASH}
            expand:
              bash_command: ["echo a > {out}/a", "echo b > {out}/b", "echo c > {out}/c"]
          after: {{operator: {EMPTY}, depends_on: write}}
    """))
    dag = build_dags(tmp_path / "configs").dags["m"]
    states = run_dag(dag, logical_date=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert states == {"write": "success", "after": "success"}
    assert sorted(p.read_text().strip() for p in out.iterdir()) == ["a", "b", "c"]
    assert _map_indexes(dag.dag_id, "write") == [0, 1, 2]


def _map_indexes(dag_id: str, task_id: str) -> list[int]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
        return sorted(ti.map_index for ti in tis if ti.state == "success")


SOURCE = """
create table orders (id int primary key, amount int);
insert into orders values (1, 10), (2, 20);
create table customers (id int primary key, name text);
insert into customers values (1, 'ann'), (2, 'bob'), (3, 'cy');
create table products (id int primary key);
insert into products values (7);
"""


def test_extract_over_a_list_of_tables_from_config_and_from_xcom(
        tmp_path: Path, source_cluster, source_db, pg_cluster, pg_db, source_conn_id, warehouse_conn_id) -> None:
    """The data engineer's case: one extract per table, the list in the config or from an upstream task."""
    source_cluster.psql(SOURCE, source_db)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "shop_tables.yaml").write_text(textwrap.dedent(f"""\
        schedule: "@daily"
        start_date: 2024-01-01
        tasks:
          extract_each:                      # the list in the config
            type: extract
            source_conn_id: {source_conn_id}
            target_conn_id: {warehouse_conn_id}
            checks: [{{check: row_count, min: 1}}]
            expand_kwargs:
              - {{source_table: public.orders, target_table: raw.orders}}
              - {{source_table: public.customers, target_table: raw.customers}}
          list_tables:                       # the list from an upstream task's result
            operator: {LIST}
            kwargs: {{values: [{{source_table: public.products, target_table: raw.products}}]}}
          extract_listed:
            type: extract
            source_conn_id: {source_conn_id}
            target_conn_id: {warehouse_conn_id}
            expand_kwargs: {{xcom: list_tables}}
          list_names: {{operator: {LIST}, kwargs: {{values: [public.products]}}}}
          extract_named:                     # one parameter from an upstream task's result
            type: extract
            source_conn_id: {source_conn_id}
            target_conn_id: {warehouse_conn_id}
            target_table: raw.named
            expand: {{source_table: {{xcom: list_names}}}}
    """))
    dag = build_dags(configs).dags["shop_tables"]
    states = run_dag(dag, logical_date=datetime(2024, 1, 3, tzinfo=timezone.utc))
    assert states == dict.fromkeys(
        ["extract_each", "list_tables", "extract_listed", "list_names", "extract_named"], "success")
    assert _map_indexes("shop_tables", "extract_each") == [0, 1]
    assert rows_of(pg_cluster, pg_db, "select id, amount from raw.orders order by id") == [(1, 10), (2, 20)]
    assert rows_of(pg_cluster, pg_db, "select count(*) from raw.customers") == [(3,)]
    assert rows_of(pg_cluster, pg_db, "select id from raw.products") == [(7,)]
    assert rows_of(pg_cluster, pg_db, "select id from raw.named") == [(7,)]
    ledger = rows_of(pg_cluster, pg_db, "select task_id, status, rows from dataeng.load_ledger order by rows, task_id")
    assert ledger == [("extract_listed", "published", 1), ("extract_named", "published", 1),
                      ("extract_each", "published", 2), ("extract_each", "published", 3)]


def test_the_shipped_schema_accepts_mapped_tasks() -> None:
    """Editors validate with the JSON Schema: a mapped task's mapped parameters are not required there."""
    import jsonschema

    from airflow_provider_dataeng.factory.schema import shipped

    validator = jsonschema.Draft202012Validator(shipped("pipeline"))
    mapped = {"queue": "q", "pool": "p", "executor": "LocalExecutor", "tasks": {
        "tables": {"operator": LIST, "kwargs": {"values": []}},
        "a": {"type": "extract", "source_conn_id": "s", "target_conn_id": "w", "pool_slots": 2,
              "expand_kwargs": [{"source_table": "x", "target_table": "raw.x"}]},
        "b": {"type": "extract", "source_conn_id": "s", "target_conn_id": "w", "target_table": "raw.b",
              "expand": {"source_table": {"xcom": "tables"}}},
    }}
    assert validator.is_valid(mapped), [e.message for e in validator.iter_errors(mapped)]
    assert not validator.is_valid({"tasks": {"a": {"type": "extract", "source_conn_id": "s"}}})  # not mapped
    assert not validator.is_valid({"tasks": {"a": {"operator": EMPTY, "expand": {"x": []}}}})  # an empty list
    assert not validator.is_valid({"tasks": {"a": {"operator": EMPTY, "queue": ""}}})


def test_render_shows_mapped_parameters_and_where_they_come_from(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_provider_dataeng.factory import cli

    path = tmp_path / "p.yaml"
    path.write_text(EXTRACT + "    target_table: raw.t\n    expand: {source_table: [public.a, public.b]}\n")
    assert cli.main(["render", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  ex  [extract: IdempotentExtractOperator, mapped]  retries=0  cpu=500m memory=512Mi qos=Guaranteed" in out
    assert f"      source_table: (mapped: one value per task instance)  <- {path}:8" in out
    assert f'        source_table: ["public.a", "public.b"]  <- {path}:8' in out
    assert f'      target_table: "raw.t"  <- {path}:7' in out
