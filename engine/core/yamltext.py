"""Stage 1, load, before the YAML parser: characters an editor or an input method slips in.

A tab, a non-breaking space, a full-width `：` or `，`, a curly `“`: YAML either fails on them
with a sentence about tokens, some lines later, or, worse, reads them as text and changes
the policy without a word (`[name，phone]` is one item). ``scan`` walks the raw text once,
keeping track of quoted text, comments, block text (`|`, `>`) and `[...]`/`{...}`, and names
each such character where it would change the YAML, with the exact fix. Inside quoted text,
comments and block text they are the officer's own words and left alone.

The scan runs only when the text holds one of these characters at all (``SUSPECT``), so a
clean file costs one regular-expression search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.errors import Location, PolicyError

# spaces that look like a space and are not one (U+FEFF is a byte-order mark only at the start)
ODD_SPACES: dict[str, tuple[str, str]] = {
    "\u00a0": ("a non-breaking space", "write a plain space"),
    "\u1680": ("an Ogham space mark", "write a plain space"),
    **{chr(c): ("a typographic space", "write a plain space") for c in range(0x2000, 0x200B)},
    "\u200b": ("a zero-width space", "delete it"),
    "\u202f": ("a narrow non-breaking space", "write a plain space"),
    "\u205f": ("a mathematical space", "write a plain space"),
    "\u3000": ("a full-width (ideographic) space", "write a plain space"),
    "\ufeff": ("a byte-order mark (a zero-width no-break space)", "delete it"),
}

# what an input method types for YAML's punctuation: the character, its name and the ASCII one meant
FULL_WIDTH: dict[str, tuple[str, str]] = {
    "\uff1a": ("a full-width colon", ":"),
    "\uff0c": ("a full-width comma", ","),
    "\u3001": ("an ideographic comma", ","),
    "\uff1b": ("a full-width semicolon", ","),
    "\uff3b": ("a full-width bracket", "["),
    "\uff3d": ("a full-width bracket", "]"),
    "\uff5b": ("a full-width brace", "{"),
    "\uff5d": ("a full-width brace", "}"),
    "\uff08": ("a full-width parenthesis", "("),
    "\uff09": ("a full-width parenthesis", ")"),
}
QUOTES: dict[str, tuple[str, str]] = {
    "\uff02": ("a full-width quotation mark", '"'),
    "\u201c": ("a curly (smart) quote", '"'),
    "\u201d": ("a curly (smart) quote", '"'),
    "\u2018": ("a curly (smart) quote", "'"),
    "\u2019": ("a curly (smart) quote", "'"),
}
_SEPARATORS = ("\uff0c", "\u3001", "\uff1b")
_CLOSERS = ("\uff3d", "\uff5d")
_OPENERS = ("\uff3b", "\uff5b")

SUSPECT = re.compile("[\t" + "".join(ODD_SPACES) + "".join(FULL_WIDTH) + "".join(QUOTES) + "]")


def describe(ch: str) -> str:
    """`a full-width comma `，` (U+FF0C)`: what the character is, shown when it is visible."""
    if ch == "\t":
        return "a tab"
    name = (ODD_SPACES.get(ch) or FULL_WIDTH.get(ch) or QUOTES.get(ch) or ("a character", ""))[0]
    if ch in ODD_SPACES:
        return f"{name} (U+{ord(ch):04X})"
    return f"{name} `{ch}` (U+{ord(ch):04X})"


def tab_error(path: str, at: tuple[int, int], message: str = "a tab: YAML allows only spaces here") -> PolicyError:
    """A tab outside quoted text: YAML refuses it, as indentation and between tokens."""
    hint = "indent with spaces only: write spaces instead of the tab" if "indentation" in message else None
    return PolicyError(message, Location(path, *at), code="P040", hint=hint or "write a space instead of the tab")


def scan(text: str, path: str) -> list[PolicyError]:
    """Every tab, odd space and full-width or curly punctuation that would change the YAML."""
    body = text[1:] if text.startswith("\ufeff") else text
    if SUSPECT.search(body) is None:
        return []
    scanner = _Scanner(path)
    for number, line in enumerate(text.split("\n"), 1):
        scanner.line(number, line.rstrip("\r"))
    return scanner.errors


@dataclass
class _Scanner:
    path: str
    errors: list[PolicyError] = field(default_factory=list)
    flow: list[str] = field(default_factory=list)  # the open `[` and `{`
    quote: str | None = None  # a quoted text that goes on past the end of the line
    block: int | None = None  # inside block text (`|`, `>`): lines indented more than this are text
    more_text: int | None = None  # the last line ended in plain text: lines indented more continue it
    key_column: int = 0  # where the line's last key started (a block text's parent)
    indent: int = 0
    n: int = 0

    def error(self, column: int, code: str, message: str, hint: str) -> None:
        self.errors.append(PolicyError(message, Location(self.path, self.n, column + 1), code=code, hint=hint))

    # -- lines ------------------------------------------------------------------------------

    def line(self, n: int, s: str) -> None:
        self.n = n
        self.indent = indent = len(s) - len(s.lstrip(" "))
        if self.block is not None:
            if not s.strip(" ") or indent > self.block:
                return
            self.block = None
        i, start, key = 0, True, not self.flow
        if self.quote is not None:
            i = self.quoted(s, 0, self.quote)
            if i < 0:
                return
            start = key = False
        else:
            i = self.leading(s)
            if self.more_text is not None and not self.flow and indent > self.more_text and s.strip():
                key = False  # more of the text the line above ends with
        self.key_column = indent
        last_plain = self.tokens(s, i, start, key)
        if s.strip() and not self.flow and self.quote is None:
            self.more_text = self.key_column if last_plain else None

    def leading(self, s: str) -> int:
        i = 0
        while i < len(s) and (s[i] in " \t" or s[i] in ODD_SPACES):
            ch = s[i]
            if ch == "\t":
                self.errors.append(tab_error(self.path, (self.n, i + 1), f"a tab in the indentation of line {self.n}"))
            elif ch != " " and not (self.n == 1 and i == 0 and ch == "\ufeff"):
                self.odd_space(i, ch, " in the indentation")
            i += 1
        return i

    def odd_space(self, i: int, ch: str, where: str) -> None:
        fix = ODD_SPACES[ch][1]
        looks = "an invisible character that YAML reads as text" if fix == "delete it" else "it looks like a space"
        if fix != "delete it":
            looks += " but YAML reads it as text"
        self.error(i, "P041", f"{describe(ch)}{where}: {looks}", fix)

    # -- tokens -----------------------------------------------------------------------------

    def tokens(self, s: str, i: int, start: bool, key: bool) -> bool:
        """Scan the rest of a line; whether it ends inside plain (unquoted) text."""
        plain = False
        while i < len(s):
            ch = s[i]
            if ch == " ":
                i += 1
                continue
            if ch == "\t" or ch in ODD_SPACES:
                self.gap(s, i)
                i += 1
                continue
            if ch == "#" and (i == 0 or s[i - 1] in " \t"):
                return False
            if start:
                nxt = s[i + 1] if i + 1 < len(s) else " "
                if ch in "\"'":
                    i = self.quoted(s, i + 1, ch, opened=True)
                    if i < 0:
                        return False
                    start, plain = False, False
                    continue
                if ch in "[{":
                    self.flow.append(ch)
                    i, start, key, plain = i + 1, True, ch == "{", False
                    continue
                if ch in "-?" and nxt in " \t" and not self.flow:
                    i, start, key, plain = i + 1, True, True, False
                    self.key_column = i
                    continue
                if ch in "|>" and not self.flow:
                    self.block = self.key_column
                    return False
                if ch in "&*!":  # an anchor, alias or tag: its name, then (for `&` and `!`) a value
                    while i < len(s) and s[i] not in " \t,[]{}":
                        i += 1
                    start = ch != "*"
                    continue
                if ch in QUOTES:
                    self.error(
                        i,
                        "P043",
                        f"{describe(ch)} opens this value: YAML does not read it as a quote, "
                        "so it becomes part of the text",
                        f"write `{QUOTES[ch][1]}`: `{_ascii(s, i, bool(self.flow))}`",
                    )
                elif ch in _OPENERS:
                    self.error(
                        i,
                        "P042",
                        f"{describe(ch)} opens this value: YAML reads it as text, not as a list or mapping",
                        f"write `{FULL_WIDTH[ch][1]}`: `{_ascii(s, i, bool(self.flow))}`",
                    )
            if ch in ",]}" and self.flow:
                if ch != ",":
                    self.flow.pop()
                i += 1
                start, key, plain = ch == ",", ch == "," and self.flow[-1:] == ["{"], False
                continue
            if ch in "[{" and self.flow:
                self.flow.append(ch)
                i, start, key, plain = i + 1, True, ch == "{", False
                continue
            if ch == ":" and not start:
                i, start, key, plain = i + 1, True, False, False
                continue
            i, start, key = self.plain(s, i, key)
            plain = not start
        return plain

    def gap(self, s: str, i: int) -> None:
        ch = s[i]
        before = s[:i].rstrip(" \t" + "".join(ODD_SPACES)).split(" ")[-1][-20:]
        after = f" after `{before}`" if before else ""
        if ch == "\t":
            self.errors.append(tab_error(self.path, (self.n, i + 1), f"a tab{after}: YAML allows only spaces here"))
        else:
            self.odd_space(i, ch, after)

    def full_width(self, i: int, ch: str, what: str) -> None:
        self.error(i, "P042", f"{describe(ch)} {what}", f"write `{FULL_WIDTH[ch][1]}`")

    def quoted(self, s: str, i: int, q: str, *, opened: bool = False) -> int:
        """The index after the closing quote, or -1 when the quoted text goes on to the next line."""
        while i < len(s):
            ch = s[i]
            if q == '"' and ch == "\\":
                i += 2
                continue
            if ch == q:
                if q == "'" and s[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                self.quote = None
                return i + 1
            i += 1
        self.quote = q
        return -1

    def plain(self, s: str, i: int, key: bool) -> tuple[int, bool, bool]:
        """Scan plain text from ``i``: (the index after it, whether a value starts there, key)."""
        begin, merged = i, False
        if key:
            self.key_column = i
        while i < len(s):
            ch = s[i]
            nxt = s[i + 1] if i + 1 < len(s) else " "
            if ch == ":" and (nxt in " \t" or (self.flow and nxt in ",[]{}")):
                break
            if self.flow and ch in ",[]{}":
                break
            if ch in " \t" and nxt == "#":
                break
            if ch == "\t" or ch in ODD_SPACES:
                self.gap(s, i)
            elif self.flow and ch in _SEPARATORS:
                if not merged:
                    self.separator(s, begin, i, ch)
                merged = True
            elif self.flow and ch in _CLOSERS:
                self.full_width(i, ch, "inside a list: YAML does not read it as the end of the list")
            elif ch == "\uff1a" and key and (nxt in " \t" or begin == self.indent or self.flow):
                word, rest = s[begin:i].strip(), re.split(" #|[,\\]}]" if self.flow else " #", s[i + 1 :])[0].strip()
                self.error(
                    i,
                    "P042",
                    f"{describe(ch)} after `{word}`: YAML does not read `{word}` as a key",
                    f"write `:` followed by a space: `{word}: {rest}`" if rest else f"write `:`: `{word}:`",
                )
                return i + 1, True, False
            i += 1
        return i, False, key

    def separator(self, s: str, begin: int, i: int, mark: str) -> None:
        begin = max(s.rfind(",", 0, i), s.rfind("[", 0, i), s.rfind("{", 0, i)) + 1
        end = i
        while end < len(s) and s[end] not in ",]}" and not (s[end] == "#" and s[end - 1] in " \t"):
            end += 1
        item = s[begin:end].strip()
        items = ", ".join(part.strip() for part in re.split("[" + "".join(_SEPARATORS) + "]", item))
        self.error(
            i,
            "P013",
            f"{describe(mark)} inside a list: YAML reads `{item}` as one item",
            f"write `,` (a plain comma) between the items: `{items}`",
        )


_TO_ASCII = str.maketrans({ch: ascii_ for ch, (_, ascii_) in (FULL_WIDTH | QUOTES).items()})


def _ascii(s: str, i: int, in_flow: bool = False) -> str:
    """The rest of the line from ``i`` (without a comment) with every full-width or curly mark
    made ASCII; inside `[...]` or `{...}`, up to the bracket that closes it."""
    text = re.split(r"\s#", s[i:])[0].strip().translate(_TO_ASCII)
    return flow_part(text, "]}") if in_flow else text


def flow_part(text: str, stops: str) -> str:
    """``text`` up to the first of ``stops`` outside double or single quotes (a bracket that
    closes the list the text is in, or a comma that ends its item)."""
    quote = ""
    for j, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in stops:
            return text[:j].rstrip()
    return text
