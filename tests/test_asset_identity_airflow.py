"""Asset identity under the real scheduler, with a warehouse connection created through the REST API (it lives
in Airflow's metadata DB, so DAG parsing cannot read its database):

- with ``databases:`` in the folder's defaults.yaml, the extract's event updates the Asset that dbt's
  manifest names for the table, and a DAG scheduled on that Asset runs;
- a ``databases:`` entry the connection does not reach fails the task once (no retry) before it writes;
- without the setting (the connection-id fallback) the task succeeds and its log says what is wrong and how
  to fix it.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dataeng.dbt.relations import relation_asset_uri

pytestmark = pytest.mark.airflow

CONF_INTERVAL = {"interval_start": "2024-01-01T00:00:00+00:00", "interval_end": "2024-01-02T00:00:00+00:00"}
EXTRACT = """\
schedule: null
{extra}
tasks:
  extract:
    type: extract
    source_conn_id: shop_source
    source_table: {source}
    target_conn_id: {conn}
    target_table: {target}
    mode: incremental_timestamp
    timestamp_column: updated_at
    lag: 0s
    retries: 2
"""


def _runs(stack: Any, dag_id: str) -> list[dict[str, Any]]:
    response = stack.api("GET", f"dags/{dag_id}/dagRuns")
    assert response.status_code == 200, response.text
    return response.json()["dag_runs"]


def test_configured_database_joins_dbt_identity_and_mismatches_are_reported(airflow_stack: Any, source_cluster: Any,
                                                                            pg_cluster: Any, pg_db: str) -> None:
    stack = airflow_stack
    tag = uuid.uuid4().hex[:8]
    schema = f"aid_{tag}"
    source_cluster.psql(f"""create schema {schema};
        create table {schema}.orders (id int primary key, status text, updated_at timestamptz not null);
        insert into {schema}.orders values (1, 'placed', '2024-01-01 08:00+00'), (2, 'paid', '2024-01-01 09:00+00')""",
                        "shop")
    conn = f"ui_{tag}"  # a UI/API connection: no AIRFLOW_CONN_* anywhere
    resp = stack.api("POST", "/connections", json={"connection_id": conn, "conn_type": "postgres",
                                                   "host": pg_cluster.host, "port": pg_cluster.port,
                                                   "login": "postgres", "schema": pg_db})
    assert resp.status_code in (200, 201), resp.text
    # What dbt names raw.orders: its manifest's database (the real one), through the dbt side's own function.
    dbt_uri = relation_asset_uri(f'"{pg_db}"."{schema}"."orders"', conn)
    assert dbt_uri == f"postgres://{conn}:5432/{pg_db}/{schema}/orders"

    ok, wrong, legacy, marts = (f"aid_{k}_{tag}" for k in ("ok", "wrong", "legacy", "marts"))
    source = f"{schema}.orders"
    files = {
        "defaults.yaml": "start_date: 2024-01-01\nretries: 0\n",
        "configured/defaults.yaml": f"databases: {{{conn}: {pg_db}}}\n",
        f"configured/{ok}.yaml": EXTRACT.format(extra="", source=source, conn=conn, target=f"{schema}.orders"),
        f"configured/{wrong}.yaml": EXTRACT.format(extra=f"databases: {{{conn}: not_{pg_db}}}", source=source,
                                                   conn=conn, target=f"{schema}.wrong"),
        f"legacy/{legacy}.yaml": EXTRACT.format(extra="", source=source, conn=conn, target=f"{schema}.legacy"),
        f"{marts}.yaml": f"schedule: [{dbt_uri!r}]\ntasks: {{done: {{operator: "
                         "airflow.providers.standard.operators.empty.EmptyOperator}}\n",
    }
    configs = Path(stack.home) / "asset_identity" / tag
    for name, text in files.items():
        path = configs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    stack.add_dag_file(f"aid_{tag}.py", textwrap.dedent(f'''\
        from airflow.providers.common.compat.sdk import get_parsing_context

        from airflow_provider_dataeng.factory.folder import build_dags

        _result = build_dags({str(configs)!r}, only_dag_id=get_parsing_context().dag_id)
        globals().update({{f"dag__{{k}}": v for k, v in _result.dags.items()}})
        '''))
    for dag_id in (ok, wrong, legacy, marts):
        stack.wait_dag(dag_id, timeout=180)
    assert not _runs(stack, marts)

    # 1. configured: the extract's event is dbt's Asset, so the DAG scheduled on it runs
    run_id = stack.trigger(ok, conf=CONF_INTERVAL)
    assert stack.wait_run(ok, run_id, timeout=240) == "success", stack.report(ok, run_id)
    assert "Asset identity mismatch" not in stack.task_log(ok, run_id, "extract")
    deadline = time.monotonic() + 90
    while not _runs(stack, marts) and time.monotonic() < deadline:
        time.sleep(2)
    runs = _runs(stack, marts)
    assert [r["run_type"] for r in runs] == ["asset_triggered"], runs

    # 2. configured wrong: fails once, before writing, saying why and how to fix it
    run_id = stack.trigger(wrong, conf=CONF_INTERVAL)
    assert stack.wait_run(wrong, run_id, timeout=240) == "failed"
    [ti] = stack.task_instances(wrong, run_id)
    assert (ti["state"], ti["try_number"]) == ("failed", 1), ti  # retries: 2, but retrying cannot help
    log = stack.task_log(wrong, run_id, "extract")
    for text in ("Asset identity mismatch", f"connection '{conn}' reaches database '{pg_db}'",
                 f"name database 'not_{pg_db}'", "databases:' setting", f"databases: {{{conn}: {pg_db}}}",
                 "Nothing was written"):
        assert text in log, (text, log[-3000:])
    assert pg_cluster.psql(f"select to_regclass('{schema}.wrong') is null", pg_db).strip() == "t"

    # 3. the connection-id fallback (no setting): runs as before, and the log names the fix
    run_id = stack.trigger(legacy, conf=CONF_INTERVAL)
    assert stack.wait_run(legacy, run_id, timeout=240) == "success", stack.report(legacy, run_id)
    log = stack.task_log(legacy, run_id, "extract")
    for text in (f"connection '{conn}' reaches database '{pg_db}'", f"name database '{conn}'",
                 "the connection id, because the connection is not in the environment",
                 f"databases: {{{conn}: {pg_db}}}"):
        assert text in log, (text, log[-3000:])
    assert log.count("Asset identity mismatch") == 1  # once per task, not per connection
