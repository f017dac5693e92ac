"""OpenLineage datasets and facets built from what our tasks know: columns, check results, row counts.

Imported only by :mod:`.tasks` when the OpenLineage provider asks for lineage; every OpenLineage import
is inside a function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_dataeng.lineage.datasets import DatasetId


def schema_facet(columns: Sequence[tuple[str, str]]) -> Any:
    """``schema``: the columns ``[(name, type)]`` in order."""
    from airflow.providers.common.compat.openlineage.facet import SchemaDatasetFacet, SchemaDatasetFacetFields

    return SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=n, type=t) for n, t in columns])


def output_statistics(rows: int | None, size: int | None = None) -> Any:
    """``outputStatistics``: rows (and bytes) written."""
    from airflow.providers.common.compat.openlineage.facet import OutputStatisticsOutputDatasetFacet

    return OutputStatisticsOutputDatasetFacet(rowCount=rows, size=size)


def sql_job_facet(query: str) -> Any:
    from airflow.providers.common.compat.openlineage.facet import SQLJobFacet

    return SQLJobFacet(query=query)


def check_columns(checks_config: Sequence[Any] | None) -> dict[str, tuple[str, str | None, str | None]]:
    """Check name -> (kind, column, sql) from a ``checks:`` config (the check implementations' own names)."""
    from airflow_provider_dataeng.publish.checks import build_checks

    out: dict[str, tuple[str, str | None, str | None]] = {}
    for check in build_checks(list(checks_config or [])):
        columns = [c for c in ([getattr(check, "column", "")] + list(getattr(check, "columns", []) or [])) if c]
        out[check.name] = (check.kind, columns[0] if len(columns) == 1 else None, getattr(check, "sql", None))
    return out


def assertions_facet(results: Iterable[Mapping[str, Any]], checks_config: Sequence[Any] | None) -> Any | None:
    """``dataQualityAssertions``: one assertion per check result (``{check, passed, observed, threshold}``
    as the publish engine reports them; ``kind`` and ``column`` when no config names the check): the check's
    kind, name, success and column, the expected (threshold) and actual (observed) values and, for a ``sql``
    check, its query. None without results."""
    import attr
    from openlineage.client.generated.data_quality_assertions_dataset import (
        Assertion,
        DataQualityAssertionsDatasetFacet,
    )

    known = check_columns(checks_config)
    fields = set(attr.fields_dict(Assertion))
    assertions = []
    for result in results:
        name = str(result["check"])
        kind, column, query = known.get(name, (result.get("kind") or name, result.get("column"), None))
        extra = {"name": name, "expected": _text(result.get("threshold")), "actual": _text(result.get("observed")),
                 "content": query, "contentType": "sql" if query else None}
        if "name" not in fields:  # an openlineage-python older than 1.47: the name is the assertion
            kind = name
        assertions.append(Assertion(assertion=kind, success=bool(result.get("passed")), column=column,
                                    **{k: v for k, v in extra.items() if k in fields and v is not None}))
    return DataQualityAssertionsDatasetFacet(assertions=assertions) if assertions else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def input_dataset(ds: DatasetId, facets: Mapping[str, Any] | None = None) -> Any:
    from airflow.providers.common.compat.openlineage.facet import InputDataset

    return InputDataset(namespace=ds.namespace, name=ds.name, facets=_present(facets))


def output_dataset(ds: DatasetId, facets: Mapping[str, Any] | None = None,
                   output_facets: Mapping[str, Any] | None = None) -> Any:
    from airflow.providers.common.compat.openlineage.facet import OutputDataset

    return OutputDataset(namespace=ds.namespace, name=ds.name, facets=_present(facets),
                         outputFacets=_present(output_facets))


def operator_lineage(inputs: Sequence[Any] = (), outputs: Sequence[Any] = (),
                     run_facets: Mapping[str, Any] | None = None, job_facets: Mapping[str, Any] | None = None) -> Any:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=list(inputs), outputs=list(outputs), run_facets=_present(run_facets),
                           job_facets=_present(job_facets))


def _present(facets: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (facets or {}).items() if v is not None}
