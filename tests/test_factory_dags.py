"""The loader over the example configs and over generated config folders: DAGs, isolation, parsing context."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_dataeng.factory.compat import backoff_value
from airflow_provider_dataeng.notifications.deadline import deadline_alerts_supported
from tests.fixtures.factory_configs import EMPTY, REPO_ROOT, dagbag, empty_pipeline, write_dags_folder

EXAMPLES = {"orders", "customers", "products", "payments", "dbt_marts", "monitoring"}


@pytest.fixture(scope="module")
def dbt_manifest() -> Path:
    """The example dbt project's manifest (``make manifest`` writes it; parse it here if missing)."""
    manifest = REPO_ROOT / "dbt_project" / "target" / "manifest.json"
    if not manifest.is_file():
        from airflow_provider_dataeng.dbt.parse_project import parse_project

        parse_project(REPO_ROOT / "dbt_project", quiet=True)
    return manifest


@pytest.fixture(scope="module")
def example_bag(dbt_manifest: Path):
    return dagbag(REPO_ROOT / "dags")


def _pod_resources(task) -> tuple[dict, dict]:
    pod = task.executor_config["pod_override"]
    (container,) = pod.spec.containers
    assert container.name == "base"
    return container.resources.requests, container.resources.limits


def test_example_configs_load_without_errors(example_bag) -> None:
    assert example_bag.import_errors == {}
    assert set(example_bag.dags) == EXAMPLES
    assert not any("config-error" in (d.tags or ()) for d in example_bag.dags.values())


