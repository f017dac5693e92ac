"""FreshnessSpec: the parameters of a freshness SLA task (config ``type: freshness``, ``FreshnessSensor``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, PlainValidator, model_validator
from pydantic.json_schema import SkipJsonSchema

from airflow_provider_dataeng.notifications.spec import NotifierSpec
from airflow_provider_dataeng.specs import ConnId, PeriodDuration, TableName, TaskSpec
from airflow_provider_dataeng.values import is_templated


def _notifier_object(value: Any) -> Any:
    """A notifier built in Python: a ``BaseNotifier`` or any callable taking the context (or a list of them)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(callable(item) and not isinstance(item, (dict, str)) for item in items):
        raise ValueError("expected a notifier: {notifier: <class path>, kwargs: {...}}, a BaseNotifier or a callable")
    return value


NotifierObject = Annotated[Any, PlainValidator(_notifier_object)]
"""A ``BaseNotifier`` instance or a callable (Python DAGs only; configs give a :class:`NotifierSpec`)."""


class FreshnessSpec(TaskSpec):
    """Wait until a table's newest row is fresh enough (dbt source-freshness semantics).

    Past ``warn_after``: success with a warning and a ``warn`` notification. Past ``error_after`` (or no
    rows): keep waiting until the sensor's ``timeout``, then an ``error`` notification and failure.
    """

    conn_id: ConnId = Field(description="Airflow connection to the warehouse")
    table: TableName = Field(description="'schema.table' or 'table' (schema public); templated")
    timestamp_column: str | None = Field(
        default=None, min_length=1,
        description="Load-time column: a probe is select max(col), answered from an index on col; templated",
    )
    loaded_at_query: str | None = Field(
        default=None, min_length=1,
        description="Instead of timestamp_column: SQL returning one timestamp (like dbt's loaded_at_query); templated",
    )
    filter: str | None = Field(
        default=None, min_length=1,
        description="SQL boolean expression limiting the rows considered (with timestamp_column); templated",
    )
    warn_after: PeriodDuration | None = Field(default=None, description="Lag past which the check warns")
    error_after: PeriodDuration | None = Field(default=None, description="Lag past which the SLA is breached")
    deferrable: bool | None = Field(
        default=None,
        description="Wait in the triggerer instead of a worker slot (default: [operators] default_deferrable)",
    )
    notifier: NotifierSpec | list[NotifierSpec] | SkipJsonSchema[NotifierObject] | None = Field(
        default=None, description="Notifier(s) called on a warning and on a breach (context key 'freshness')",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FreshnessSpec:
        if bool(self.timestamp_column) == bool(self.loaded_at_query):
            raise ValueError("set exactly one of timestamp_column or loaded_at_query")
        if self.loaded_at_query and self.filter:
            raise ValueError("filter applies to timestamp_column only; put the condition into loaded_at_query")
        if not is_templated(self.table):
            from airflow_provider_dataeng.freshness.probe import split_table_name

            split_table_name(self.table, field="table")
        from airflow_provider_dataeng.freshness.status import FreshnessSLA

        FreshnessSLA(warn_after=self.warn_after, error_after=self.error_after)
        return self

    # -- what the engine needs ---------------------------------------------------------------------
    def check(self) -> Any:
        """The :class:`~airflow_provider_dataeng.freshness.check.FreshnessCheck` this spec describes."""
        from airflow_provider_dataeng.freshness.check import FreshnessCheck
        from airflow_provider_dataeng.freshness.probe import FreshnessQuery, split_table_name
        from airflow_provider_dataeng.freshness.status import FreshnessSLA

        schema, table = split_table_name(self.table, field="table")
        return FreshnessCheck(
            FreshnessQuery(schema=schema, table=table, timestamp_column=self.timestamp_column,
                           loaded_at_query=self.loaded_at_query, filter=self.filter),
            FreshnessSLA(warn_after=self.warn_after, error_after=self.error_after),
        )

    def notifiers(self) -> list[Callable[..., Any]]:
        """The notifiers to call (a config's ``{notifier, kwargs}`` is instantiated here, at run time)."""
        if self.notifier is None:
            return []
        from airflow_provider_dataeng.notifications.spec import make_notifier

        items = self.notifier if isinstance(self.notifier, (list, tuple)) else [self.notifier]
        return [make_notifier(item) if isinstance(item, NotifierSpec) else item for item in items]


def seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()
