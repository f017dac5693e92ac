"""Small value helpers shared by the whole provider: list coercion, first lines, Jinja detection."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any


def as_list(value: Iterable[str] | str | None) -> list[str] | None:
    """A list of strings from a string (one element), a sequence, or None (stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


def first_line(value: BaseException | str | None, limit: int = 300) -> str:
    """The first non-empty line of an error or a text, cut to ``limit`` characters.

    An exception with an empty message gives its class name, so a log line is never blank.
    """
    text = str(value or "").strip()
    lines = text.splitlines()
    if lines:
        return lines[0][:limit]
    return type(value).__name__ if isinstance(value, BaseException) else ""


def is_templated(*values: Any) -> bool:
    """Whether any value (strings, or containers of them, searched recursively) holds Jinja markup."""
    for value in values:
        if isinstance(value, str):
            if "{{" in value or "{%" in value:
                return True
        elif isinstance(value, dict):
            if is_templated(*value.keys(), *value.values()):
                return True
        elif isinstance(value, list | tuple | set | frozenset):
            if is_templated(*value):
                return True
    return False


def import_path(path: str) -> Any:
    """Import ``package.module.Name`` (raises ImportError/AttributeError with the path in the message)."""
    import importlib

    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ImportError(f"{path!r} is not a dotted import path")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each exported name from its module on first use, so importing
    a package (e.g. to read its ``spec``) does not load its engine, drivers or Airflow classes."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
