"""Decision-table checks of ``charter lint`` (``L001``–``L007``), and the variables they read.

``policy_space`` gives the variables of a tiering-style policy (its facts, scores and
outputs, with what their declarations allow); ``check_tables`` analyses every table's rows
against them: inputs no row covers, rules an earlier or higher-priority rule always beats,
conditions that are always false or true, comparisons a declaration decides, duplicate
rules, listed values an input never takes. ``check_row`` is shared with the access checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.analysis import conditions as cond
from engine.analysis.conditions import Analysis, Atom, Space, Var
from engine.analysis.findings import ERROR, WARNING, Context, Related
from engine.analysis.values import INF, Values
from engine.core.expr import Binary, ListLit, Lit, Node, dotted
from engine.core.load import DocPath
from engine.core.model import BandsDecl, FactDecl, OutputDecl, Policy, RuleDecl, TableDecl
from engine.errors import Location, did_you_mean

# --------------------------------------------------------------------------------------------
# variables of a tiering-style policy (facts, scores, outputs)
# --------------------------------------------------------------------------------------------


def _fact_var(f: FactDecl) -> Var:
    words: list[str] = []
    known = True
    if f.type in ("integer", "number"):
        low, high = (b if b is not None and b == b else None for b in (f.min, f.max))  # NaN bounds nothing
        lo, hi = (low if low is not None else -INF), (high if high is not None else INF)
        universe = Values.between(lo, low is not None, hi, high is not None, integer=f.type == "integer")
        words += [f"min {_g(low)}"] if low is not None else []
        words += [f"max {_g(high)}"] if high is not None else []
    elif f.type == "string":
        universe = Values(co=True)
    elif f.type == "boolean":
        universe = Values(bools=frozenset((True, False)))
    else:
        universe, known = Values.everything(), False
    if f.allowed is not None:
        allowed = Values.of(f.allowed)
        if allowed is not None:
            universe = universe & allowed
            words.append("allowed: " + ", ".join(str(a) for a in f.allowed))
    if f.nullable:
        universe = replace(universe, null=True)
    words.append("required" if f.required else f"default {f.default}" if f.has_default else "may be absent")
    absent = not f.required and not f.has_default
    return Var(f"customer.{f.name}", universe, absent, f.location, ", ".join(words), known=known)


def _g(x: float) -> str:
    try:
        return f"{x:g}"
    except OverflowError:  # a whole number too large for a float
        return str(x)


def _output_var(o: OutputDecl, maybe_null: bool) -> Var:
    kinds = {
        "string": Values(co=True),
        "integer": Values.between(-INF, False, INF, False, integer=True),
        "number": Values.between(-INF, False, INF, False),
        "boolean": Values(bools=frozenset((True, False))),
    }
    universe, known, words = kinds.get(o.type, Values.everything()), o.type in kinds, ""
    if o.values is not None and known:
        listed = Values.of(o.values)
        if listed is not None:
            universe, words = universe & listed, "values: " + ", ".join(str(v) for v in o.values)
    if maybe_null:
        universe = replace(universe, null=True)
    return Var(f"outputs.{o.name}", universe, False, o.location, words, known=known)


def _maybe_null(policy: Policy) -> set[str]:
    """Outputs that can be null: bands (no score), and table outputs some case leaves unset."""
    out: set[str] = set()
    for step in policy.steps:
        if isinstance(step, BandsDecl):
            out.add(step.output)
        elif step.hit != "collect":
            default = step.default or {}
            for name in step.outputs:
                if default.get(name) is None or any(r.then.get(name, default.get(name)) is None for r in step.rules):
                    out.add(name)
    return out


def policy_space(policy: Policy) -> Space:
    """The variables of a policy with shared parts: its facts, scores and outputs."""
    space = Space()
    for f in policy.facts.values():
        space.add(_fact_var(f))
    for s in policy.scores.values():
        space.add(Var(f"scores.{s.name}", Values.between(-INF, False, INF, False), True, s.location, "a score"))
    nullable = _maybe_null(policy)
    for o in policy.outputs.values():
        space.add(_output_var(o, o.name in nullable))
    return space


# --------------------------------------------------------------------------------------------
# tables: L001-L007
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    rule: RuleDecl
    cases: Analysis
    atoms: list[Atom]
    cells: dict[str, cond.State]  # input name -> the states its cell matches


def check_tables(ctx: Context, policy: Policy) -> None:
    space = policy_space(policy)
    for step in policy.steps:
        if isinstance(step, TableDecl):
            _check_table(ctx, policy, space, step)


def _inputs(space: Space, table: TableDecl) -> dict[str, Var]:
    out: dict[str, Var] = {}
    for name, node in table.inputs.items():
        path = dotted(node)
        if path is not None and path in space.vars:
            out[name] = space.vars[path]
            continue
        universe = cond.universe_of(node.type)
        known = universe is not None
        var = Var(f"{table.id}.{name}", universe or Values.everything(), True, table.location, known=known)
        out[name] = space.add(var)
    return out


def _row(space: Space, rule: RuleDecl, inputs: Mapping[str, Var]) -> Row:
    atoms: list[Atom] = []
    if rule.when is not None:
        return Row(rule, cond.analyse(rule.when, space, atoms), atoms, {})
    states: dict[str, cond.State] = {}
    box: dict[str, cond.State] = {}
    readable = True
    for name, cell in rule.match.items():
        var = inputs[name]
        state = cond.cell_state(cell, var)
        if state is None or not var.known:
            readable = False
            continue
        states[name] = state
        box[var.name] = box[var.name] & state if var.name in box else state
    if not readable:
        return Row(rule, Analysis(None, None), atoms, states)
    true: cond.Cases = [box] if all(not s.empty for s in box.values()) else []
    return Row(rule, Analysis(true, None), atoms, states)


def _check_table(ctx: Context, policy: Policy, space: Space, table: TableDecl) -> None:
    inputs = _inputs(space, table)
    rows = [_row(space, r, inputs) for r in table.rules]
    for row in rows:
        check_row(ctx, space, row, inputs)
    duplicates = _duplicates(ctx, space, table, rows)
    if table.hit in ("first", "priority"):
        _check_shadowed(ctx, policy, space, table, rows, duplicates)
    if table.default is None and table.hit != "collect" and table.inputs and all(r.rule.when is None for r in rows):
        _check_gaps(ctx, space, table, rows, inputs)


def _when_path(rule: RuleDecl) -> DocPath:
    return (*rule.location.path, "when")


def _declared(var: Var) -> list[Related]:
    if var.location is None or var.kind != "value":
        return []
    what = f" ({var.bounds})" if var.bounds else ""
    return [Related(var.location, f"`{var.name}` is declared here{what}")]


def check_row(ctx: Context, space: Space, row: Row, inputs: Mapping[str, Var], verb: str = "fire") -> None:
    rule, true = row.rule, row.cases.true
    if true == []:
        reason, related = _why_never(row, inputs)
        ctx.add(
            "L003",
            ERROR,
            f"rule `{rule.id}` can never {verb}: {reason}",
            rule.location,
            _suggest(row, inputs) or "fix the figure or value against the declaration, or remove the rule",
            related,
        )
    elif rule.when is not None and not _literal_true(rule.when) and cond.always(space, true) is True:
        ctx.add(
            "L004",
            WARNING,
            f"the condition of rule `{rule.id}` is always true: `{rule.when_text}`",
            ctx.at(rule.location, _when_path(rule)),
            'write `when: "true"` for a catch-all; otherwise check the figures against the declarations',
            _unique(r for a in row.atoms for r in _declared(a.var)),
        )
    else:
        _check_atoms(ctx, rule, row.atoms)
    _check_listed(ctx, rule, row, inputs)


def _literal_true(node: Node) -> bool:
    return isinstance(node, Lit) and node.value is True


def _why_never(row: Row, inputs: Mapping[str, Var]) -> tuple[str, list[Related]]:
    never = [a for a in row.atoms if a.true.empty]
    if never:
        texts = " and ".join(_atom_text(row.rule, a) for a in never)
        return f"{texts} {'are' if len(never) > 1 else 'is'} never true", _unique(
            r for a in never for r in _declared(a.var)
        )
    cells = [(name, state) for name, state in row.cells.items() if state.empty]
    if cells:
        texts = " and ".join(f"input `{name}` is never `{row.rule.match[name].text}`" for name, _ in cells)
        return texts, _unique(r for name, _ in cells for r in _declared(inputs[name]))
    if row.rule.when_text:
        return f"its condition `{row.rule.when_text}` is always false", []
    return "its cells never all match", []


def _suggest(row: Row, inputs: Mapping[str, Var]) -> str | None:
    """A "did you mean" hint for a text compared with or written in a cell that is a misspelt value."""
    pairs: list[tuple[Var, Any]] = []
    for atom in row.atoms:
        node = atom.node
        if atom.true.empty and isinstance(node, Binary) and isinstance(node.right, Lit):
            pairs.append((atom.var, node.right.value))
    for name, state in row.cells.items():
        cell = row.rule.match[name]
        if state.empty and cell.op == "eq":
            pairs.append((inputs[name], cell.value))
    for var, value in pairs:
        if isinstance(value, str) and not var.universe.co:
            hint = did_you_mean(value, sorted(var.universe.strs))
            if hint:
                return hint
    return None


def _unique(related: Iterable[Related]) -> list[Related]:
    return list(dict.fromkeys(related))


def _atom_text(rule: RuleDecl, atom: Atom) -> str:
    return f"`{rule.when_text[atom.node.start : atom.node.end]}`"


def _check_atoms(ctx: Context, rule: RuleDecl, atoms: Sequence[Atom]) -> None:
    for atom in atoms:
        never = atom.true.empty
        constant = never or (atom.false.empty and not atom.var.absent)
        if not constant:
            continue
        ctx.add(
            "L005",
            WARNING,
            f"{_atom_text(rule, atom)} is always {'false' if never else 'true'}, given how "
            f"`{atom.var.name}` is declared",
            ctx.at(rule.location, _when_path(rule), offset=atom.node.start),
            "compare with a figure inside the declared range, or drop the comparison",
            _declared(atom.var),
        )


def _check_listed(ctx: Context, rule: RuleDecl, row: Row, inputs: Mapping[str, Var]) -> None:
    """L007: values listed in a cell or an `in [...]` that the variable can never take."""
    lists: list[tuple[Var, Sequence[Any], Location]] = []
    for name, cell in rule.match.items():
        if cell.op == "in" and inputs[name].known:
            lists.append((inputs[name], cell.values, ctx.at(rule.location, (*rule.location.path, "match", name))))
    for atom in row.atoms:
        node = atom.node
        if isinstance(node, Binary) and node.op == "in" and isinstance(node.right, ListLit):
            items = [i.value for i in node.right.items if isinstance(i, Lit)]
            lists.append((atom.var, items, ctx.at(rule.location, _when_path(rule), offset=node.right.start)))
    for var, values, where in lists:
        inside = [v for v in values if not _never(var, v)]
        if not inside:
            continue  # the whole row or comparison never matches: L003 or L005 says so
        for v in values:
            if _never(var, v):
                choices = [str(x) for x in sorted(var.universe.strs)] if not var.universe.co else []
                ctx.add(
                    "L007",
                    WARNING,
                    f"`{v}` is listed in rule `{rule.id}`, but `{var.name}` is never `{v}`",
                    where,
                    did_you_mean(str(v), choices) or "remove it, or fix it to a declared value",
                    _declared(var),
                )


def _never(var: Var, value: Any) -> bool:
    one = Values.of([value])
    return one is not None and (var.universe & one).empty


def _duplicates(ctx: Context, space: Space, table: TableDecl, rows: Sequence[Row]) -> set[int]:
    """L006: a rule with the same condition and result as an earlier one. Returns their indexes."""
    found: set[int] = set()
    for j, later in enumerate(rows):
        for i in range(j):
            earlier = rows[i]
            if later.rule.then != earlier.rule.then or not later.cases.true:
                continue
            if cond.same(space, later.cases.true, earlier.cases.true) is True:
                ctx.add(
                    "L006",
                    WARNING,
                    f"rule `{later.rule.id}` repeats rule `{earlier.rule.id}`: same condition, same result",
                    later.rule.location,
                    f"remove `{later.rule.id}`",
                    [Related(earlier.rule.location, f"rule `{earlier.rule.id}`")],
                )
                found.add(j)
                break
    return found


def _check_shadowed(
    ctx: Context, policy: Policy, space: Space, table: TableDecl, rows: Sequence[Row], skip: set[int]
) -> None:
    """L002: a rule whose every match is also a match of rules that win over it."""
    values = policy.outputs[table.outputs[0]].values or ()
    rank = {v: i for i, v in enumerate(values)}

    def beats(i: int, j: int) -> bool:
        if table.hit == "first":
            return i < j
        ri = rank.get(rows[i].rule.then.get(table.outputs[0]), len(rank))
        rj = rank.get(rows[j].rule.then.get(table.outputs[0]), len(rank))
        return ri < rj or (ri == rj and i < j)

    for j, row in enumerate(rows):
        true = row.cases.true
        if j in skip or not true:
            continue
        winners = [i for i in range(len(rows)) if i != j and beats(i, j) and rows[i].cases.true is not None]
        cover = next((i for i in winners if cond.implies(space, true, rows[i].cases.true) is True), None)
        involved = [cover] if cover is not None else []
        if cover is None and len(winners) > 1:
            union: cond.Cases | None = []
            for i in winners:
                union = cond.join(union, rows[i].cases.true)
            if cond.implies(space, true, union) is True:
                involved = [i for i in winners if cond.meet(space, true, rows[i].cases.true)]
        if involved:
            _report_shadowed(ctx, table, row, [rows[i] for i in involved])


def _report_shadowed(ctx: Context, table: TableDecl, row: Row, winners: Sequence[Row]) -> None:
    names = ", ".join(f"`{w.rule.id}`" for w in winners)
    several = len(winners) > 1
    if table.hit == "first":
        why = f"{'rules' if several else 'rule'} {names} {'come' if several else 'comes'} first and"
        verb = "fire"
    else:
        why = f"{'rules' if several else 'rule'} {names} with {'values' if several else 'a value'} of higher priority"
        verb = "decide"
    match = "together match" if several else "matches"
    them = "them" if several else f"`{winners[0].rule.id}`"
    if table.hit == "first":
        hint = f"move `{row.rule.id}` above {them}, or narrow {'their conditions' if several else 'its condition'}"
    else:
        hint = f"narrow the condition of {them}, or give `{row.rule.id}` a value of higher priority"
    ctx.add(
        "L002",
        ERROR,
        f"rule `{row.rule.id}` can never {verb}: {why} {match} whenever it does",
        row.rule.location,
        f"{hint}; if `{row.rule.id}` is not needed, remove it",
        [Related(w.rule.location, f"rule `{w.rule.id}`") for w in winners],
    )


def _check_gaps(ctx: Context, space: Space, table: TableDecl, rows: Sequence[Row], inputs: Mapping[str, Var]) -> None:
    """L001: input values (within their declared domains) that no row of the table matches."""
    if any(not v.known for v in inputs.values()) or any(r.cases.true is None for r in rows):
        return
    start: dict[str, cond.State] = {}
    for var in inputs.values():
        start[var.name] = cond.present(var).full()
    covered: cond.Cases | None = []
    for row in rows:
        covered = cond.join(covered, row.cases.true)
    left = cond.subtract(space, [start], covered)
    if not left:
        return
    cases = [_describe_case(box, start, inputs) for box in left[:3]]
    more = f" (and {len(left) - 3} more case(s))" if len(left) > 3 else ""
    example = ", ".join(
        f"`{name}` = `{_shown(left[0].get(var.name, start[var.name]).values.example())}`"
        for name, var in inputs.items()
    )
    hint = "add a row for it, or give the table a `default:`"
    if len(left) > 1 or example != cases[0]:
        hint = f"for example {example}: {hint}"
    related = [
        Related(var.location, f"`{name}` reads `{var.name}`" + (f" ({var.bounds})" if var.bounds else ""))
        for name, var in inputs.items()
        if var.location is not None and var.location != table.location
    ]
    ctx.add(
        "L001",
        WARNING,
        f"no row of table `{table.id}` matches {'; '.join(cases)}{more}: its outputs are left empty",
        table.location,
        hint,
        related,
    )


def _describe_case(box: cond.Cube, start: Mapping[str, cond.State], inputs: Mapping[str, Var]) -> str:
    parts = []
    for name, var in inputs.items():
        state = box.get(var.name, start[var.name])
        if not (start[var.name] - state).empty:
            shown = state.values.describe()
            parts.append(f"`{name}` {'=' if shown.startswith('`') and ' ' not in shown[1:-1] else 'in'} {shown}")
    return ", ".join(parts) or "any input"


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
