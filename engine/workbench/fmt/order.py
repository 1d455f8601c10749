"""The canonical order of keys: the order the shipped policies are written in.

``key_order`` names the known keys of a mapping, in order, by where the mapping sits in a
policy of a given kind; ``canonical`` puts a mapping's keys in that order.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.core.load import DocPath

_TAIL = "message title description owner clause"  # a rule's own words come last
HEAD = "charter kind id title description owner clause effective_from effective_to mode uses"
SECTIONS = {  # after HEAD, by kind
    "tiering": "facts scores outputs bands tables",
    "classification": "classes rules",
    "access": "actions purposes roles obligations rules exceptions",
    "retention": "record_types hold_fields rules",
    "escalation": "categories severities warning_at calendars clocks priority ladder event_backend churn_patterns",
}
SHARED = {  # facts, scores, outputs, bands and decision tables; `*` is a name the officer chooses
    "facts.*": "type items min max required nullable default allowed max_length sensitive description",
    "scores.*": "scorer expr args description",
    "outputs.*": "type values description",
    "bands[]": "id output score title description owner clause bands",
    "bands[].bands[]": f"id value from to {_TAIL}",
    "tables[]": "id hit inputs output outputs default title description owner clause rules",
    "tables[].rules[]": f"id when match then {_TAIL}",
}
DOMAINS = {
    "classification": {
        "classes[]": "id label title clause description owner message handling",
        "classes[].handling": "encrypt_at_rest cipher mask export graded_permissions purposes",
        "rules[]": f"id class fields detector {_TAIL}",
    },
    "access": {
        "roles.*": "inherits description owner clause",
        "obligations.*": "always description clause",
        "rules[]": f"id effect mask roles classes actions purposes when obligations {_TAIL}",
        "exceptions[]": "id owner expires subjects roles classes actions purposes when waives mask obligations"
        " message title description clause",
    },
    "retention": {"rules[]": f"id record_types classes obligation period starts action {_TAIL}"},
    "escalation": {
        "calendars.*": "description utc_offset days from to holidays",
        "clocks[]": f"id stops within categories severities complexity calendar {_TAIL}",
        "priority[]": f"tier factor {_TAIL}",
        "ladder[]": "level owner at after actions message title description clause",
        "churn_patterns[]": f"id first then absent within unless score_at_most actions {_TAIL}",
    },
}


def _pattern(text: str) -> tuple[str, ...]:
    return tuple(part for name in text.split(".") for part in ((name[:-2], "[]") if name.endswith("[]") else (name,)))


_PATTERNS = {
    kind: [(_pattern(p), tuple(order.split())) for p, order in {**SHARED, **DOMAINS.get(kind, {})}.items()]
    for kind in SECTIONS
}


def key_order(kind: str | None, path: DocPath) -> tuple[str, ...] | None:
    """The known keys, in order, of the mapping at ``path`` of a ``kind`` policy; None: keep its order.

    Mappings whose keys the officer names (facts, outputs, roles, ``then:``...) keep their
    order; so does every mapping below the top of a file of no known kind. In a known kind, a
    list item in a list not named here gets its ``id`` first.
    """
    if not path:
        return tuple(f"{HEAD} {SECTIONS.get(kind or '', '')}".split())
    if kind not in SECTIONS:
        return None
    shape = tuple("[]" if isinstance(p, int) else p for p in path)
    for pattern, order in _PATTERNS[kind]:
        if len(pattern) == len(shape) and all(
            p == s or (p == "*" and s != "[]") for p, s in zip(pattern, shape, strict=True)
        ):
            return order
    return ("id",) if isinstance(path[-1], int) else None


def canonical(keys: Sequence[str], order: Sequence[str]) -> list[str]:
    """``keys`` in ``order``; keys it does not name follow, in their own order."""
    rank = {k: i for i, k in enumerate(order)}
    return sorted((k for k in keys if k in rank), key=rank.__getitem__) + [k for k in keys if k not in rank]
