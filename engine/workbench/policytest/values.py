"""How a test's values are written back to the officer: as JSON has them, shortened to a line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any


class _Missing:
    """What a key that is not there holds, told apart from a `null` value."""

    def __repr__(self) -> str:
        return "nothing"


MISSING: Any = _Missing()


def _plain(value: Any) -> Any:
    """A value as JSON has it: times in ISO form with `Z`, durations in seconds."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, BaseException):
        return str(value)
    return value


def show(value: Any, limit: int = 200) -> str:
    if value is MISSING:
        return "nothing (no such key)"
    text = json.dumps(_plain(value), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
