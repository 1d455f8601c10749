"""Stage 1, load: PyYAML's errors in an officer's words, each kind with its own code.

PyYAML says where parsing failed ("expected ',' or ']', but got ':'", two lines after the
list that was never closed). ``explain`` turns each of its problems into a plain sentence
with a hint, located where the mistake is: an unclosed `[`, `{` or quote where it opened,
a missing space after `:` on the line that lacks it. No PyYAML sentence reaches the user;
a problem not recognised here is P001 in general words.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import yaml

from engine.core import yamltext
from engine.core.yamltext import QUOTES, tab_error
from engine.errors import Location, PolicyError

_CLOSE = {"[": "]", "{": "}"}
_LIST_WORD = {"[": "list", "{": "mapping"}
_ITEM_END = re.compile(r"[,\]}]")  # where an item of a flow list or mapping ends


class _Context:
    """One PyYAML error and the text it is about."""

    def __init__(self, exc: yaml.MarkedYAMLError, text: str, path: str) -> None:
        self.exc = exc
        self.text = text
        self.path = path
        self.lines = text.split("\n")
        self.problem = (exc.problem or "").rstrip(".")
        self.context = exc.context or ""
        self.mark = exc.problem_mark or exc.context_mark
        self.opened = exc.context_mark

    def line_of(self, mark: yaml.Mark | None) -> str:
        return self.lines[mark.line].rstrip("\r") if mark is not None and mark.line < len(self.lines) else ""

    def at(self, mark: yaml.Mark | None, code: str, message: str, hint: str, column: int | None = None) -> PolicyError:
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return PolicyError(message, Location(self.path, line, column or col), code=code, hint=hint)

    def found(self) -> str:
        m = re.search(r"(?:found|got) (?:character )?'(.*?)'(?: that|$)", self.problem) or re.search(
            r"found (?:undefined alias |undefined tag handle |duplicate anchor )?'(.*?)'", self.problem + self.context
        )
        return _unrepr(m.group(1)) if m else ""

    def rest(self, mark: yaml.Mark | None) -> str:
        """The text of the mark's line from the mark on, without a comment."""
        return re.split(r"\s#", self.line_of(mark)[mark.column :] if mark else "")[0].strip()

    def last_content_line(self, before: int) -> int:
        """The 0-based number of the last line before ``before`` that holds more than a comment."""
        for n in range(min(before, len(self.lines)) - 1, -1, -1):
            stripped = self.lines[n].strip()
            if stripped and not stripped.startswith("#"):
                return n
        return 0

    def tokens_before(self, index: int) -> list[yaml.Token]:
        """The tokens PyYAML read before ``index`` (it read them all before it failed)."""
        from engine.core.load import PolicyLoader

        out: list[yaml.Token] = []
        try:
            for token in yaml.scan(self.text, Loader=PolicyLoader):
                if token.start_mark.index >= index:
                    break
                out.append(token)
        except yaml.YAMLError:
            pass
        return out


def _unrepr(text: str) -> str:
    return {"\\t": "\t", "\\n": "\n", "\\x00": "\0"}.get(text, text)


def _key_column(line: str) -> int:
    """The 1-based column of the first key on a line (after `- ` list marks)."""
    m = re.match(r"[ ]*(?:-[ ]+)*", line)
    return (m.end() if m else 0) + 1


def _first_word(line: str) -> str:
    m = re.match(r"[ ]*(?:-[ ]+)*([^:\s]+:?)", line)
    return m.group(1) if m else line.strip()


def explain(exc: yaml.MarkedYAMLError, text: str, path: str) -> PolicyError:
    """The plain-language, located error for one PyYAML error."""
    cx = _Context(exc, text, path)
    for test, handler in _HANDLERS:
        if test in cx.problem or test in cx.context:
            answer = handler(cx)
            if answer is not None:
                return answer
    return unreadable(path, cx.mark)


def unreadable(path: str, mark: yaml.Mark | None) -> PolicyError:
    """A YAML problem with no code of its own, in general words."""
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return PolicyError(
        "YAML cannot read the file from here",
        Location(path, line, col),
        code="P001",
        hint="check the indentation and quoting on this line and the line before",
    )


