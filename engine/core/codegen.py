"""The last compile step, ``codegen``: one straight-line Python function per bound policy.

It runs when a compiled policy is bound to its population snapshot (``Program``), because
the band cut points are constants of the generated code.

The closures of ``compile`` are exact but pay a Python call per syntax node. For the hot
path (a decision without ``--explain``) this pass writes the whole policy — fact checks,
scores, bands and tables — as one Python function, generated from the *checked* syntax
trees and declarations, never from policy text:

* every value from a policy enters the source through ``repr`` of an int, float, str or
  bool, or as a pre-built object referenced by a generated name (``K3``);
* names in the source are the generator's own (``C`` for the customer's facts, ``S``
  scores, ``O`` outputs, ``R7`` a rule, ...);
* before it is compiled, the generated module is parsed back and every node checked
  against a whitelist (``engine.core.pycode.verify``): no imports, no attribute other than a few string
  and dict methods, no call but to the generator's own helpers.

Exactness is kept by construction: a condition is emitted as Python only where Python's
operator means the same as CEL's for the checked types (comparisons, ``&&``, ``||``, ``!``,
double and time arithmetic, ``has``, ``size``, text tests, ``in`` a constant text list).
Anything else is a call to the exact closure of that sub-expression. If the emitted code
raises anything, the row is evaluated again by its exact closure, which handles CEL's
error absorption and writes the note; but ``BudgetExceeded`` (a comprehension or a built
text over the budget, counted by those closures) fails the decision at once, as the exact
path does. The test suite checks that both paths decide alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from engine.core.compile import CompiledPolicy, StepRun, TableParts, band_cuts
from engine.core.decision import FiredRule
from engine.core.expr import (
    BOOL,
    DOUBLE,
    DURATION,
    INT,
    STRING,
    TIMESTAMP,
    Binary,
    BudgetExceeded,
    Call,
    Cond,
    EvalError,
    ListLit,
    Lit,
    Node,
    Select,
    Unary,
    compile_expr,
    dotted,
)
from engine.core.expr.ast import children
from engine.core.expr.compiler import metered
from engine.core.facts import FactChecker, Reject, as_float, parse_timestamp
from engine.core.model import BandsDecl, FactDecl, TableDecl
from engine.core.pycode import build

_ROOTS = {"customer": "C", "scores": "S", "outputs": "O"}
_CMP = {"==", "!=", "<", "<=", ">", ">="}
_ORDERED = (INT, DOUBLE, STRING, TIMESTAMP, DURATION)
_ALLOWED_ATTRS = {"startswith", "endswith", "append", "get"}
_BIG = "1.7976931348623157e+308"


class _Gen:
    def __init__(self, compiled: CompiledPolicy) -> None:
        self.cp = compiled
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self.metered: dict[int, bool] = {}  # by node (id): whether its closure counts its work

    def ref(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def emit(self, line: str, depth: int = 1) -> None:
        self.lines.append("    " * depth + line)

    # -- expressions -------------------------------------------------------------------------

    def expr(self, node: Node) -> str:
        """Python text for ``node`` with CEL's meaning, or a call to its exact closure (always,
        for an expression that counts its work: one count for all of it, as on the exact path)."""
        text = None if self._metered(node) else self._expr(node)
        return text if text is not None else f"{self.ref('X', compile_expr(node))}(env)"

    def _metered(self, node: Node) -> bool:
        found = self.metered.get(id(node))
        if found is None:
            found = self.metered[id(node)] = metered(node)
            if not found:  # nothing inside it counts either: asked once for the whole tree
                stack = list(children(node))
                while stack:
                    n = stack.pop()
                    self.metered[id(n)] = False
                    stack.extend(children(n))
        return found

    def _expr(self, node: Node) -> str | None:
        if isinstance(node, Lit):
            v = node.value
            if isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v)):
                return repr(v)
            return None
        path = dotted(node)
        if path is not None:
            if path == "now":
                return "NOW"
            parts = path.split(".")
            if len(parts) == 2 and parts[0] in _ROOTS:
                return f"{_ROOTS[parts[0]]}[{parts[1]!r}]"
            return None
        if isinstance(node, Binary):
            return self._binary(node)
        if isinstance(node, Unary) and node.op == "!" and node.operand is not None:
            return f"(not {self.expr(node.operand)})"
        if isinstance(node, Cond) and node.cond and node.then and node.other:
            return f"({self.expr(node.then)} if {self.expr(node.cond)} else {self.expr(node.other)})"
        if isinstance(node, Call):
            return self._call(node)
        return None

    def _binary(self, node: Binary) -> str | None:
        assert node.left is not None and node.right is not None
        lt, rt, op = node.left.type, node.right.type, node.op
        if op in ("&&", "||") and lt == BOOL and rt == BOOL:
            word = "and" if op == "&&" else "or"
            return f"({self.expr(node.left)} {word} {self.expr(node.right)})"
        if op in _CMP and lt in _ORDERED and rt in _ORDERED:
            numeric = lt in (INT, DOUBLE) and rt in (INT, DOUBLE)
            if numeric or lt == rt:
                return f"({self.expr(node.left)} {op} {self.expr(node.right)})"
            return None
        if op in ("+", "-", "*") and {lt, rt} <= {DOUBLE, TIMESTAMP, DURATION} and (op != "*" or lt == rt == DOUBLE):
            return f"({self.expr(node.left)} {op} {self.expr(node.right)})"
        if (
            op == "in"
            and lt == STRING
            and isinstance(node.right, ListLit)
            and all(isinstance(i, Lit) and type(i.value) is str for i in node.right.items)
        ):
            values = frozenset(i.value for i in node.right.items if isinstance(i, Lit))
            return f"({self.expr(node.left)} in {self.ref('K', values)})"
        return None

    def _call(self, node: Call) -> str | None:
        if node.name in ("duration", "timestamp") and node.target is None:
            return f"{self.ref('K', compile_expr(node)({}))}"
        if node.name == "has" and isinstance(node.args[0], Select):
            sel = node.args[0]
            base = dotted(sel.operand) if sel.operand is not None else None
            if base in _ROOTS:
                return f"({sel.field!r} in {_ROOTS[base]})"
            return None
        if node.name == "size" and node.target is None and node.args[0].type == STRING:
            return f"len({self.expr(node.args[0])})"
        if node.name in ("startsWith", "endsWith") and node.target is not None and node.args[0].type == STRING:
            method = "startswith" if node.name == "startsWith" else "endswith"
            return f"{self.expr(node.target)}.{method}({self.expr(node.args[0])})"
        return None

    # -- facts -------------------------------------------------------------------------------

    def facts(self, decls: dict[str, FactDecl]) -> None:
        self.emit("get = facts.get")
        self.emit("C = {}")
        for name, d in decls.items():
            self.emit(f"v = get({name!r}, ABSENT)")
            if d.has_default:
                absent = f"C[{name!r}] = {self.ref('K', FactChecker.default(d))}"
            else:
                absent = "raise REJECT" if d.required else "pass"
            self.emit("if v is ABSENT:")
            self.emit(absent, 2)
            if d.nullable:
                self.emit("elif v is None:")
                self.emit(f"C[{name!r}] = None", 2)
            self.emit("else:")
            for line in self._fact_check(name, d):
                self.emit(line, 2)

    def _fact_check(self, name: str, d: FactDecl) -> list[str]:
        lo = repr(float(d.min)) if d.min is not None else f"-{_BIG}"
        hi = repr(float(d.max)) if d.max is not None else _BIG
        allowed = f" or v not in {self.ref('K', frozenset(d.allowed))}" if d.allowed is not None else ""
        if d.type == "number":
            return [
                "if type(v) is int:",
                "    v = as_float(v)",
                "elif type(v) is not float:",
                "    raise REJECT",
                f"if not {lo} <= v <= {hi}{allowed}:",
                "    raise REJECT",
                f"C[{name!r}] = v",
            ]
        if d.type == "integer":
            lo = lo if d.min is not None else "-INF"
            hi = hi if d.max is not None else "INF"
            return [f"if type(v) is not int or not {lo} <= v <= {hi}{allowed}:", "    raise REJECT", f"C[{name!r}] = v"]
        if d.type == "string":
            limit = f" or len(v) > {int(d.max_length)}" if d.max_length is not None else ""
            return [f"if type(v) is not str{allowed}{limit}:", "    raise REJECT", f"C[{name!r}] = v"]
        if d.type == "boolean":
            return ["if type(v) is not bool:", "    raise REJECT", f"C[{name!r}] = v"]
        if d.type == "timestamp":
            return [f"C[{name!r}] = TS(v)"]
        return [f"C[{name!r}] = {self.ref('FC', self.cp.checker.converter(name))}(v)"]  # type: ignore[union-attr]

    # -- scores, bands, tables ---------------------------------------------------------------

    def scores(self, scores: list[tuple[str, Callable[[Any], float]]], slow: Callable[..., None]) -> None:
        slow_name = self.ref("SS", slow)
        for i, (name, fn) in enumerate(scores):
            decl = self.cp.policy.scores[name]
            value = self.expr(decl.expr) if decl.expr is not None else f"{self.ref('SC', fn)}(env)"
            self.emit("try:")
            self.emit(f"v = {value}", 2)
            self.emit("if type(v) is float and v - v == 0.0:", 2)
            self.emit(f"S[{name!r}] = v", 3)
            self.emit("else:", 2)
            self.emit(f"{slow_name}({i}, env, S, N)", 3)
            self.emit("except Exception:")
            self.emit(f"{slow_name}({i}, env, S, N)", 2)

    def bands(self, decl: BandsDecl, cuts: list[tuple[float, Any, float, FiredRule]], run: StepRun) -> None:
        self.emit(f"v = S.get({decl.score!r})")
        self.emit("if v is None:")
        self.emit(f"{self.ref('RUN', run)}(env, O, F, N, None)", 2)
        for threshold, value, _, rule in cuts:
            self.emit("else:" if threshold == -math.inf else f"elif v >= {threshold!r}:")
            self.emit(f"O[{decl.output!r}] = {self.ref('K', value)}", 2)
            self.emit(f"F.append({self.ref('R', rule)})", 2)

    def table(self, decl: TableDecl, run: StepRun, parts: TableParts) -> None:
        rows = parts.rows
        if self._lookup(decl, run, parts):
            return
        single = len(decl.outputs) == 1
        if decl.inputs or decl.hit == "unique" or (decl.hit in ("priority", "collect") and not single):
            self.emit(f"{self.ref('RUN', run)}(env, O, F, N, None)")
            return
        if decl.hit == "first":
            self.emit("while True:")
            for when, rule, sets, slow in rows:
                self._row(when, slow, depth=2)
                self.emit("if m is True:", 2)
                for out, value in sets:
                    self.emit(f"O[{out!r}] = {self.ref('K', value)}", 3)
                self.emit(f"F.append({self.ref('R', rule)})", 3)
                self.emit("break", 3)
            for out in decl.outputs:  # no row matched: the default, or null and a note
                value = decl.default.get(out) if decl.default is not None else None
                self.emit(f"O[{out!r}] = {self.ref('K', value)}", 2)
            if decl.default is None:
                self.emit(f"N.append({self.ref('K', f'no rule of `{decl.id}` matched')})", 2)
            self.emit("break", 2)
            return
        out = decl.outputs[0]
        if decl.hit == "collect":  # every match adds its values, each once, in row order
            self.emit("ms = []")
            for when, rule, sets, slow in rows:
                self._row(when, slow, depth=1)
                self.emit("if m is True:")
                value = sets[0][1]
                for v in value if isinstance(value, list) else [value]:
                    if v is not None:
                        self.emit(f"if {self.ref('K', v)} not in ms:", 2)
                        self.emit(f"ms.append({self.ref('K', v)})", 3)
                self.emit(f"F.append({self.ref('R', rule)})", 2)
            self.emit(f"O[{out!r}] = ms")
            return
        # priority: the matching row whose value comes first in the output's `values`
        self.emit("best = -1")
        for i, (when, _rule, _sets, slow) in enumerate(rows):
            self._row(when, slow, depth=1)
            self.emit(
                f"if m is True and (best < 0 or {parts.ranks[i]} < RANKS[best]):".replace(
                    "RANKS", self.ref("K", parts.ranks)
                )
            )
            self.emit(f"best = {i}", 2)
        self.emit("if best < 0:")
        self.emit(f"{self.ref('AP', parts.apply)}([], O, F, N)", 2)
        for i, (_, rule, sets, _) in enumerate(rows):
            self.emit(f"elif best == {i}:")
            self.emit(f"O[{out!r}] = {self.ref('K', sets[0][1])}", 2)
            self.emit(f"F.append({self.ref('R', rule)})", 2)

    def _lookup(self, decl: TableDecl, run: StepRun, parts: TableParts) -> bool:
        """A `unique` table over one text input: an if/elif chain on the input's value."""
        if decl.hit != "unique" or len(decl.inputs) != 1:
            return False
        ((name, node),) = decl.inputs.items()
        cells = [r.match.get(name) for r in decl.rules]
        if any(c is None or c.op != "eq" or type(c.value) is not str for c in cells):
            return False
        fallback = self.ref("RUN", run)
        self.emit("try:")
        self.emit(f"key = {self.expr(node)}", 2)
        self.emit("except COST:")  # over the budget: the decision fails, named (never retried)
        self.emit("raise", 2)
        self.emit("except Exception:")
        self.emit("key = ABSENT", 2)
        self.emit("if type(key) is not str:")
        self.emit(f"{fallback}(env, O, F, N, None)", 2)
        for cell, (_, rule, sets, _) in zip(cells, parts.rows, strict=True):
            assert cell is not None
            self.emit(f"elif key == {cell.value!r}:")
            for out, value in sets:
                self.emit(f"O[{out!r}] = {self.ref('K', value)}", 2)
            self.emit(f"F.append({self.ref('R', rule)})", 2)
        self.emit("else:")
        self.emit(f"{fallback}(env, O, F, N, None)", 2)
        return True

    def _row(self, when: Node | None, slow: Callable[..., bool], depth: int) -> None:
        self.emit("try:", depth)
        self.emit(f"m = {self.expr(when) if when is not None else 'False'}", depth + 1)
        self.emit("except COST:", depth)
        self.emit("raise", depth + 1)
        self.emit("except Exception:", depth)
        self.emit(f"m = {self.ref('ROW', slow)}(env, N)", depth + 1)


