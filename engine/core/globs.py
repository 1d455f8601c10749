"""Field patterns: globs over a record's dotted paths (``address.*``, ``contacts[].email``).

A path joins keys with ``.``; the items of a list of objects share the path ``name[]``. In a
pattern ``*`` is any run of characters (dots included), ``?`` one character, ``[abc]`` and
``[a-z]`` one of a set (``[!abc]`` one not in it), and ``[]`` is always the list marker, as in
paths: ``orders[].items[].sku`` reads two levels of lists (``fnmatch`` took ``[].items[]`` for
one character set, and such a pattern never matched).

``impossible`` names the patterns no path can match, so the loader refuses them.
"""

from __future__ import annotations

import re
from functools import lru_cache

_LIST = "[]"


def _tokens(pattern: str) -> list[tuple[str, str]]:
    """(kind, text) pieces: ``list`` (``[]``), ``set`` (``[...]``), ``star``, ``one``, or ``text``
    (one character); an opening ``[`` without its ``]`` is ``text``."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith(_LIST, i):
            out.append(("list", _LIST))
            i += 2
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            j = pattern.find("]", j)
            if j < 0:
                out.append(("text", c))
                i += 1
            else:
                out.append(("set", pattern[i + 1 : j]))
                i = j + 1
        elif c == "*":
            out.append(("star", c))
            i += 1
        elif c == "?":
            out.append(("one", c))
            i += 1
        else:
            out.append(("text", c))
            i += 1
    return out


def _set(body: str) -> str:
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    parts = [c if c == "-" and 0 < k < len(body) - 1 else re.escape(c) for k, c in enumerate(body)]
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


@lru_cache(maxsize=4096)
def translate(pattern: str) -> str:
    """The regular expression (for ``re.match``: it ends at the path's end) of a field pattern."""
    out = []
    for kind, text in _tokens(pattern):
        if kind == "list":
            out.append(r"\[\]")
        elif kind == "set":
            out.append(_set(text))
        elif kind == "star":
            out.append(".*")
        elif kind == "one":
            out.append(".")
        else:
            out.append(re.escape(text))
    return "(?s:" + "".join(out) + r")\Z"


def matches(pattern: str, path: str) -> bool:
    """Whether ``pattern`` matches the whole of ``path``."""
    return re.match(translate(pattern), path) is not None


def impossible(pattern: str) -> tuple[str, str] | None:
    """Why no record's path can match ``pattern`` (and what to write), or None when one can."""
    tokens = _tokens(pattern)
    for k, (kind, text) in enumerate(tokens):
        after = tokens[k + 1] if k + 1 < len(tokens) else None
        if kind == "text" and text == "[":
            return (
                "has a `[` that opens no list marker `[]` or set `[...]`",
                "write `name[].field` for a field of each item of the list `name`",
            )
        if kind == "list" and after is not None and after[0] == "text" and after[1] != ".":
            return (
                "has `[]` followed by a name: a list's items are written `name[].field`",
                "put a `.` after `[]`",
            )
    plain = "".join(text if kind == "text" else "x" for kind, text in tokens)
    if plain.startswith(".") or plain.endswith(".") or ".." in plain:
        return ("has an empty name between dots", "write one name between two dots, like `address.city`")
    try:
        re.compile(translate(pattern))
    except re.error:
        return ("has a set `[...]` that cannot be read", "write a set like `[0-9]` or `[abc]`")
    return None
