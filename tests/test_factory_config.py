"""Config validation: every kind of bad config gives FILE:LINE: field.path: message with expected/found."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_provider_dataeng.factory.errors import ConfigError
from airflow_provider_dataeng.factory.loader import deep_merge, load_defaults, load_pipeline, prescan_dag_id
from airflow_provider_dataeng.factory.secrets import looks_secret
from tests.fixtures.factory_configs import DEFAULTS, EMPTY


def _load(tmp_path: Path, text: str, defaults: str | None = DEFAULTS, name: str = "p.yaml"):
    if defaults is not None:
        (tmp_path / "defaults.yaml").write_text(defaults)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_pipeline(path, load_defaults(tmp_path))


def _errors(tmp_path: Path, text: str, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, **kw)
    return [issue.format() for issue in info.value.issues]


def _one(lines: list[str], needle: str) -> str:
    found = [line for line in lines if needle in line]
    assert len(found) == 1, f"{needle!r} not exactly once in:\n" + "\n".join(lines)
    return found[0]


GOOD = f"""\
schedule: "@daily"
tasks:
  a:
    operator: {EMPTY}
  b:
    operator: {EMPTY}
    depends_on: a
"""


def test_valid_pipeline_inherits_and_overrides_defaults(tmp_path: Path) -> None:
    lp = _load(tmp_path, GOOD.replace('schedule: "@daily"', 'schedule: "@daily"\nretries: 5\nresources: {memory: 1Gi}'))
    assert lp.dag_id == "p"
    assert lp.pipeline.owner == "tests"  # inherited
    assert lp.pipeline.retries == 5  # overridden
    assert lp.resources["a"].requests() == {"cpu": "250m", "memory": "1Gi"}  # mappings merge key by key
    assert lp.order == ["a", "b"]
    assert lp.tasks["b"].depends_on == ["a"]


def test_unknown_key_with_did_you_mean_and_line(tmp_path: Path) -> None:
    errors = _errors(tmp_path, GOOD.replace("  b:\n", "  b:\n    retires: 3\n"))
    line = _one(errors, "retires")
    assert line.startswith(f"{tmp_path / 'p.yaml'}:6: tasks.b.retires: unknown key 'retires'")
    assert "did you mean 'retries'?" in line


def test_unknown_operator_param_did_you_mean(tmp_path: Path) -> None:
    text = """\
    tasks:
      load:
        type: extract
        source_conn_id: shop_source
        target_conn_id: warehouse
        source_tabel: public.orders
        target_table: raw.orders
    """
    errors = _errors(tmp_path, text)
    line = _one(errors, "source_tabel")
    assert ":6: tasks.load.source_tabel: unknown key" in line and "did you mean 'source_table'?" in line


def test_wrong_type_names_expected_and_found(tmp_path: Path) -> None:
    errors = _errors(tmp_path, GOOD.replace("    depends_on: a\n", "    depends_on: a\n    retries: many\n"))
    line = _one(errors, "tasks.b.retries")
    assert ":8: tasks.b.retries:" in line
    assert "expected an integer" in line and "found 'many' (string)" in line


def test_bad_enum_lists_choices(tmp_path: Path) -> None:
    text = """\
    tasks:
      load:
        type: extract
        source_conn_id: shop_source
        target_conn_id: warehouse
        source_table: public.orders
        target_table: raw.orders
        mode: incremental
    """
    line = _one(_errors(tmp_path, text), "tasks.load.mode")
    assert ":8:" in line and "'full_snapshot'" in line and "'incremental_timestamp'" in line
    assert "found 'incremental'" in line


def test_bad_schedule_and_duration(tmp_path: Path) -> None:
    text = GOOD.replace('"@daily"', '"every day"') + "retry_delay: 5 minutes\n"
    errors = _errors(tmp_path, text)
    assert "cron expression" in _one(errors, ":1: schedule:")
    assert "duration like" in _one(errors, "retry_delay")


def test_cycle(tmp_path: Path) -> None:
    text = GOOD.replace("  a:\n", "  a:\n    depends_on: [b]\n")
    line = _one(_errors(tmp_path, text), "cycle")
    assert "dependency cycle: a -> b -> a" in line


def test_unknown_depends_on_with_did_you_mean(tmp_path: Path) -> None:
    line = _one(_errors(tmp_path, GOOD.replace("depends_on: a", "depends_on: [aa]")), "depends_on")
    assert ":7: tasks.b.depends_on[0]: unknown depends_on target" in line
    assert "found 'aa'" in line and "did you mean 'a'?" in line


def test_unknown_task_type_with_did_you_mean(tmp_path: Path) -> None:
    text = """\
    tasks:
      load:
        type: extrakt
    """
    line = _one(_errors(tmp_path, text), "tasks.load.type")
    assert ":3:" in line and "unknown task type" in line and "did you mean 'extract'?" in line


def test_missing_type(tmp_path: Path) -> None:
    line = _one(_errors(tmp_path, "tasks:\n  load:\n    retries: 1\n"), "tasks.load")
    assert "needs a 'type'" in line


@pytest.mark.parametrize("key", ["password", "db_password", "apiKey", "client-secret", "auth_token", "token"])
def test_secret_looking_keys_are_rejected_anywhere(tmp_path: Path, key: str) -> None:
    text = GOOD + f"    kwargs:\n      nested:\n        {key}: hunter2\n"
    line = _one(_errors(tmp_path, text), key)
    assert f":10: tasks.b.kwargs.nested.{key}:" in line
    assert "credentials live in Airflow connections" in line
    assert "hunter2" not in line  # the value is never echoed


def test_uri_with_embedded_password_is_rejected(tmp_path: Path) -> None:
    text = GOOD + "    kwargs: {doc: 'postgresql://app:s3cret@db:5432/shop'}\n"
    line = _one(_errors(tmp_path, text), "tasks.b.kwargs.doc")
    assert "credentials live in Airflow connections" in line and "s3cret" not in line


def test_secret_key_heuristic_keeps_ordinary_keys() -> None:
    for key in ("conn_id", "keep_previous", "source_table", "passthrough", "max_lag_bytes", "token_count_x"):
        assert looks_secret(key) is (key == "token_count_x")


def test_limits_differ_from_requests_without_opt_out(tmp_path: Path) -> None:
    text = GOOD + "    resources:\n      cpu: 500m\n      limits: {cpu: '1'}\n"
    line = _one(_errors(tmp_path, text), "limits differ")
    assert ":10: tasks.b.resources.limits:" in line
    assert "cpu: request 500m, limit 1" in line
    assert "measured against requests" in line and "allow_burstable: true" in line


def test_allow_burstable_opts_out(tmp_path: Path) -> None:
    text = GOOD + "    resources:\n      cpu: 500m\n      limits: {cpu: '1'}\n      allow_burstable: true\n"
    lp = _load(tmp_path, text)
    assert lp.resources["b"].effective_limits()["cpu"] == "1"
    assert lp.resources["a"].effective_limits() == lp.resources["a"].requests()


def test_limit_below_request_is_rejected_even_with_opt_out(tmp_path: Path) -> None:
    text = GOOD + "    resources: {memory: 1Gi, limits: {memory: 512Mi}, allow_burstable: true}\n"
    assert "below the request 1Gi" in _one(_errors(tmp_path, text), "below")


def test_pipeline_level_limits_are_reported_once_at_their_line(tmp_path: Path) -> None:
    text = GOOD + "resources:\n  limits: {memory: 2Gi}\n"
    line = _one(_errors(tmp_path, text), "limits differ")
    assert ":9: resources.limits:" in line


def test_errors_in_defaults_point_at_defaults_file(tmp_path: Path) -> None:
    (tmp_path / "defaults.yaml").write_text("owner: x\nretry_delya: 5m\n")
    with pytest.raises(ConfigError) as info:
        load_defaults(tmp_path)
    line = info.value.issues[0].format()
    assert line.startswith(f"{tmp_path / 'defaults.yaml'}:2: retry_delya:") and "did you mean 'retry_delay'" in line


def test_all_errors_are_reported_at_once_sorted_by_line(tmp_path: Path) -> None:
    text = f"""\
    schedul: "@daily"
    tasks:
      a:
        operator: {EMPTY}
        depends_on: [nope]
      b:
        type: wat
      c:
        operator: {EMPTY}
        pool_slots: 0
    """
    errors = _errors(tmp_path, text)
    assert [e.split(":")[1] for e in errors] == ["1", "5", "7", "10"]


def test_yaml_syntax_error_and_duplicate_keys(tmp_path: Path) -> None:
    assert ":2: <root>: invalid YAML: mapping values are not allowed" in _errors(tmp_path, "tasks:\n  a: b: c\n")[0]
    dup = _errors(tmp_path, GOOD + "  a:\n    operator: x.Y\n")[0]
    assert ":8: <root>: invalid YAML: duplicate key 'a' (first defined on line 3)" in dup


def test_task_groups_unknown_group_and_group_dependency(tmp_path: Path) -> None:
    text = f"""\
    task_groups:
      load: {{tooltip: loads}}
    tasks:
      a: {{operator: {EMPTY}, group: lod}}
      b: {{operator: {EMPTY}, group: load}}
      c: {{operator: {EMPTY}, depends_on: load}}
    """
    line = _one(_errors(tmp_path, text), "tasks.a.group")
    assert ":4:" in line and "did you mean 'load'?" in line
    lp = _load(tmp_path, text.replace("group: lod", "group: load"))
    assert lp.order[-1] == "c"


def test_templating_passes_through(tmp_path: Path) -> None:
    text = """\
    tasks:
      load:
        type: extract
        source_conn_id: shop_source
        target_conn_id: warehouse
        source_sql: "select * from orders where updated_at >= '{{ data_interval_start }}'"
        target_table: "raw.orders_{{ var.value.env }}"
    """
    task = _load(tmp_path, text).tasks["load"]
    assert task.source_sql.endswith("'{{ data_interval_start }}'")
    assert task.target_table == "raw.orders_{{ var.value.env }}"


def test_prescan_and_merge_helpers(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("# c\ndag_id: 'real_id'  # comment\ntasks: {}\n")
    (tmp_path / "y.yaml").write_text("tasks: {}\n")
    assert prescan_dag_id(tmp_path / "x.yaml") == "real_id"
    assert prescan_dag_id(tmp_path / "y.yaml") == "y"
    assert deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"c": 3}, "l": [2]}) == {"a": {"b": 1, "c": 3}, "l": [2]}
