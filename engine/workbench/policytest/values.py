"""How a test's values are written back to the officer: as JSON has them, shortened to a line."""

from __future__ import annotations

import json
from typing import Any

from engine.core.decision import jsonable


class _Missing:
    """What a key that is not there holds, told apart from a `null` value."""

    def __repr__(self) -> str:
        return "nothing"


MISSING: Any = _Missing()


def show(value: Any, limit: int = 200) -> str:
    if value is MISSING:
        return "nothing (no such key)"
    text = json.dumps(jsonable(value), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
