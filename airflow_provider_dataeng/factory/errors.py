"""Config errors that name the file, the line, the field path, what was expected and what was found."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PathT = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """``("tasks", "orders", "retries")`` -> ``tasks.orders.retries``; list indexes as ``[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``word`` (difflib), or None."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return matches[0] if matches else None


@dataclass
class ConfigIssue:
    """One problem in one config file."""

    file: str
    path: PathT
    message: str
    line: int | None = None
    expected: str | None = None
    found: str | None = None
    suggestion: str | None = None

    def format(self) -> str:
        """``FILE:LINE: field.path: message (expected ..., found ...; did you mean ...?)``."""
        text = self.message
        details = []
        if self.expected is not None:
            details.append(f"expected {self.expected}")
        if self.found is not None:
            details.append(f"found {self.found}")
        if details:
            text += f" ({'; '.join(details)})"
        if self.suggestion:
            text += f"; did you mean '{self.suggestion}'?"
        return f"{self.file}:{self.line or 1}: {format_path(self.path)}: {text}"


@dataclass
class ConfigError(Exception):
    """All the problems found in one or more config files (raised together, reported together)."""

    issues: list[ConfigIssue] = field(default_factory=list)
    salvage: Any = field(default=None, compare=False, repr=False)
    """What could be read of the failed pipeline (merged with its defaults), for its placeholder DAG."""

    def __post_init__(self) -> None:
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(issue.format() for issue in self.issues)

    def __str__(self) -> str:
        return self.format()


def found_repr(value: object, limit: int = 60) -> str:
    """A short, log-safe rendering of a found value with its YAML type."""
    kind = {
        bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({kind})"
