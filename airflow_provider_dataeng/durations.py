"""Durations in configs and operator arguments, parsed one way everywhere.

Accepted: a ``timedelta``; a number of seconds; text of ``<number><unit>`` parts with units ms, s, m (or
min), h, d, w (``"500ms"``, ``"90s"``, ``"30m"``, ``"6h"``, ``"2d"``, ``"1h30m"``); or dbt's
``{"count": 12, "period": "hour"}``. Errors name the field and say what was expected.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

UNIT_SECONDS = {"ms": 0.001, "s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DBT_PERIODS = {"minute": 60, "hour": 3600, "day": 86400}
_UNIT = r"(ms|min|s|m|h|d|w)"
_PART = re.compile(rf"(\d+(?:\.\d+)?)\s*{_UNIT}")
_WHOLE = re.compile(rf"^\s*(?:\d+(?:\.\d+)?\s*{_UNIT}\s*)+$")
EXPECTED = "a duration like '500ms', '90s', '30m', '6h', '2d' or '1h30m', a number of seconds or a timedelta"

DurationLike = timedelta | int | float | str | dict[str, Any]


def parse_duration(value: DurationLike | None, *, field: str) -> timedelta | None:
    """Return ``value`` as a ``timedelta``; ``None`` stays ``None``. ``ValueError`` names ``field``."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{field}={value!r}: expected {EXPECTED}")
    elif isinstance(value, (int, float)):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not _WHOLE.match(text):
            raise ValueError(f"{field}={value!r}: expected {EXPECTED}")
        result = timedelta(seconds=sum(float(n) * UNIT_SECONDS[u] for n, u in _PART.findall(text)))
    elif isinstance(value, dict):
        count, period = value.get("count"), value.get("period")
        if not isinstance(count, (int, float)) or isinstance(count, bool) or period not in DBT_PERIODS:
            raise ValueError(f"{field}={value!r}: expected {{'count': <number>, 'period': 'minute'|'hour'|'day'}}")
        result = timedelta(seconds=count * DBT_PERIODS[period])
    else:
        raise ValueError(f"{field}={value!r}: expected {EXPECTED}")
    if result < timedelta(0):
        raise ValueError(f"{field}={value!r}: a duration cannot be negative")
    return result


def require_duration(value: DurationLike | None, field: str) -> timedelta:
    """Like :func:`parse_duration`, but ``None`` is an error too."""
    result = parse_duration(value, field=field)
    if result is None:
        raise ValueError(f"{field}=None: expected {EXPECTED}")
    return result


def parse_seconds(value: DurationLike, field: str = "duration") -> float:
    """The duration in seconds (``"2s"`` -> 2.0, ``"500ms"`` -> 0.5)."""
    return require_duration(value, field).total_seconds()


def format_duration(value: timedelta | float | None) -> str:
    """Compact human form: ``7h 2m 5s``, ``2d 3h``, ``450ms``; ``-`` for ``None``."""
    if value is None:
        return "-"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:.0f}ms"
    whole = int(round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return sign + " ".join(parts[:3])
