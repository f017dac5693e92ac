"""Turn pydantic validation errors into config issues: clean field paths, expected/found, did-you-mean."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from airflow_provider_dataeng.factory.errors import PathT, did_you_mean, found_repr

_EXPECTED = {
    "int": "an integer", "float": "a number", "bool": "a boolean (true/false)", "string": "a string",
    "str": "a string", "dict": "a mapping", "model": "a mapping", "list": "a list", "date": "a date (YYYY-MM-DD)",
    "datetime": "a date/time (YYYY-MM-DD or ISO 8601)", "none": "null", "url": "a URL",
}


@dataclass
class RawIssue:
    path: PathT
    message: str
    expected: str | None = None
    found: str | None = None
    suggestion: str | None = None


def _clean_path(loc: tuple[Any, ...], data: Any, keep_last: bool) -> PathT:
    """Drop pydantic's internal loc parts (union members, tags, validators) by walking the data."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif last and keep_last and isinstance(part, str):
            out.append(part)
    return tuple(out)


def _unwrap(tp: Any) -> list[Any]:
    """Member types of Annotated/Optional/Union types."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(tp) for m in _unwrap(a)]
    return [tp]


def _models_at(model: type[BaseModel], path: PathT, data: Any) -> list[type[BaseModel]]:
    """The model classes that describe the mapping at ``path`` (to list allowed keys)."""
    current: list[Any] = [model]
    node = data
    for part in path:
        nxt: list[Any] = []
        for tp in current:
            for member in _unwrap(tp):
                origin = get_origin(member)
                if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
                    if part in member.model_fields:
                        nxt.append(member.model_fields[part].annotation)
                elif origin is list and isinstance(part, int):
                    nxt.append(get_args(member)[0])
                elif origin is dict and isinstance(part, str):
                    nxt.append(get_args(member)[1])
        current = nxt
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
    models = [m for tp in current for m in _unwrap(tp) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) > 1 and isinstance(node, dict):  # a tagged union: keep the member the tag selects
        tagged = [m for m in models if _tag_matches(m, node)]
        models = tagged or models
    return models


def _tag_matches(model: type[BaseModel], node: dict[str, Any]) -> bool:
    for name, f in model.model_fields.items():
        if get_origin(f.annotation) is Literal and name in node:
            return node[name] in get_args(f.annotation)
    return False


def _expected_of(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return "one of " + expected.replace(" or ", ", ")
    if kind == "string_pattern_mismatch":
        return f"a string matching {err.get('ctx', {}).get('pattern')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        limit = next(iter(err.get("ctx", {}).values()), "")
        return f"a number {op} {limit}"
    if kind in ("too_short", "too_long"):
        return err["msg"].replace("List should have", "a list with").replace("Value should have", "with")
    stem = kind.split("_")[0]
    return _EXPECTED.get(stem, err["msg"].removeprefix("Input should be ").rstrip("."))


def issues_from_validation_error(exc: ValidationError, model: type[BaseModel], data: Any) -> list[RawIssue]:
    """One issue per field path (union branches merged into one 'expected a or b')."""
    grouped: dict[PathT, list[dict[str, Any]]] = {}
    for err in exc.errors(include_url=False):
        keep_last = err["type"] in ("missing", "extra_forbidden")
        path = _clean_path(tuple(err["loc"]), data, keep_last)
        grouped.setdefault(path, []).append(err)
    out: list[RawIssue] = []
    for path, errs in grouped.items():
        for err in errs:
            if err["type"] == "extra_forbidden":
                allowed = sorted({k for m in _models_at(model, path[:-1], data) for k in m.model_fields})
                out.append(RawIssue(path, f"unknown key '{path[-1]}'",
                                    expected="one of " + ", ".join(allowed) if allowed else None,
                                    suggestion=did_you_mean(str(path[-1]), allowed)))
            elif err["type"] == "missing":
                out.append(RawIssue(path, f"missing required key '{path[-1]}'"))
        rest = [e for e in errs if e["type"] not in ("extra_forbidden", "missing")]
        if not rest:
            continue
        deeper = any(len(other) > len(path) and other[: len(path)] == path for other in grouped)
        if deeper and all(e["type"].endswith(("_type", "_parsing")) for e in rest):
            continue  # a union branch of another shape; the branch that fits reported the real problem
        custom = [e for e in rest if e["type"] in ("value_error", "assertion_error")]
        if custom:
            msg = str(custom[0].get("ctx", {}).get("error") or custom[0]["msg"]).removeprefix("Value error, ")
            out.append(RawIssue(path, msg, found=_found(custom[0])))
            continue
        expected = []
        for e in rest:
            text = _expected_of(e)
            if text not in expected:
                expected.append(text)
        if len(expected) > 3:  # a wide union: the field's own description is more useful
            expected = expected[:3] + ["..."]
        out.append(RawIssue(path, "invalid value", expected=" or ".join(expected), found=_found(rest[0])))
    return out


def _found(err: dict[str, Any]) -> str | None:
    return found_repr(err.get("input")) if "input" in err else None
