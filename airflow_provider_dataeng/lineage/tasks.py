"""The lineage of each task type: what ``get_openlineage_facets_on_start/on_complete`` return.

At start: the datasets known from the task's (rendered) arguments, no database access. At completion
(success or failure): the same datasets with facets from the catalog (columns and types) and the task's
outcome: for a publish the ledger row of its attempt (rows, bytes, check results; also for a rejected
load), else its XCom return value. Each enrichment is best effort: a facet that cannot be built is
logged and left out; the event still names the datasets.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from airflow_provider_dataeng.lineage import facets as f
from airflow_provider_dataeng.lineage.catalog import Attempt, describe
from airflow_provider_dataeng.lineage.datasets import DatasetId, sql_tables, table_dataset
from airflow_provider_dataeng.publish.assets import asset_databases
from airflow_provider_dataeng.publish.table_ref import TableRef
from airflow_provider_dataeng.specs import build_spec
from airflow_provider_dataeng.values import first_line

log = logging.getLogger(__name__)
T = TypeVar("T")


Lineage = Callable[..., Any]


def operator_databases(build: Lineage) -> Lineage:
    """Run a lineage builder with the operator's Asset-identity databases (the ``databases:`` of its
    pipeline, kept at construction): its datasets are its Assets, also at run time outside the factory."""

    @functools.wraps(build)
    def wrapper(operator: Any, task_instance: Any = None) -> Any:
        with asset_databases(getattr(operator, "asset_databases", None)):
            return build(operator, task_instance)

    return wrapper


def best_effort(what: str, build: Callable[[], T], default: T) -> T:
    """``build()``, or ``default`` with a warning: lineage never fails a task nor loses its datasets."""
    try:
        return build()
    except Exception as exc:
        log.warning("OpenLineage: no %s: %s", what, first_line(exc))
        return default


def task_result(task_instance: Any) -> Any:
    """The task's XCom return value (None before it returned, e.g. when it failed)."""
    if task_instance is None:
        return None
    return best_effort("task result", lambda: task_instance.xcom_pull(task_ids=task_instance.task_id), None)


def app_name(operator: Any) -> str:
    dag_id = operator.dag_id if operator.has_dag() else None
    return f"{dag_id}.{operator.task_id} lineage" if dag_id else f"{operator.task_id} lineage"


def query_inputs(conn_id: str, query: str | None) -> list[DatasetId]:
    """The tables ``query`` reads through ``conn_id`` (OpenLineage's SQL parser), as datasets."""
    if not query:
        return []
    return best_effort("input tables of the query", lambda: [
        table_dataset(conn_id, ref, database=database) for database, ref in sql_tables(query)], [])


def schemas(operator: Any, conn_id: str, datasets: Sequence[DatasetId], *, role: Any = "warehouse"
            ) -> dict[TableRef, Any]:
    """``{table: schema facet}`` from ``conn_id``'s catalog."""
    columns, _ = best_effort(f"schema facets from {conn_id}", lambda: describe(
        conn_id, [d.table for d in datasets], role=role, application_name=app_name(operator)), ({}, None))
    return {ref: f.schema_facet(cols) for ref, cols in columns.items()}


def published_output(operator: Any, conn_id: str, target: DatasetId, task_instance: Any, checks: Any) -> Any:
    """The output dataset of a publish (extract, publish, rollback): its schema, the check results and the
    rows written, from the ledger row of the attempt (also when the checks rejected it and the task
    failed), else from the task's return value."""
    dag_id = operator.dag_id if operator.has_dag() else None
    attempt = Attempt(dag_id, operator.task_id, task_instance.run_id, target.table)
    columns, row = best_effort(f"schema and ledger row from {conn_id}", lambda: describe(
        conn_id, [target.table], application_name=app_name(operator), attempt=attempt), ({}, None))
    result = row if row is not None else task_result(task_instance)
    result = result if isinstance(result, dict) else {}
    facets = {"schema": f.schema_facet(columns[target.table]) if target.table in columns else None,
              "dataQualityAssertions": best_effort(
                  "data quality assertions", lambda: f.assertions_facet(result.get("checks") or [], checks), None)}
    written = result.get("status") == "published" and result.get("rows") is not None
    stats = f.output_statistics(result["rows"], result.get("bytes")) if written else None
    return f.output_dataset(target, facets, {"outputStatistics": stats})


