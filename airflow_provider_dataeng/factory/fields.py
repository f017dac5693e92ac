"""Field types shared by the config models: durations, connection ids, dotted paths, Asset references."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints, WithJsonSchema

UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+$"
_DURATION_WHOLE = re.compile(DURATION_PATTERN)
DURATION_HELP = "a duration like '90s', '5m', '1h', '1d', '1w' or '1h30m', or a number of seconds"


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors (with a did-you-mean)."""

    # defer_build: a model's validator is built on first use, so unused task types cost nothing at parse time
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True,
                              defer_build=True)


def parse_duration(value: Any) -> timedelta:
    """``"1h30m"``, ``"90s"``, ``5`` (seconds) or a ``timedelta`` -> ``timedelta``; ValueError otherwise."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HELP}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str) and _DURATION_WHOLE.match(value.lower()):
        return timedelta(
            seconds=sum(float(n) * UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value.lower()))
        )
    raise ValueError(f"expected {DURATION_HELP}")


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