_LOCALS = {
    "facts",
    "NOW",
    "get",
    "C",
    "S",
    "O",
    "F",
    "N",
    "env",
    "v",
    "m",
    "ms",
    "best",
    "key",
    "decide",
    "ABSENT",
    "REJECT",
    "INF",
    "TS",
    "as_float",
    "type",
    "int",
    "float",
    "str",
    "bool",
    "len",
    "Exception",
}


def generate(
    compiled: CompiledPolicy,
    runs: list[StepRun],
    cut: Callable[[str, float], float] | None,
    scores: list[tuple[str, Callable[[Any], float]]],
    score_slow: Callable[..., None],
) -> Callable[[Any, Any], tuple[Any, ...]]:
    """The bound policy as one function ``decide(facts, now) -> (customer, scores, outputs, fired, notes)``.

    ``runs`` are the bound step closures (the exact fallback), ``cut`` the snapshot's cut
    points, ``score_slow(i, env, scores, notes)`` the exact path for score ``i``.
    """
    gen = _Gen(compiled)
    gen.facts(compiled.policy.facts)
    gen.emit("S = {}")
    gen.emit("O = {}")
    gen.emit("F = []")
    gen.emit("N = []")
    gen.emit("env = {'customer': C, 'scores': S, 'outputs': O, 'now': NOW}")
    gen.scores(scores, score_slow)
    for step, run in zip(compiled.steps, runs, strict=True):
        decl = step.decl
        if isinstance(decl, BandsDecl):
            assert cut is not None
            gen.bands(decl, band_cuts(decl, cut), run)
        else:
            gen.table(decl, run, compiled.tables[decl.id])
    gen.emit("return C, S, O, F, N")
    source = "def decide(facts, NOW):\n" + "\n".join(gen.lines) + "\n"
    refs = {
        "ABSENT": _ABSENT,
        "REJECT": Reject,
        "COST": BudgetExceeded,
        "INF": math.inf,
        "TS": _timestamp,
        "as_float": as_float,
        **gen.names,
    }
    builtins = {"type": type, "int": int, "float": float, "str": str, "bool": bool, "len": len, "Exception": Exception}
    decide: Callable[[Any, Any], tuple[Any, ...]] = build(
        source,
        "decide",
        local_names=_LOCALS,
        refs=refs,
        builtins=builtins,
        attrs=_ALLOWED_ATTRS,
        label=f"policy {compiled.policy.id}",
    )
    return decide


_ABSENT = object()


def _timestamp(v: Any) -> Any:
    try:
        return parse_timestamp(v)
    except (ValueError, TypeError):
        raise Reject from None


__all__ = ["EvalError", "generate"]
