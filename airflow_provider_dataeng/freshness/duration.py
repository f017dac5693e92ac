"""Durations for SLAs: ``timedelta``, seconds, ``"30m"``/``"6h"``/``"2d"``/``"1h30m"`` or dbt's ``{count, period}``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DBT_PERIODS = {"minute": 60, "hour": 3600, "day": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+$")

DurationLike = timedelta | int | float | str | dict[str, Any]


def parse_duration(value: DurationLike | None, *, field: str) -> timedelta | None:
    """Return ``value`` as a ``timedelta`` (``None`` stays ``None``).

    Accepts a ``timedelta``, a number of seconds, a string of ``<number><unit>`` parts with units
    s, m, h, d, w (``"30m"``, ``"6h"``, ``"2d"``, ``"1h30m"``) or dbt's ``{"count": 12, "period": "hour"}``.
    Raises ``ValueError`` naming ``field`` for anything else, or for a negative duration.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{field}={value!r}: expected a duration like '30m', '6h', '2d' or a timedelta")
    elif isinstance(value, (int, float)):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not _WHOLE.match(text):
            raise ValueError(
                f"{field}={value!r}: expected a duration like '90s', '30m', '6h', '2d', '1w' or '1h30m'"
            )
        result = timedelta(seconds=sum(float(n) * UNIT_SECONDS[u] for n, u in _PART.findall(text)))
    elif isinstance(value, dict):
        count, period = value.get("count"), value.get("period")
        if not isinstance(count, (int, float)) or isinstance(count, bool) or period not in DBT_PERIODS:
            raise ValueError(
                f"{field}={value!r}: expected {{'count': <number>, 'period': 'minute'|'hour'|'day'}}"
            )
        result = timedelta(seconds=count * DBT_PERIODS[period])
    else:
        raise ValueError(
            f"{field}={value!r}: expected a duration like '30m', '6h', '2d', a number of seconds or a timedelta"
        )
    if result < timedelta(0):
        raise ValueError(f"{field}={value!r}: a duration cannot be negative")
    return result


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
