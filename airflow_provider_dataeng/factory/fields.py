"""Field types shared by the config models: durations, connection ids, dotted paths, Asset references."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints, WithJsonSchema

from airflow_provider_dataeng import durations

DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|min|s|m|h|d|w)\s*)+$"
DURATION_HELP = "a duration like '90s', '5m', '1h', '1d', '1w' or '1h30m', or a number of seconds"


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors (with a did-you-mean)."""

    # defer_build: a model's validator is built on first use, so unused task types cost nothing at parse time
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True,
                              defer_build=True)


def parse_duration(value: Any) -> timedelta:
    """``"1h30m"``, ``"90s"``, ``5`` (seconds) or a ``timedelta`` -> ``timedelta`` (the provider's one duration
    grammar, :mod:`airflow_provider_dataeng.durations`); ValueError saying what is expected otherwise."""
    if value is None or isinstance(value, dict):
        raise ValueError(f"expected {DURATION_HELP}")
    try:
        result = durations.parse_duration(value, field="duration")
    except ValueError as exc:
        raise ValueError(f"expected {DURATION_HELP}" + ("; a duration cannot be negative"
                                                        if "negative" in str(exc) else "")) from None
    assert result is not None
    return result


def _check_duration_text(value: Any) -> Any:
    """Validate a duration but keep the original value (operators parse their own duration strings)."""
    parse_duration(value)
    return value


_DURATION_JSON = {
    "anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, {"type": "number", "minimum": 0}],
    "description": DURATION_HELP,
}

Duration = Annotated[timedelta, PlainValidator(parse_duration), WithJsonSchema(_DURATION_JSON)]
"""A duration turned into a ``timedelta`` (retry delays, timeouts, schedules)."""

DurationText = Annotated[str | int | float, PlainValidator(_check_duration_text), WithJsonSchema(_DURATION_JSON)]
"""A duration passed to an operator as written (operators parse ``"2s"`` themselves)."""

ConnId = Annotated[
    str,
    StringConstraints(pattern=r"^([A-Za-z0-9_.\-]+|.*\{\{.*\}\}.*)$", min_length=1, max_length=250),
    Field(description="An Airflow connection id (credentials live in the connection, never in configs)"),
]
DottedPath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"),
    Field(description="A Python import path, e.g. airflow.providers.standard.operators.empty.EmptyOperator"),
]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]+$", min_length=1, max_length=200)]
TableName = Annotated[str, StringConstraints(min_length=1), Field(description="schema.table or table")]


class AssetSpec(StrictModel):
    """An Airflow Asset given by URI (and optionally name, group and extra)."""

    uri: str = Field(min_length=1)
    name: str | None = None
    group: str | None = None
    extra: dict[str, Any] | None = None


AssetRef = str | AssetSpec
"""An Asset URI string or an :class:`AssetSpec` mapping."""
