"""Generated Python, verified before it runs: the one way Charter turns a checked model into code.

Every generator (tiering's ``codegen``, the request shapes of the domains) writes Python
source from checked declarations — never from policy text — and hands it here. The source
is parsed back and every node checked against a whitelist before it is compiled: no
imports, no attribute but the few methods a generator may call, no name but the
generator's own (its locals, its builtins and the objects it referenced by generated
names). Values from policies enter only through ``repr`` of an int, float, str or bool,
or as objects bound to those generated names.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from typing import Any

NODES: tuple[type[ast.AST], ...] = (
    ast.Module,
    ast.FunctionDef,
    ast.arguments,
    ast.arg,
    ast.Assign,
    ast.Expr,
    ast.If,
    ast.While,
    ast.For,
    ast.Break,
    ast.Continue,
    ast.Pass,
    ast.Return,
    ast.Raise,
    ast.Try,
    ast.ExceptHandler,
    ast.Name,
    ast.Load,
    ast.Store,
    ast.Constant,
    ast.Subscript,
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.IfExp,
    ast.Call,
    ast.Attribute,
    ast.Dict,
    ast.Tuple,
    ast.List,
    ast.And,
    ast.Or,
    ast.Not,
    ast.USub,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
)


def verify(source: str, names: Iterable[str], attrs: Iterable[str]) -> ast.Module:
    """Parse the generated code back and refuse anything outside the whitelist."""
    known, methods = set(names), set(attrs)
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if not isinstance(node, NODES):
            raise AssertionError(f"generated code holds a {type(node).__name__}")
        if isinstance(node, ast.Name) and node.id not in known:
            raise AssertionError(f"generated code names `{node.id}`")
        if isinstance(node, ast.Attribute) and node.attr not in methods:
            raise AssertionError(f"generated code uses `.{node.attr}`")
    return tree


def build(
    source: str,
    function: str,
    *,
    local_names: Iterable[str],
    refs: Mapping[str, Any],
    builtins: Mapping[str, Any],
    attrs: Iterable[str],
    label: str,
) -> Callable[..., Any]:
    """Verify ``source`` (one function definition, ``function``), compile it and return it.

    ``local_names`` are the names the generator uses for its own variables and arguments,
    ``refs`` the objects it referenced by generated names, ``builtins`` the only builtins
    the code can reach, ``attrs`` the only attributes it may read."""
    tree = verify(source, {*local_names, *refs, *builtins, function}, attrs)
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef) or tree.body[0].name != function:
        raise AssertionError(f"generated code must be the one function `{function}`")
    namespace: dict[str, Any] = {**refs, "__builtins__": dict(builtins)}
    code = compile(tree, f"<charter {label}>", "exec")  # whitelisted generated code, verified above
    exec(code, namespace)  # defines the one function; nothing else runs
    fn: Callable[..., Any] = namespace[function]
    fn.source = source  # type: ignore[attr-defined]  # for tests and debugging
    return fn