# -- brackets and quotes -------------------------------------------------------------------


def _flow(cx: _Context) -> PolicyError:
    opened, mark = cx.opened, cx.mark
    assert opened is not None and mark is not None
    bracket = cx.line_of(opened)[opened.column : opened.column + 1] or "["
    close, got = _CLOSE.get(bracket, "]"), cx.found()
    where = f"the `{bracket}` opened on line {opened.line + 1}"
    if got in ("]", "}"):
        return cx.at(mark, "P045", f"{where} is closed with `{got}`", f"close the {_LIST_WORD[bracket]} with `{close}`")
    if got == "<scalar>":
        closed_late = _closed_late(cx)
        if closed_late is not None:
            return closed_late
    line = cx.line_of(mark)
    if got in ("[", "{") and mark.column and line[mark.column - 1] not in " ,[{":
        item = re.split(r"[,\]}]", line[max(line.rfind(",", 0, mark.column), opened.column) + 1 :])[0].strip()
        return cx.at(
            mark,
            "P068",
            f"`{got}` inside the unquoted item `{item}`: YAML reads it as the start of a new {_LIST_WORD[got]}",
            f'put the item in double quotes: `"{item}"`',
        )
    if got == "<scalar>" and mark.column and line[mark.column - 1] in "\"'":
        q = line[mark.column - 1]
        after = _ITEM_END.split(line[mark.column :])[0].strip()
        return cx.at(
            mark,
            "P055",
            f"`{after}` follows the closing `{q}` of an item",
            f"check the quotes: a `{q}` may be missing earlier on the line, or write `,` between the items",
        )
    first_on_line = not line[: mark.column].strip()
    looks_like_key = re.match(r"\s*(?:-\s+)?[^\s:#\[\]{},]+:(\s|$)", line) is not None
    if got == "<stream end>" or (mark.line > opened.line and (first_on_line or looks_like_key)):
        last = max(cx.last_content_line(mark.line), opened.line)
        on = "on that line" if last == opened.line else f"after its last item, on line {last + 1}"
        return cx.at(opened, "P044", f"{where} is never closed", f"close it with `{close}` {on}")
    item = line[: mark.column].rstrip()
    start = max(item.rfind(" "), item.rfind(bracket), item.rfind(",")) + 1 if got == ":" else mark.column
    word = line[start : mark.column].strip() if got == ":" else re.split(r"[,\]}]|\s#", line[start:])[0].strip()
    return cx.at(
        mark,
        "P047",
        f"a `,` is missing before `{word}` in {where}",
        "separate the items with `, `",
        column=start + 1 if got in (":",) else None,
    )


def _quote_never_closed(cx: _Context) -> PolicyError:
    opened = cx.opened
    q = cx.line_of(opened)[opened.column : opened.column + 1] if opened else '"'
    line = opened.line + 1 if opened else 1
    return cx.at(opened, "P046", f"the `{q}` opened on line {line} is never closed", _close_quote_hint(cx, q, opened))


def _close_quote_hint(cx: _Context, q: str, opened: yaml.Mark | None) -> str:
    hint = f"close it with `{q}` on line {opened.line + 1 if opened else 1}"
    curly = [ch for ch in cx.line_of(opened)[(opened.column + 1) if opened else 0 :] if ch in QUOTES]
    if curly and QUOTES[curly[0]][1] == q:
        hint += f": the `{curly[0]}` there is a curly quote, which YAML does not read as `{q}`"
    return hint


def _closed_late(cx: _Context) -> PolicyError | None:
    """A quote left open that a quote on a later line closed: the error shows after it."""
    assert cx.mark is not None
    tokens = cx.tokens_before(cx.mark.index)
    token = tokens[-1] if tokens else None
    if not isinstance(token, yaml.ScalarToken) or token.style not in ('"', "'"):
        return None
    if token.end_mark.line == token.start_mark.line:
        return None
    q, opened, closed = str(token.style), token.start_mark.line + 1, token.end_mark.line + 1
    return cx.at(
        token.start_mark,
        "P046",
        f"the `{q}` opened on line {opened} is closed only on line {closed}",
        _close_quote_hint(cx, q, token.start_mark),
    )


