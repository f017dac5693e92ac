"""Durations in config (``"2s"``, ``"500ms"``, ``1.5``) as seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*$")


def parse_seconds(value: str | float | int | timedelta, field: str = "duration") -> float:
    """Seconds from a number, a timedelta or text like ``2s``, ``500ms``, ``1.5m``, ``1h``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"{field}: expected a duration like '2s' or '500ms', got {value!r}")
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"{field}: expected a duration like '2s' or '500ms', got {value!r}")
    if seconds < 0:
        raise ValueError(f"{field}: must not be negative, got {value!r}")
    return seconds
