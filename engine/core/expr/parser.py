"""Parsing: expression text into the syntax tree (``ast``), with lark's LALR parser.

lark's exceptions are turned into ``ExprError`` here, with the offset of the bad token
and a hint for the usual slips (``and`` for ``&&``, ``=`` for ``==``, ...).
"""

from __future__ import annotations

import re
from typing import Any

import lark

from engine.core.expr.ast import Binary, Call, Cond, Ident, Index, ListLit, Lit, Macro, Node, Select, Unary
from engine.core.expr.errors import ExprError
from engine.core.expr.maketables import GRAMMAR_FILE, build, grammar_digest

MAX_LENGTH = 10_000
MAX_DEPTH = 100
INT_MAX = 2**63 - 1
MACROS = ("exists", "all", "exists_one", "filter", "map")

_GRAMMAR = GRAMMAR_FILE.read_text(encoding="utf-8")


def _load_parser() -> tuple[lark.Lark, bool]:
    """The parser from the tables built ahead of time (``maketables``) when they were made from
    this grammar by this lark version, else built from the grammar; and whether it came from them."""
    from engine.core.expr import tables

    if grammar_digest(_GRAMMAR) == tables.GRAMMAR_SHA256 and lark.__version__ == tables.LARK_VERSION:
        try:
            loaded = lark.Lark._load_from_dict(tables.DATA, tables.MEMO, propagate_positions=True)  # type: ignore[no-untyped-call]
            return loaded, True
        except (lark.exceptions.LarkError, KeyError, TypeError, AttributeError):
            pass  # tables this lark cannot read: build them
    return build(_GRAMMAR), False


_PARSER, FROM_TABLES = _load_parser()

_HINTS = {
    "and": "write `&&` for and",
    "or": "write `||` for or",
    "not": "write `!` for not",
    "=": "write `==` to compare",
    "AND": "write `&&` for and",
    "OR": "write `||` for or",
}


def _unescape(text: str, offset: int) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    out, i = [], 0
    simple = {
        "n": "\n",
        "t": "\t",
        "r": "\r",
        "\\": "\\",
        '"': '"',
        "'": "'",
        "0": "\0",
        "a": "\a",
        "b": "\b",
        "f": "\f",
        "v": "\v",
        "?": "?",
        "`": "`",
    }
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt in ("u", "x", "U"):
            width = {"u": 4, "x": 2, "U": 8}[nxt]
            digits = body[i + 2 : i + 2 + width]
            try:
                out.append(chr(int(digits, 16)))
            except ValueError:
                raise ExprError(
                    f"bad escape `\\{nxt}{digits}`",
                    offset=offset + i + 1,
                    code="E103",
                    hint="write `\\u` followed by four hex digits",
                ) from None
            i += 2 + width
        else:
            raise ExprError(
                f"unknown escape `\\{nxt}`", offset=offset + i + 1, code="E103", hint="write `\\\\` for a backslash"
            )
    return "".join(out)


