"""Create the schemas a dbt task writes to before dbt does, safely when parallel tasks do the same.

dbt lists the target database's schemas and then runs ``create schema if not exists`` for the missing
ones. Two dbt tasks starting together (two model tasks of one layer, both in ``analytics_staging``) can
both find the schema missing; PostgreSQL then fails the slower ``create schema if not exists`` with a
unique violation on ``pg_namespace`` (the check and the insert are not atomic), and that task fails.

:func:`ensure_schemas` runs first, in the task: for each schema the selected nodes write to (taken from
the build-time manifest) that does not exist yet, it creates it and treats "another session created it at
the same moment" (unique violation, duplicate schema) as done. dbt then finds every schema there and
creates none. Schemas that exist are never touched (no CREATE privilege is needed for them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_provider_dataeng.dbt.manifest import RENDERED_TYPES, Manifest

CREATING_COMMANDS = ("build", "run", "seed", "snapshot")


def node_schemas(manifest: Manifest, uids: Iterable[str], database: str | None) -> set[str]:
    """Schemas of the nodes ``uids`` that dbt creates relations in (nodes of ``database`` or with none)."""
    out: set[str] = set()
    for uid in uids:
        node = manifest.nodes.get(uid)
        if node is None or node.resource_type not in RENDERED_TYPES or not node.schema:
            continue
        if node.materialized == "ephemeral" or (database and node.database and node.database != database):
            continue
        out.add(node.schema)
    return out


def selected_schemas(manifest: Manifest, select: Sequence[str] | str | None, exclude: Sequence[str] | str | None,
                     selector: str | None, database: str | None) -> set[str]:
    """Schemas written by the models, seeds and snapshots a dbt selection picks in ``manifest``."""
    from airflow_provider_dataeng.dbt.selection import select_nodes

    return node_schemas(manifest, select_nodes(manifest, select, exclude, selector, RENDERED_TYPES), database)


def ensure_schemas(conn: Any, schemas: Iterable[str], log: logging.Logger | logging.LoggerAdapter) -> list[str]:
    """Create the missing ``schemas`` on an autocommit psycopg connection; returns those this call created.

    A schema created by a concurrent session between the check and the ``create`` counts as there.
    """
    from psycopg import errors, sql

    created: list[str] = []
    for schema in sorted(set(schemas)):
        if conn.execute("select 1 from pg_namespace where nspname = %s", (schema,)).fetchone():
            continue
        try:
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        except (errors.UniqueViolation, errors.DuplicateSchema):
            log.info("Schema %s was created by another session at the same moment: using it", schema)
            continue
        log.info("Created schema %s", schema)
        created.append(schema)
    return created
