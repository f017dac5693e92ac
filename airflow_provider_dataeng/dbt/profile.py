"""dbt profiles built from an Airflow connection: no secret in any file.

The generated ``profiles.yml`` names one dbt-postgres target whose password is
``{{ env_var('DBT_ENV_SECRET_PASSWORD') }}``, a variable set only in the dbt process's environment (dbt
scrubs ``DBT_ENV_SECRET_*`` values from its logs).

Multi-host: dbt-postgres passes ``host`` verbatim to libpq (a comma-separated list works) but types
``port`` as one integer. When every host shares one port the profile names them all (``host: h1,h2``)
and libpq picks the node matching ``PGTARGETSESSIONATTRS`` (dbt-postgres has no ``target_session_attrs``
key; libpq reads the variable). When the ports differ, the node that matches ``target_session_attrs`` is
resolved right before dbt starts and the profile points at it; after a failover the next Airflow try
resolves again and ``dbt retry`` resumes.
"""

from __future__ import annotations

import hashlib
import os
import pprint
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from airflow_provider_dataeng.hooks.postgres import FailoverPostgresHook

PASSWORD_ENV = "DBT_ENV_SECRET_PASSWORD"
PROFILE_NAME = "dataeng"
TARGET_NAME = "airflow"
DEFAULT_TARGET_SCHEMA = "analytics"
# dbt-postgres's connection_info(): (key, default) in its order; dbt hashes these values into the parse state.
_CONNECTION_INFO = (
    ("host", None), ("port", None), ("user", None), ("database", None), ("schema", None),
    ("connect_timeout", 10), ("role", None), ("search_path", None), ("keepalives_idle", 0), ("sslmode", None),
    ("sslcert", None), ("sslkey", None), ("sslrootcert", None), ("application_name", "dbt"),
    ("autocommit", False), ("retries", 1),
)
# libpq/dbt-postgres profile keys taken from the connection's extras when present.
SSL_EXTRAS = ("sslmode", "sslcert", "sslkey", "sslrootcert", "keepalives_idle", "application_name")


@dataclass(frozen=True)
class DbtProfile:
    """One dbt-postgres target generated from an Airflow connection (no password inside)."""

    host: str
    port: int
    user: str
    dbname: str
    schema: str
    threads: int = 1
    target_session_attrs: str = "read-write"
    connect_timeout: int = 10
    retries: int = 3
    extras: dict[str, Any] = field(default_factory=dict)

    def as_target(self) -> dict[str, Any]:
        """The ``outputs.<target>`` mapping for profiles.yml; the password is an env_var() reference."""
        target: dict[str, Any] = {
            "type": "postgres",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": "{{ env_var('" + PASSWORD_ENV + "', '') }}",
            "dbname": self.dbname,
            "schema": self.schema,
            "threads": self.threads,
            "connect_timeout": self.connect_timeout,
            "retries": self.retries,
        }
        target.update(self.extras)
        return target

    def profiles_yml(self) -> str:
        """profiles.yml text (safe to write: references the password, never contains it)."""
        doc = {PROFILE_NAME: {"target": TARGET_NAME, "outputs": {TARGET_NAME: self.as_target()}}}
        return yaml.safe_dump(doc, sort_keys=False)

    def connection_info(self) -> dict[str, Any]:
        """What dbt-postgres reports as the connection info of this target (no password)."""
        target = {("database" if k == "dbname" else k): v for k, v in self.as_target().items()}
        return {key: target.get(key, default) for key, default in _CONNECTION_INFO}

    def parse_hash(self) -> str:
        """dbt's ``profile_hash`` of a parse made with this target (see :mod:`~.workspace`)."""
        items = sorted(self.connection_info().items())
        return hashlib.sha256(pprint.pformat(items).encode("utf-8")).hexdigest()

    def env(self) -> dict[str, str]:
        """Non-secret environment for the dbt process (libpq honours PGTARGETSESSIONATTRS)."""
        return {
            "PGTARGETSESSIONATTRS": self.target_session_attrs,
            "DATAENG_DBT_HOST": self.host,
            "DATAENG_DBT_PORT": str(self.port),
            "DATAENG_DBT_USER": self.user,
            "DATAENG_DBT_DBNAME": self.dbname,
            "DATAENG_DBT_SCHEMA": self.schema,
        }


def parse_time_profile() -> DbtProfile:
    """The build-time profile for ``dbt parse``/``deps`` (no password, nothing is connected to).

    Fields from ``DATAENG_DBT_HOST/PORT/USER/DBNAME/SCHEMA`` (defaults: localhost, 5432, postgres,
    ``warehouse``, ``analytics``): the database and schema end up in every model's relation_name, hence in
    Asset URIs, so they should match production.
    """
    return DbtProfile(
        host=os.environ.get("DATAENG_DBT_HOST", "localhost"),
        port=int(os.environ.get("DATAENG_DBT_PORT", "5432")),
        user=os.environ.get("DATAENG_DBT_USER", "postgres"),
        dbname=os.environ.get("DATAENG_DBT_DBNAME", "warehouse"),
        schema=os.environ.get("DATAENG_DBT_SCHEMA", DEFAULT_TARGET_SCHEMA),
    )


def profile_from_connection(
    hook: FailoverPostgresHook, *, target_schema: str | None = None, threads: int = 1
) -> tuple[DbtProfile, str | None]:
    """Build the dbt target for ``hook``'s connection; returns ``(profile, password)``.

    Connects only when the connection lists hosts on different ports (to resolve the node matching
    ``target_session_attrs``; dbt-postgres takes a single port).
    """
    conn = hook.connection
    extras = conn.extra_dejson
    hosts = hook.hosts
    if not conn.login:
        raise ValueError(f"connection {hook.get_conn_id()!r}: login is empty; dbt needs a user")
    if not hook.dbname:
        raise ValueError(f"connection {hook.get_conn_id()!r}: schema (the database name) is empty")
    ports = {p for _, p in hosts}
    if len(ports) == 1:
        host, port = ",".join(h for h, _ in hosts), ports.pop()
    else:
        host, port = resolve_session_host(hook)
        hook.log.info(
            "Hosts %s use different ports and dbt-postgres takes one port: resolved the %s node %s:%d",
            ",".join(f"{h}:{p}" for h, p in hosts), hook.target_session_attrs, host, port,
        )
    profile_extras = {k: extras[k] for k in SSL_EXTRAS if extras.get(k) not in (None, "")}
    profile = DbtProfile(
        host=host,
        port=int(port),
        user=conn.login,
        dbname=hook.dbname,
        schema=target_schema or extras.get("dbt_schema") or DEFAULT_TARGET_SCHEMA,
        threads=int(threads),
        target_session_attrs=hook.target_session_attrs,
        connect_timeout=int(extras.get("connect_timeout", 10)),
        retries=int(extras.get("dbt_connect_retries", 3)),
        extras=profile_extras,
    )
    return profile, conn.password or None


def resolve_session_host(hook: FailoverPostgresHook) -> tuple[str, int]:
    """Connect through the hook (all hosts, target_session_attrs, backoff) and return where it landed."""
    with hook.connection_scope() as conn:
        info = conn.info
        return str(info.host), int(info.port)
