"""Task specs: the one definition of each task type's parameters, and the field types they share.

Each engine package owns the spec of its task type (``extract.spec.ExtractSpec``, ...): a pydantic model
subclassing :class:`TaskSpec`. The same model is

- the factory's params model for that ``type`` (and so the JSON Schema of the config),
- the source of the operator's keyword defaults (``spec_default``), and
- what the operator builds after templating (``build_spec``) and hands to the engine.

Nothing else repeats a parameter's name, type or default.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

from airflow_provider_dataeng import durations
from airflow_provider_dataeng.values import as_list

DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|min|s|m|h|d|w)\s*)+$"
DURATION_HELP = "a duration like '90s', '5m', '1h', '1d', '1w' or '1h30m', or a number of seconds"


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors (with a did-you-mean)."""

    # defer_build: a model's validator is built on first use, so unused task types cost nothing at parse time
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True,
                              defer_build=True)


class SharedModel(StrictModel):
    """Base of small models nested in many others (assets, notifiers, pod resources): validator built when the
    class is created, so each model nesting one reuses it instead of generating its own copy on first use
    (a task pod's parse builds the pipeline, defaults and task models once each: ~30% less pydantic work)."""

    model_config = ConfigDict(defer_build=False)


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

def _parse_period_duration(value: Any) -> timedelta:
    """A duration, or dbt's ``{"count": 12, "period": "hour"}``."""
    if isinstance(value, dict):
        result = durations.parse_duration(value, field="duration")
        assert result is not None
        return result
    return parse_duration(value)


PeriodDuration = Annotated[
    timedelta,
    PlainValidator(_parse_period_duration),
    WithJsonSchema({
        "anyOf": [
            *_DURATION_JSON["anyOf"],
            {"type": "object", "additionalProperties": False, "required": ["count", "period"],
             "properties": {"count": {"type": "number", "minimum": 0},
                            "period": {"enum": sorted(durations.DBT_PERIODS)}}},
        ],
        "description": DURATION_HELP + ", or dbt's {count: 12, period: hour}",
    }),
]
"""A :data:`Duration` that also takes dbt source freshness's ``{count, period}`` form."""

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
StrList = Annotated[list[str] | str, AfterValidator(as_list)]
"""A list of strings; a single string is a one-element list."""


class AssetSpec(SharedModel):
    """An Airflow Asset given by URI (and optionally name, group and extra)."""

    uri: str = Field(min_length=1, description="The Asset URI, e.g. postgres://host:5432/db/schema/table")
    name: str | None = Field(default=None, description="The Asset name (default: the URI)")
    group: str | None = Field(default=None, description="The Asset group (default: asset)")
    extra: dict[str, Any] | None = Field(default=None, description="Extra metadata stored with the Asset")


AssetRef = str | AssetSpec
"""An Asset URI string or an :class:`AssetSpec` mapping."""


class TaskSpec(StrictModel):
    """Base of every task type's spec (engine parameters; unknown keys are errors)."""


SpecT = TypeVar("SpecT", bound=TaskSpec)


def spec_default(spec: type[TaskSpec], name: str) -> Any:
    """The default of ``spec``'s field ``name``, for an operator's keyword default (``None`` when the field
    has a default factory or is required; the spec fills it in)."""
    info = spec.model_fields[name]
    if info.default_factory is not None or info.is_required():
        return None
    return info.default


def spec_values(source: Any, spec: type[TaskSpec]) -> dict[str, Any]:
    """The spec's fields read as attributes of ``source`` (an operator); ``None`` means "use the default"."""
    values = {}
    for name in spec.model_fields:
        value = getattr(source, name, None)
        if value is not None:
            values[name] = value
    return values


def build_spec(source: Any, spec: type[SpecT], **overrides: Any) -> SpecT:
    """Validate ``source``'s attributes (an operator, after templating) into ``spec``."""
    return spec.model_validate({**spec_values(source, spec), **overrides})


def task_spec(task: Any, spec: type[SpecT]) -> SpecT:
    """:func:`build_spec` for an operator: a validation error becomes a ``ValueError`` naming the task."""
    from pydantic import ValidationError

    try:
        return build_spec(task, spec)
    except ValidationError as exc:
        raise ValueError(f"{getattr(task, 'task_id', type(task).__name__)}: {describe_errors(exc)}") from None


def describe_errors(exc: Any) -> str:
    """A pydantic ``ValidationError`` as one line per problem: ``field='value': what was expected``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        if where and not isinstance(value, dict) and error["type"] != "missing":
            parts.append(f"{where}={value!r}: {message}")
        else:
            parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
