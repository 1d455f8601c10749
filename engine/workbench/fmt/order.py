"""The canonical order of keys: the order the shipped policies are written in.

``key_order`` names the known keys of a mapping, in order, by where the mapping sits in a
policy of a given kind: the shared parts' order is here, each domain states its own
sections' (``Domain.sections``, ``Domain.key_order``); ``canonical`` puts a mapping's keys
in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from engine.core.load import DocPath
from engine.plugins import installed

HEAD = "charter kind id title description owner clause effective_from effective_to mode uses"
SHARED = {  # facts, scores, outputs and decision tables; `*` is a name the officer chooses
    "facts.*": "type items min max required nullable default allowed max_length sensitive description",
    "scores.*": "scorer expr args description",
    "outputs.*": "type values description",
    "tables[]": "id hit inputs output outputs default title description owner clause rules",
    "tables[].rules[]": "id when match then message title description owner clause",
}
Pattern = tuple[tuple[str, ...], tuple[str, ...]]


def _pattern(text: str) -> tuple[str, ...]:
    return tuple(part for name in text.split(".") for part in ((name[:-2], "[]") if name.endswith("[]") else (name,)))


@cache
def _patterns(kind: str) -> tuple[tuple[str, ...], tuple[Pattern, ...]] | None:
    """A known kind's top-level order and its key orders by path pattern; None for an unknown kind."""
    domain = installed().domains.get(kind)  # built-in and third-party: each states its own order
    if domain is None:
        return None
    orders = {**SHARED, **domain.key_order}
    top = (*HEAD.split(), *domain.sections)
    return top, tuple((_pattern(p), tuple(order.split())) for p, order in orders.items())


def key_order(kind: str | None, path: DocPath) -> tuple[str, ...] | None:
    """The known keys, in order, of the mapping at ``path`` of a ``kind`` policy; None: keep its order.

    Mappings whose keys the officer names (facts, outputs, roles, ``then:``...) keep their
    order; so does every mapping below the top of a file of no known kind. In a known kind, a
    list item in a list not named here gets its ``id`` first.
    """
    known = _patterns(kind) if kind is not None else None
    if not path:
        return known[0] if known is not None else tuple(HEAD.split())
    if known is None:
        return None
    shape = tuple("[]" if isinstance(p, int) else p for p in path)
    for pattern, order in known[1]:
        if len(pattern) == len(shape) and all(
            p == s or (p == "*" and s != "[]") for p, s in zip(pattern, shape, strict=True)
        ):
            return order
    return ("id",) if isinstance(path[-1], int) else None


def canonical(keys: Sequence[str], order: Sequence[str]) -> list[str]:
    """``keys`` in ``order``; keys it does not name follow, in their own order."""
    rank = {k: i for i, k in enumerate(order)}
    return sorted((k for k in keys if k in rank), key=rank.__getitem__) + [k for k in keys if k not in rank]