def code(text: str) -> str:
    """``text`` in backticks, also when it holds a backtick."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _after_value(cx: _Context) -> PolicyError | None:
    """`expected <block end>, but found '<scalar>'`: text after a quoted value or a `[...]`."""
    mark = cx.mark
    assert mark is not None
    tokens = cx.tokens_before(mark.index)
    scalars = [t for t in tokens if isinstance(t, yaml.ScalarToken)]
    last = tokens[-1] if tokens else None
    closed_late = _closed_late(cx)
    if closed_late is not None:
        return closed_late
    if scalars and last is scalars[-1] and scalars[-1].style in ('"', "'"):
        q = str(scalars[-1].style)
        inner = "`''` for an apostrophe" if q == "'" else '`\\"` for a quote mark'
        return cx.at(
            mark,
            "P055",
            f"`{cx.rest(mark)}` follows the closing `{q}` of the value",
            f"inside {'single' if q == chr(39) else 'double'} quotes write {inner}, "
            "or quote the whole value with the other kind of quote; or a quote is missing earlier on the line",
        )
    if isinstance(last, (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)):
        bracket = "]" if isinstance(last, yaml.FlowSequenceEndToken) else "}"
        return cx.at(
            mark,
            "P055",
            f"`{cx.rest(mark)}` follows the closing `{bracket}`",
            "put it inside the brackets, or quote the whole value",
        )
    return None


# -- indentation and keys ------------------------------------------------------------------


def _block_end(cx: _Context) -> PolicyError | None:
    mark = cx.mark
    assert mark is not None
    got = cx.found()
    if got == "<scalar>":
        answer = _after_value(cx)
        if answer is not None:
            return answer
    if got == "-":
        return cx.at(
            mark,
            "P051",
            "a `- ` list item among the keys of a mapping",
            "write `key: value` here, or put the `- ` items under a key that ends with `:` and has no value",
        )
    word = _first_word(cx.line_of(mark)[mark.column :]) or cx.rest(mark)
    hint = _indent_hint(cx, mark)
    return cx.at(mark, "P052", f"`{word}` is not lined up with the lines above it", hint)


def _indent_hint(cx: _Context, mark: yaml.Mark) -> str:
    places: list[str] = []
    seen: set[int] = set()
    for n in range(mark.line - 1, -1, -1):
        line = cx.lines[n]
        if not line.strip() or line.strip().startswith("#"):
            continue
        col = _key_column(line)
        if col not in seen and col != mark.column + 1:
            seen.add(col)
            places.append(f"column {col}, like `{_first_word(line[col - 1 :])}` on line {n + 1}")
        if col == 1 or len(places) == 2:
            break
    if not places:
        return "indent it like the keys of its mapping"
    return "start it in " + " or in ".join(places)


def _mapping_values(cx: _Context) -> PolicyError:
    """`mapping values are not allowed here`: a `: ` inside unquoted text, or a key read as more text."""
    mark = cx.mark
    assert mark is not None
    scalars = [t for t in cx.tokens_before(mark.index) if isinstance(t, yaml.ScalarToken)]
    token = scalars[-1] if scalars else None
    if token is not None and token.start_mark.line < mark.line:
        first = cx.line_of(token.start_mark)
        nospace = re.search(r"[^\s:]:(?=[^\s/])", first)
        if nospace:
            colon = nospace.start() + 1
            key, value = first[:colon].strip(" -"), first[colon + 1 :].split(" #")[0].strip()
            return cx.at(
                token.start_mark,
                "P067",
                f"`{key}:{value}` has no space after the `:`, so YAML does not read `{key}` as a key",
                f"write `{key}: {value}`",
                column=colon + 1,
            )
        word = _first_word(cx.line_of(mark))
        return cx.at(
            mark,
            "P049",
            f"`{word}` is read as more of the text on line {token.start_mark.line + 1}: "
            "it is indented deeper than the key above it",
            f"indent it like the keys above it, in column {_key_column(first)}",
            column=_key_column(cx.line_of(mark)),
        )
    line = cx.line_of(mark)
    value_at = token.start_mark.column if token is not None else mark.column
    text = re.split(r"\s#", line[value_at:])[0].strip()
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return cx.at(
        mark,
        "P048",
        f"`: ` inside the unquoted text `{text}`",
        f'put the text in double quotes: `"{quoted}"`',
    )


def _simple_key(cx: _Context) -> PolicyError:
    """`could not find expected ':'`: a line of a mapping that is not `key: value`."""
    opened = cx.opened or cx.mark
    text = cx.rest(opened)
    nospace = re.match(r"([^\s:]+):(\S.*)$", text)
    if nospace:
        key, value = nospace.groups()
        return cx.at(
            opened,
            "P067",
            f"`{text}` has no space after the `:`, so YAML does not read `{key}` as a key",
            f"write `{key}: {value}`",
            column=(opened.column + 1 + len(key) + 1) if opened else None,
        )
    parts = text.split(None, 1)
    hint = f"write `{parts[0]}: {parts[1]}`" if len(parts) == 2 else f"write `{text}:` and its value"
    return cx.at(opened, "P050", f"`{text}` has no `:` after its key", hint + ", or put the line in quotes")


def _sequence_here(cx: _Context) -> PolicyError:
    mark = cx.mark
    line = cx.line_of(mark)
    if mark is not None and line[: mark.column].strip():
        return cx.at(
            mark,
            "P053",
            "a `- ` list cannot start on the line of its key",
            f"put `{cx.rest(mark)}` on the next line, indented under the key",
        )
    return cx.at(
        mark,
        "P053",
        "a `- ` list item under a key that already has a value",
        "remove the value after the key above to make it a list, or line the `- ` up with the other items",
    )


# -- characters, anchors, tags -------------------------------------------------------------


def _cannot_start(cx: _Context) -> PolicyError:
    ch, mark = cx.found(), cx.mark
    if ch == "\t":
        return tab_error(cx.path, (mark.line + 1, mark.column + 1) if mark else (1, 1))
    value = cx.rest(mark).replace('"', '\\"')
    return cx.at(
        mark,
        "P054",
        f"{code(ch)} cannot start a value without quotes: YAML keeps it for its own use",
        f"put the value in double quotes: {code(chr(34) + value + chr(34))}",
    )


def _alias(cx: _Context) -> PolicyError:
    name, mark = cx.found(), cx.mark
    return cx.at(
        mark,
        "P057",
        f"`*{name}` refers to no anchor: nothing above is marked `&{name}`",
        f'mark the value to repeat with `&{name}` first; for text starting with `*` write `"*{name}"`',
    )


def _anchor_syntax(cx: _Context) -> PolicyError:
    opened = cx.opened or cx.mark
    sign = cx.line_of(opened)[opened.column : opened.column + 1] if opened else "*"
    what = "an alias (a repeat of a value marked `&name`)" if sign == "*" else "an anchor (a name for this value)"
    value = cx.rest(opened)
    before = cx.line_of(opened)[: opened.column] if opened else ""
    if before.count("[") + before.count("{") > before.count("]") + before.count("}"):
        value = yamltext.flow_part(value, ",]}")  # an item of a `[...]` list: just the item
    value = value.replace('"', '\\"')
    return cx.at(opened, "P058", f"`{sign}` at the start of unquoted text starts {what}", f'write `"{value}"`')


def _duplicate_anchor(cx: _Context) -> PolicyError:
    name = cx.found()
    err = cx.at(cx.mark, "P059", f"the anchor `&{name}` is defined twice", "give each anchor its own name")
    if cx.opened is not None:
        err.related = Location(cx.path, cx.opened.line + 1, cx.opened.column + 1)
    return err


def _second_document(cx: _Context) -> PolicyError:
    return cx.at(
        cx.mark,
        "P060",
        "a second YAML document starts here (`---`)",
        "one policy file holds one document: remove the `---`, or move what follows into its own file",
    )


def _document_start(cx: _Context) -> PolicyError:
    return cx.at(
        cx.mark,
        "P061",
        f"`{_first_word(cx.line_of(cx.mark))}` comes after the end of the document",
        "everything in a policy file belongs to the mapping that starts the file: "
        "remove a `...` line above, or indent the line like the other keys",
    )


def _tag(cx: _Context) -> PolicyError:
    tag = cx.found() or cx.rest(cx.mark).split(" ")[0]
    return tag_error(cx.path, cx.mark, tag)


def tag_error(path: str, mark: yaml.Mark | None, tag: str) -> PolicyError:
    """A YAML tag (`!foo`, `!!python/object`): policy files use none."""
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    if tag.startswith("tag:yaml.org,2002:"):  # as the officer wrote it: `!!python/object`
        tag = "!!" + tag.removeprefix("tag:yaml.org,2002:")
    return PolicyError(
        f"`{tag}` is a YAML tag, which policy files do not use",
        Location(path, line, col),
        code="P062",
        hint=f'remove `{tag}`; for text starting with `!` write it in double quotes, like `"{tag}"`',
    )


def _block_header(cx: _Context) -> PolicyError:
    opened = cx.opened or cx.mark
    sign = cx.line_of(opened)[opened.column : opened.column + 1] if opened else "|"
    return cx.at(
        cx.mark,
        "P063",
        f"`{cx.rest(cx.mark)}` after `{sign}`: only `-`, `+` or a digit may follow `{sign}` on its line",
        f"start the text on the next line, indented; for text starting with `{sign}` put it in double quotes",
    )


def _escape(cx: _Context) -> PolicyError:
    mark = cx.mark
    line = cx.line_of(mark)
    back = line.rfind("\\", 0, (mark.column + 1) if mark else 0)
    seq = line[back : back + 2] if back >= 0 else "\\"
    return cx.at(
        mark,
        "P056",
        f"`{seq}` is not an escape YAML knows inside double quotes",
        f"write `\\{seq}` for a backslash, or put the text in single quotes: `'…{seq}…'`",
        column=back + 1 if back >= 0 else None,
    )


def _node_content(cx: _Context) -> PolicyError:
    got, mark = cx.found(), cx.mark
    if got == ",":
        return cx.at(mark, "P064", "an empty item: two `,` with nothing between them", "remove one `,`")
    if got in ("]", "}"):
        return cx.at(mark, "P064", f"`{got}` closes nothing: no `{'[' if got == ']' else '{'}` is open", "remove it")
    return cx.at(mark, "P064", f"a value is missing before `{got}`", "write the value, or put the text in quotes")


def _directive(cx: _Context) -> PolicyError:
    return cx.at(
        cx.mark,
        "P065",
        "a line starting with `%` is a YAML directive, which policy files do not use",
        "remove the line; for text starting with `%` put it in double quotes",
    )


def _merge(cx: _Context) -> PolicyError:
    return cx.at(
        cx.mark,
        "P066",
        "`<<:` merges a mapping into this one, and this is not a mapping",
        "write `<<: *name` where `&name` marks a mapping, or remove the `<<:` line",
    )


def _mapping_keys(cx: _Context) -> PolicyError:
    return cx.at(
        cx.mark, "P050", "a `?` key is not allowed here", "write `key: value`; for text starting with `?` use quotes"
    )


_HANDLERS: tuple[tuple[str, Callable[[_Context], PolicyError | None]], ...] = (
    ("expected the node content", _node_content),
    ("expected ',' or", _flow),
    ("while scanning a quoted scalar", _quote_never_closed),
    ("found unknown escape character", _escape),
    ("hexadecimal numbers", _escape),
    ("expected <block end>", _block_end),
    ("mapping values are not allowed", _mapping_values),
    ("could not find expected ':'", _simple_key),
    ("sequence entries are not allowed", _sequence_here),
    ("mapping keys are not allowed", _mapping_keys),
    ("that cannot start any token", _cannot_start),
    ("found undefined alias", _alias),
    ("while scanning an alias", _anchor_syntax),
    ("while scanning an anchor", _anchor_syntax),
    ("found duplicate anchor", _duplicate_anchor),
    ("expected a single document", _second_document),
    ("expected '<document start>'", _document_start),
    ("tag", _tag),
    ("while scanning a block scalar", _block_header),
    ("directive", _directive),
    ("YAML document", _directive),
    ("for merging", _merge),
)
