"""Types of the condition language, as the checker sees them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Type:
    """A primitive type: int, double, bool, string, null, timestamp, duration or dyn."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ListType(Type):
    elem: Type

    def __init__(self, elem: Type) -> None:
        object.__setattr__(self, "name", "list")
        object.__setattr__(self, "elem", elem)

    def __str__(self) -> str:
        return f"list({self.elem})"


@dataclass(frozen=True)
class MapType(Type):
    key: Type
    value: Type

    def __init__(self, key: Type, value: Type) -> None:
        object.__setattr__(self, "name", "map")
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "value", value)

    def __str__(self) -> str:
        return f"map({self.key}, {self.value})"


@dataclass(frozen=True, eq=False)
class ObjectType(Type):
    """A record with declared fields (``customer``, ``scores``, ``outputs``); a dict at run time."""

    fields: Mapping[str, Type] = field(default_factory=dict)

    def __init__(self, name: str, fields: Mapping[str, Type]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fields", dict(fields))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectType) and other.name == self.name and other.fields == self.fields

    def __hash__(self) -> int:
        return hash(("object", self.name, tuple(sorted(self.fields))))

    def __str__(self) -> str:
        return self.name


INT = Type("int")
UINT = Type("uint")
DOUBLE = Type("double")
BOOL = Type("bool")
STRING = Type("string")
NULL = Type("null")
TIMESTAMP = Type("timestamp")
DURATION = Type("duration")
DYN = Type("dyn")

NUMERIC = (INT, DOUBLE)

TypeEnv = Mapping[str, Type]
