"""What a policy domain declares about itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Domain:
    """A policy kind: its name, the schema sections it adds and what it needs at evaluation."""

    kind: str
    description: str
    schema_extra: dict[str, Any] = field(default_factory=dict)