class _Build(lark.Transformer[Any, Node]):
    """lark tree -> our nodes. Positions come from lark's ``meta`` and tokens."""

    def __init__(self) -> None:
        super().__init__(visit_tokens=False)

    @staticmethod
    def _span(meta: Any) -> tuple[int, int]:
        return (meta.start_pos, meta.end_pos) if not meta.empty else (0, 0)

    @lark.v_args(meta=True)
    def cond(self, meta: Any, c: list[Node]) -> Node:
        return Cond(*self._span(meta), cond=c[0], then=c[1], other=c[2])

    @lark.v_args(meta=True)
    def or_(self, meta: Any, c: list[Node]) -> Node:
        return Binary(*self._span(meta), op="||", left=c[0], right=c[1])

    @lark.v_args(meta=True)
    def and_(self, meta: Any, c: list[Node]) -> Node:
        return Binary(*self._span(meta), op="&&", left=c[0], right=c[1])

    @lark.v_args(meta=True)
    def relation(self, meta: Any, c: list[Any]) -> Node:
        return Binary(*self._span(meta), op=str(c[1]), left=c[0], right=c[2])

    @lark.v_args(meta=True)
    def in_(self, meta: Any, c: list[Node]) -> Node:
        return Binary(*self._span(meta), op="in", left=c[0], right=c[1])

    @lark.v_args(meta=True)
    def arith(self, meta: Any, c: list[Any]) -> Node:
        return Binary(*self._span(meta), op=str(c[1]), left=c[0], right=c[2])

    @lark.v_args(meta=True)
    def not_(self, meta: Any, c: list[Node]) -> Node:
        return Unary(*self._span(meta), op="!", operand=c[0])

    @lark.v_args(meta=True)
    def neg(self, meta: Any, c: list[Node]) -> Node:
        start, end = self._span(meta)
        inner = c[0]
        if isinstance(inner, Lit) and type(inner.value) in (int, float) and not getattr(inner, "negated", False):
            lit = Lit(start, end, value=-inner.value)
            lit.negated = True  # type: ignore[attr-defined]  # `--1` must not fold twice
            return lit
        return Unary(start, end, op="-", operand=inner)

    @lark.v_args(meta=True)
    def select(self, meta: Any, c: list[Any]) -> Node:
        return Select(*self._span(meta), operand=c[0], field=str(c[1]))

    @lark.v_args(meta=True)
    def method(self, meta: Any, c: list[Any]) -> Node:
        target, name, args = c[0], str(c[1]), list(c[2] or [])
        start, end = self._span(meta)
        if name in MACROS and len(args) == 2:
            var = args[0]
            if not isinstance(var, Ident):
                raise ExprError(
                    f"the first argument of `{name}` must be a variable name",
                    offset=var.start,
                    code="E104",
                    hint=f"write e.g. `list.{name}(x, x > 0)`",
                )
            return Macro(start, end, name=name, target=target, var=var.name, body=args[1])
        return Call(start, end, name=name, target=target, args=args)

    @lark.v_args(meta=True)
    def index(self, meta: Any, c: list[Node]) -> Node:
        return Index(*self._span(meta), operand=c[0], index=c[1])

    @lark.v_args(meta=True)
    def ident(self, meta: Any, c: list[Any]) -> Node:
        return Ident(*self._span(meta), name=str(c[0]))

    @lark.v_args(meta=True)
    def call(self, meta: Any, c: list[Any]) -> Node:
        return Call(*self._span(meta), name=str(c[0]), args=list(c[1] or []))

    @lark.v_args(meta=True)
    def list_(self, meta: Any, c: list[Any]) -> Node:
        return ListLit(*self._span(meta), items=list(c[0] or []))

    def args(self, c: list[Node]) -> list[Node]:
        return list(c)

    @lark.v_args(meta=True)
    def float_(self, meta: Any, c: list[Any]) -> Node:
        return Lit(*self._span(meta), value=float(c[0]))

    @lark.v_args(meta=True)
    def int_(self, meta: Any, c: list[Any]) -> Node:
        value = int(c[0])
        start, end = self._span(meta)
        if value > INT_MAX + 1:  # INT_MAX + 1 is allowed only under a minus sign, checked in check()
            raise ExprError(
                f"the number `{c[0]}` is too large",
                offset=start,
                code="E105",
                hint="whole numbers must fit in 64 bits; write a decimal like `1e20`",
            )
        return Lit(start, end, value=value)

    @lark.v_args(meta=True)
    def string(self, meta: Any, c: list[Any]) -> Node:
        start, end = self._span(meta)
        return Lit(start, end, value=_unescape(str(c[0]), start))

    @lark.v_args(meta=True)
    def true(self, meta: Any, c: list[Any]) -> Node:
        return Lit(*self._span(meta), value=True)

    @lark.v_args(meta=True)
    def false(self, meta: Any, c: list[Any]) -> Node:
        return Lit(*self._span(meta), value=False)

    @lark.v_args(meta=True)
    def null(self, meta: Any, c: list[Any]) -> Node:
        return Lit(*self._span(meta), value=None)


def _depth_guard(text: str) -> None:
    depth = deepest = 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise ExprError(
                    f"the expression nests more than {MAX_DEPTH} brackets deep",
                    offset=i,
                    code="E106",
                    hint="split it into smaller rules",
                )
        elif ch in ")]":
            depth -= 1
    # long chains of operators nest too: bound the operator count
    operators = sum(text.count(op) for op in ("&&", "||", "+", "-", "*", "/", "!", "?", "."))
    if operators > 2_000:
        raise ExprError(
            "the expression has more than 2000 operators",
            offset=0,
            code="E106",
            hint="split it into smaller rules or use a decision table",
        )


