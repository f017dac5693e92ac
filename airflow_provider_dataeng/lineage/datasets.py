"""A warehouse table's OpenLineage dataset identity, derived from its Asset URI (one identity everywhere).

An Asset URI ``postgres://<conn_id>:5432/<database>/<schema>/<table>``
(:func:`airflow_provider_dataeng.publish.assets.table_asset_uri`) is the dataset

- namespace ``postgres://<conn_id>:5432`` (the URI's scheme and authority), and
- name ``<database>.<schema>.<table>`` (the path's segments, percent-decoded, joined by dots),

which is what the postgres provider's ``convert_asset_to_openlineage`` gives for the same Asset (for every
name that needs no percent-encoding), so Airflow's Asset views and OpenLineage consumers name a table alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_dataeng.publish.assets import table_asset_uri
from airflow_provider_dataeng.publish.table_ref import TableRef


@dataclass(frozen=True)
class DatasetId:
    """An OpenLineage dataset identity, and the warehouse table it names."""

    namespace: str
    name: str
    table: TableRef

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def dataset_id_of_uri(uri: str) -> DatasetId:
    """The dataset of a postgres Asset URI (see the module docstring)."""
    parts = urlsplit(uri)
    segments = [unquote(s) for s in parts.path.strip("/").split("/")]
    if parts.scheme != "postgres" or len(segments) != 3 or not parts.netloc:
        raise ValueError(f"{uri!r}: expected postgres://<host>:<port>/<database>/<schema>/<table>")
    return DatasetId(f"{parts.scheme}://{parts.netloc}", ".".join(segments), TableRef(segments[1], segments[2]))


def table_dataset(conn_id: str, table: TableRef | str, *, database: str | None = None) -> DatasetId:
    """The dataset of ``table`` reached through ``conn_id``: the same identity as its Asset."""
    return dataset_id_of_uri(table_asset_uri(conn_id, table, database=database))


def relation_dataset(relation_name: str, namespace: str) -> DatasetId:
    """The dataset of a dbt relation (``"db"."schema"."table"``), as its Asset
    (:func:`airflow_provider_dataeng.dbt.relations.relation_asset_uri`)."""
    from airflow_provider_dataeng.dbt.relations import relation_asset_uri

    return dataset_id_of_uri(relation_asset_uri(relation_name, namespace))


def sql_tables(query: str, default_schema: str = "public") -> list[tuple[str | None, TableRef]]:
    """The tables a query reads, as ``(database or None, table)``, from OpenLineage's SQL parser.

    Unquoted names fold to lower case as PostgreSQL does. Raises when the query cannot be parsed."""
    from airflow.providers.openlineage.sqlparser import SQLParser

    meta = SQLParser(dialect="postgres", default_schema=default_schema).parse(query)
    if meta is None:
        raise ValueError("the OpenLineage SQL parser could not parse the query")
    found: dict[tuple[str | None, TableRef], None] = {}
    for t in meta.in_tables:
        quotes: Any = getattr(t, "quote_style", None)

        def fold(value: str | None, part: str, quotes: Any = quotes) -> str | None:
            quoted = quotes is not None and getattr(quotes, part, None)
            return value if value is None or quoted else value.lower()

        ref = TableRef(fold(t.schema, "schema") or default_schema, fold(t.name, "name") or t.name)
        found[(fold(t.database, "database"), ref)] = None
    return list(found)