def test_orders_pipeline(example_bag) -> None:
    dag = example_bag.dags["orders"]
    # notifications.sla_breach: a native Deadline Alert, or before Airflow 3.1 the sla_deadline_watch task
    assert dag.task_ids == ["extract_orders"] + ([] if deadline_alerts_supported() else ["sla_deadline_watch"])
    task = dag.get_task("extract_orders")
    assert type(task).__name__ == "IdempotentExtractOperator"
    assert (task.source_conn_id, task.target_conn_id, task.target_table) == ("shop_source", "warehouse", "raw.orders")
    assert task.mode == "incremental_timestamp"
    # inherited from defaults.yaml
    assert task.retries == 3 and task.retry_delay == timedelta(minutes=2)
    assert task.retry_exponential_backoff == backoff_value(2.0) and task.max_retry_delay == timedelta(minutes=30)
    assert task.owner == "data-eng"
    assert dag.max_active_runs == 1 and dag.catchup is False
    if deadline_alerts_supported():
        assert dag.deadline  # sla_breach -> a DeadlineAlert
    else:  # Airflow 3.0: a watcher task with no upstream or downstream
        watcher = dag.get_task("sla_deadline_watch")
        assert type(watcher).__name__ == "DeadlineWatchOperator" and not watcher.upstream_task_ids
        assert not watcher.downstream_task_ids and watcher.deadlines[0]["after"] == 3 * 3600
    # "@daily" gives every run a whole day to target (not Airflow 3's empty CronTriggerTimetable interval)
    try:
        from airflow.serialization.encoders import coerce_to_core_timetable
    except ImportError:  # Airflow < 3.2: the DAG's timetable is the core one
        def coerce_to_core_timetable(timetable):  # type: ignore[no-redef]
            return timetable

    interval = coerce_to_core_timetable(dag.timetable).infer_manual_data_interval(run_after=datetime(2026, 3, 2, 5, tzinfo=timezone.utc))
    assert (interval.start, interval.end) == (datetime(2026, 3, 1, tzinfo=timezone.utc),
                                              datetime(2026, 3, 2, tzinfo=timezone.utc))
    requests, limits = _pod_resources(task)
    assert requests == limits == {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"}  # task override


def test_every_example_task_has_guaranteed_qos_pod(example_bag) -> None:
    for dag in example_bag.dags.values():
        for task in dag.tasks:
            requests, limits = _pod_resources(task)
            assert requests == limits and {"cpu", "memory"} <= set(requests), (dag.dag_id, task.task_id)


def test_products_dependencies_and_task_override(example_bag) -> None:
    dag = example_bag.dags["products"]
    check = dag.get_task("check_products")
    assert check.upstream_task_ids == {"extract_products"}
    assert check.retries == 0
    assert _pod_resources(check)[0] == {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"}


def test_monitoring_groups_and_trigger_rule(example_bag) -> None:
    dag = example_bag.dags["monitoring"]
    assert set(dag.task_ids) == {"warehouse_health", "freshness.orders_fresh", "freshness.payments_fresh",
                                 "gaps.orders_gaps", "gaps.payments_gaps", "report"}
    report = dag.get_task("report")
    assert report.upstream_task_ids == set(dag.task_ids) - {"report"}
    assert report.trigger_rule == "all_done"
    sensor = dag.get_task("freshness.orders_fresh")
    assert sensor.deferrable is True and sensor.poke_interval == 300 and sensor.timeout == 1800
    assert dag.get_task("warehouse_health").retries == 1  # pipeline override of the default 3


def test_dbt_pipeline_is_scheduled_on_the_extract_outlets(example_bag) -> None:
    dbt = example_bag.dags["dbt_marts"]
    outlets = {a.uri for name in ("orders", "customers", "products", "payments")
               for t in example_bag.dags[name].tasks for a in t.outlets}
    scheduled = {a.uri for a in dbt.timetable.asset_condition.objects}
    assert scheduled == outlets and len(scheduled) == 4
    assert any(t.task_id.startswith("dbt.") for t in dbt.tasks) and len(dbt.tasks) > 1


def test_example_dags_serialize_with_their_pods(example_bag) -> None:
    try:
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # Airflow < 3.1 (the lowest-versions CI run)
        from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization

    dag = example_bag.dags["monitoring"]
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    pod = restored.get_task("report").executor_config["pod_override"]
    assert pod.spec.containers[0].resources.limits == {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "1Gi"}


def test_bad_config_fails_alone_as_a_placeholder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_dags_folder(tmp_path, {
        "good.yaml": empty_pipeline("a", "b"),
        "bad.yaml": empty_pipeline("a", "b").replace("  b:\n", "  b:\n    retires: 2\n"),
        "broken.yaml": "tasks: [\n",
    })
    bag = dagbag(folder)
    assert bag.import_errors == {}
    assert set(bag.dags) == {"good", "bad", "broken"}
    assert bag.dags["good"].task_ids == ["a", "b"]
    bad = bag.dags["bad"]
    assert bad.task_ids == ["config_error"] and "config-error" in bad.tags
    assert "bad.yaml:6: tasks.b.retires: unknown key 'retires'" in bad.description
    assert "did you mean 'retries'?" in bad.doc_md
    assert "invalid YAML" in bag.dags["broken"].doc_md
    assert "bad.yaml:6: tasks.b.retires" in caplog.text  # and logged


def test_placeholder_task_fails_with_the_errors(tmp_path: Path) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    folder = write_dags_folder(tmp_path, {"bad.yaml": "tasks: {a: {type: nope}}\n"})
    task = dagbag(folder).dags["bad"].get_task("config_error")
    with pytest.raises(AirflowFailException, match="bad.yaml:1: tasks.a.type: unknown task type"):
        task.execute({})


def test_duplicate_dag_ids_across_files(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {
        "orders.yaml": empty_pipeline("a"),
        "orders_copy.yaml": "dag_id: orders\n" + empty_pipeline("x"),
    })
    bag = dagbag(folder)
    assert bag.dags["orders"].task_ids == ["a"]  # the file named after the id keeps it
    placeholder = bag.dags["config_error__orders_copy"]
    assert "orders_copy.yaml:1: dag_id: dag_id 'orders' is already defined by orders.yaml" in placeholder.doc_md


def test_invalid_defaults_fail_every_pipeline_visibly(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {"p.yaml": empty_pipeline("a")}, defaults="retries: lots\n")
    dag = dagbag(folder).dags["p"]
    assert dag.task_ids == ["config_error"]
    assert "inherits an invalid defaults file defaults.yaml" in dag.doc_md and "defaults.yaml:1: retries" in dag.doc_md


def test_operator_errors_at_build_time_name_the_task(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {
        "p.yaml": f"""\
        tasks:
          a: {{operator: airflow.providers.standard.operators.empty.NoSuchOperator}}
          b: {{operator: {EMPTY}, kwargs: {{no_such_arg: 1}}}}
        """,
    })
    doc = dagbag(folder).dags["p"].doc_md
    assert "p.yaml:2: tasks.a.operator: cannot import the operator" in doc
    assert "p.yaml:3: tasks.b: cannot create the task" in doc and "no_such_arg" in doc


def test_single_dag_under_parsing_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dags_folder(tmp_path, {
        "one.yaml": empty_pipeline("a"),
        "two.yaml": "dag_id: second\n" + empty_pipeline("a", "b"),
        "broken.yaml": "tasks: {a: {type: nope}}\n",
    })
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "second")
    bag = dagbag(folder)
    # Only two.yaml was built: the broken file would otherwise show up as a placeholder.
    assert set(bag.dags) == {"second"}
    assert bag.dags["second"].task_ids == ["a", "b"]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "broken")
    assert set(dagbag(folder).dags) == {"broken"}  # a placeholder is rebuilt on its own too
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "unknown_id")
    assert set(dagbag(folder).dags) == {"one", "second", "broken"}  # unknown: fall back to everything