@operator_databases
def extract_lineage(operator: Any, task_instance: Any = None) -> Any:
    """An extract: source table (or the query's tables) -> target table."""
    from airflow_provider_dataeng.extract.spec import ExtractSpec

    spec = build_spec(operator, ExtractSpec)
    target = table_dataset(spec.target_conn_id, spec.target_table)
    sources = ([table_dataset(spec.source_conn_id, spec.source_table)] if spec.source_table
               else query_inputs(spec.source_conn_id, spec.source_sql))
    return _table_load_lineage(operator, task_instance, sources, spec.source_conn_id, "source", target,
                               spec.target_conn_id, spec.checks, spec.source_sql)


@operator_databases
def publish_lineage(operator: Any, task_instance: Any = None) -> Any:
    """A staging swap: the tables of ``select_sql`` (same warehouse) -> target table."""
    from airflow_provider_dataeng.publish.spec import PublishSpec

    spec = build_spec(operator, PublishSpec)
    target = table_dataset(spec.conn_id, spec.target_table)
    sources = [s for s in query_inputs(spec.conn_id, spec.select_sql) if s.key != target.key]
    return _table_load_lineage(operator, task_instance, sources, spec.conn_id, "warehouse", target,
                               spec.conn_id, spec.checks, spec.select_sql)


def _table_load_lineage(operator: Any, task_instance: Any, sources: Sequence[DatasetId], source_conn_id: str,
                        source_role: Any, target: DatasetId, target_conn_id: str, checks: Any,
                        query: str | None) -> Any:
    """Source tables -> one published target: the start event names them; the end event adds the sources'
    schemas and the target's published facts (rows, schema, assertions from ``checks``)."""
    job = {"sql": f.sql_job_facet(query) if query else None}
    if task_instance is None:
        return f.operator_lineage([f.input_dataset(s) for s in sources], [f.output_dataset(target)], job_facets=job)
    found = schemas(operator, source_conn_id, sources, role=source_role)
    inputs = [f.input_dataset(s, {"schema": found.get(s.table)}) for s in sources]
    output = published_output(operator, target_conn_id, target, task_instance, checks)
    return f.operator_lineage(inputs, [output], job_facets=job)


@operator_databases
def rollback_lineage(operator: Any, task_instance: Any = None) -> Any:
    """A rollback: the previous version of the target table is published again."""
    from airflow_provider_dataeng.publish.spec import RollbackSpec

    spec = build_spec(operator, RollbackSpec)
    target = table_dataset(spec.conn_id, spec.target_table)
    if task_instance is None:
        return f.operator_lineage([], [f.output_dataset(target)])
    return f.operator_lineage([], [published_output(operator, spec.conn_id, target, task_instance, [])])


@operator_databases
def quality_lineage(operator: Any, task_instance: Any = None) -> Any:
    """Quality checks on a table: the table is an input, with its schema and the checks' assertions."""
    from airflow_provider_dataeng.publish.spec import QualitySpec

    spec = build_spec(operator, QualitySpec)
    table = table_dataset(spec.conn_id, spec.table)
    if task_instance is None:
        return f.operator_lineage([f.input_dataset(table)], [])
    results = getattr(operator, "check_results", None) or task_result(task_instance)
    facets = {"schema": schemas(operator, spec.conn_id, [table]).get(table.table),
              "dataQualityAssertions": best_effort(
                  "data quality assertions", lambda: f.assertions_facet(results or [], spec.checks), None)}
    return f.operator_lineage([f.input_dataset(table, facets)], [])
