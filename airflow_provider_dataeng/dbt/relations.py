"""dbt relations (``"db"."schema"."table"``) as warehouse tables and their Airflow Assets."""

from __future__ import annotations

import re

# The postgres provider's asset-URI normalizer, imported with this module rather than on the first Asset.
import airflow.providers.postgres.assets.postgres  # noqa: F401
from airflow.providers.common.compat.sdk import Asset

from airflow_provider_dataeng.publish.assets import connection_database, table_asset, table_asset_uri
from airflow_provider_dataeng.publish.table_ref import TableRef

_RELATION = re.compile(r'^(?:"((?:[^"]|"")*)"|([^."]+))\.(?:"((?:[^"]|"")*)"|([^."]+))\.(?:"((?:[^"]|"")*)"|([^."]+))$')


def parse_relation_name(relation_name: str) -> tuple[str, str, str]:
    """``"db"."schema"."table"`` (quoted or not) -> ``(db, schema, table)``."""
    m = _RELATION.match(relation_name.strip())
    if not m:
        raise ValueError(f"relation_name {relation_name!r}: expected database.schema.table")
    g = m.groups()
    parts = [(g[i] if g[i] is not None else g[i + 1]) for i in (0, 2, 4)]
    return tuple(p.replace('""', '"') for p in parts)  # type: ignore[return-value]


def _table(relation_name: str, namespace: str) -> tuple[TableRef, str]:
    database, schema, table = parse_relation_name(relation_name)
    # dbt writes into the connection's database; the manifest's (build-time) one when the connection is unknown
    return TableRef(schema, table), connection_database(namespace) or database


def relation_asset_uri(relation_name: str, namespace: str) -> str:
    """The Asset URI of a dbt relation: the project's one table identity
    (:func:`airflow_provider_dataeng.publish.assets.table_asset_uri`, also used by the extracts' outlets)."""
    ref, database = _table(relation_name, namespace)
    return table_asset_uri(namespace, ref, database=database)


def relation_asset(relation_name: str, namespace: str) -> Asset:
    """The Airflow Asset of a dbt relation (same identity as the publish/extract outlets of that table)."""
    ref, database = _table(relation_name, namespace)
    return table_asset(namespace, ref, database=database)