def test_groups_assets_and_notifications_reach_airflow(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {
        "p.yaml": f"""\
        schedule: {{any: ["postgres://warehouse/warehouse/raw/a", "postgres://warehouse/warehouse/raw/b"]}}
        notifications:
          on_failure: {{notifier: airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier}}
          on_retry: [{{notifier: airflow_provider_dataeng.notifications.webhook.SlaWebhookNotifier,
                       kwargs: {{message: "retrying {{{{ ti.task_id }}}}"}}}}]
        task_groups:
          outer: {{}}
          inner: {{parent: outer, tooltip: nested}}
        tasks:
          a:
            operator: {EMPTY}
            group: inner
            inlets: ["postgres://warehouse/warehouse/raw/a"]
            outlets: [{{uri: "postgres://warehouse/warehouse/analytics/x", name: x}}]
          b: {{operator: {EMPTY}, depends_on: outer, retry_exponential_backoff: 3}}
        """,
    })
    dag = dagbag(folder).dags["p"]
    a, b = dag.get_task("outer.inner.a"), dag.get_task("b")
    assert b.upstream_task_ids == {"outer.inner.a"}
    assert [x.name for x in a.outlets] == ["x"] and a.inlets[0].uri.startswith("postgres://warehouse")
    assert b.retry_exponential_backoff == backoff_value(3.0)  # a boolean before Airflow 3.1
    assert type(dag.on_failure_callback[0]).__name__ == "SlaWebhookNotifier"
    assert b.on_retry_callback and b.on_retry_callback[0].message == "retrying {{ ti.task_id }}"
    assert dag.task_group.get_child_by_label("outer").get_child_by_label("inner").tooltip == "nested"


def test_jinja_in_a_field_the_operator_does_not_template(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {
        "p.yaml": """\
        tasks:
          q:
            type: quality
            conn_id: "{{ var.value.wh }}"
            table: raw.x
            checks: [{check: row_count, min: 1}]
        """,
    })
    doc = dagbag(folder).dags["p"].doc_md
    assert "p.yaml:4: tasks.q.conn_id: DataQualityOperator does not template 'conn_id'" in doc


def test_unusable_file_name_becomes_a_sanitized_placeholder(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {"my pipeline.yaml": empty_pipeline("a"), "ok.yaml": empty_pipeline("a")})
    bag = dagbag(folder)
    assert bag.import_errors == {}
    assert set(bag.dags) == {"ok", "config_error__my_pipeline"}
    assert "is not a usable dag id" in bag.dags["config_error__my_pipeline"].description


def test_queue_pool_and_executor_per_task(tmp_path: Path) -> None:
    folder = write_dags_folder(tmp_path, {
        "p.yaml": f"""\
        tasks:
          a: {{operator: {EMPTY}, queue: heavy, pool: warehouse_pool, pool_slots: 2, executor: LocalExecutor}}
        """,
        "bad.yaml": f"tasks:\n  a: {{operator: {EMPTY}, executor: LocalExecuter}}\n",
    })
    bag = dagbag(folder)
    assert bag.import_errors == {}  # an unknown executor would otherwise fail the whole DAG file
    a = bag.dags["p"].get_task("a")
    assert (a.queue, a.pool, a.pool_slots, a.executor) == ("heavy", "warehouse_pool", 2, "LocalExecutor")
    assert ("bad.yaml:2: tasks.a.executor: executor not configured in [core] executor" in bag.dags["bad"].doc_md
            and "did you mean 'LocalExecutor'?" in bag.dags["bad"].doc_md)