def parse(text: str) -> Node:
    """The syntax tree of ``text``. Raises ``ExprError`` with the offset of the problem."""
    if not isinstance(text, str):
        raise ExprError("a condition must be text", offset=0, code="E100")
    if len(text) > MAX_LENGTH:
        raise ExprError(
            f"the expression is longer than {MAX_LENGTH} characters",
            offset=MAX_LENGTH,
            code="E106",
            hint="split it into smaller rules",
        )
    if not text.strip():
        raise ExprError("the expression is empty", offset=0, code="E101", hint='write a condition, or `"true"`')
    _depth_guard(text)
    try:
        tree = _PARSER.parse(text)
        node = _Build().transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, ExprError):
            raise exc.orig_exc from None
        raise ExprError(f"cannot read this expression: {exc.orig_exc}", offset=0, code="E100") from None
    except lark.UnexpectedCharacters as exc:
        at = exc.pos_in_stream or 0
        ch = text[at] if at < len(text) else ""
        hint = _HINTS.get(ch) or ('strings need double quotes, like `"gold"`' if ch and ch in "`’‘“”" else None)
        if ch == "=" and text[at : at + 2] != "==":
            hint = {"=>": "write `>=`", "=<": "write `<=`"}.get(text[at : at + 2], _HINTS["="])
        hint = hint or _FULL_WIDTH.get(ch)
        raise ExprError(f"unexpected character `{ch}`", offset=at, code="E102", hint=hint) from None
    except lark.UnexpectedToken as exc:
        tok = exc.token
        value = str(tok)
        pos = tok.start_pos if tok.start_pos is not None else len(text)
        percent = _percent_hint(text)
        if tok.type == "$END":
            raise ExprError(
                "the expression ends too early",
                offset=len(text),
                code="E101",
                hint=percent or _expected_hint(exc.expected),
            ) from None
        raise ExprError(
            f"unexpected `{value}`",
            offset=pos,
            code="E101",
            hint=percent or _HINTS.get(value) or _expected_hint(exc.expected),
        ) from None
    except lark.UnexpectedInput as exc:
        raise ExprError(
            "cannot read this expression", offset=getattr(exc, "pos_in_stream", 0) or 0, code="E101"
        ) from None
    except RecursionError:
        raise ExprError(
            "the expression nests too deep", offset=0, code="E106", hint="split it into smaller rules"
        ) from None
    assert isinstance(node, Node)
    _tree_depth_guard(node)
    return node


def _tree_depth_guard(root: Node) -> None:
    """Refuse trees deeper than ``MAX_DEPTH`` (long `||` chains nest too), iteratively."""
    from engine.core.expr.ast import children

    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExprError(
                f"the expression nests more than {MAX_DEPTH} levels deep",
                offset=root.start,
                code="E106",
                hint="split it into smaller rules, or test a list with `in [...]`",
            )
        stack.extend((child, depth + 1) for child in children(node))


_FULL_WIDTH = {
    ch: f"write `{ascii_}`: `{ch}` is a full-width character"
    for ch, ascii_ in zip(
        "\uff08\uff09\uff3b\uff3d\uff0c\uff02\uff1d\uff1e\uff1c\uff01\uff06\uff5c", '()[],"=><!&|', strict=True
    )
}


_STRINGS = re.compile(r""""(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?""")


def _percent_hint(text: str) -> str | None:
    """`>= 30%`: a share is written as a fraction, `0.3`."""
    code = _STRINGS.sub(lambda m: " " * len(m.group()), text)  # a `%` inside text is text
    m = re.search(r"(\d+(?:\.\d+)?)\s*%(?!\s*[\w(.])", code)
    if m is None:
        return None
    number = m.group(1)
    fraction = format(float(number) / 100, ".10g")
    return f"write `{fraction}` for {number}%: shares are fractions from 0 to 1"


_TOKEN_WORDS = {
    "RPAR": "`)`",
    "RSQB": "`]`",
    "COLON": "`:`",
    "COMMA": "`,`",
    "IDENT": "a name",
    "INT": "a number",
    "STRING": "a string",
}


def _expected_hint(expected: set[str]) -> str | None:
    words = [w for t, w in _TOKEN_WORDS.items() if t in expected]
    return f"expected {' or '.join(words)}" if words else None
