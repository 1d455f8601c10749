"""``charter lint``: mistakes a policy can load with, found before anything runs.

``lint_policies`` analyses one loaded policy set (the compiled policies by domain) and
returns ``Finding``s, each with a stable code (docs/lint.md lists them all), a severity,
a located one-line message, the other places involved and a hint. Policy files that do not
load are reported by ``lint_paths`` as their load errors (``P...``), with the second place
involved named where the error itself names only one.

The checks, by section:

* tables (``L001``–``L007``): inputs no row covers, rules an earlier or higher-priority rule
  always beats, conditions that are always false or true, comparisons a declaration
  decides, duplicate rules, listed values an input never takes;
* retention (``L010``–``L015``): legal-hold fields that cannot hold, clocks keyed on a hold,
  disposals a keep rule always postpones, disposal at creation, record types no rule covers;
* access (``L020``–``L022``): grants a deny always overrides, roles granted nothing, expired
  waivers (only with an explicit ``now``: lint never reads the clock);
* declarations (``L030``–``L032``): facts nothing reads, outputs and output values no rule sets.

Conditions are read by ``engine.workbench.conditions``, which only claims what holds for
every customer.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.core.bundle import Bundle, build_bundle
from engine.core.compile import CompiledPolicy
from engine.core.expr import Binary, ListLit, Lit, Node, dotted, references
from engine.core.load import DocPath, Document, load_file, policy_files
from engine.core.model import BandsDecl, FactDecl, OutputDecl, Policy, RuleDecl, TableDecl
from engine.errors import Location, PolicyError, PolicyErrors, did_you_mean
from engine.plugins import Registry, build_registry
from engine.workbench import conditions as cond
from engine.workbench.conditions import INF, Analysis, Atom, Space, Values, Var

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Related:
    """Another place a finding involves, with a note saying what is there."""

    location: Location
    note: str


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # error | warning
    message: str
    location: Location
    hint: str = ""
    related: tuple[Related, ...] = ()

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.location.file, self.location.line, self.location.column, self.code, self.message)

    def describe(self) -> str:
        lines = [f"{self.location}: {self.severity}: {self.message} [{self.code}]"]
        lines += [f"  see: {r.location}: {r.note}" for r in self.related]
        if self.hint:
            lines.append(f"  help: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        loc = self.location
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": loc.file,
            "line": loc.line,
            "column": loc.column,
            "path": loc.dotted_path(),
            "related": [
                {"file": r.location.file, "line": r.location.line, "column": r.location.column, "note": r.note}
                for r in self.related
            ],
            "hint": self.hint,
        }


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Findings sorted by location, each once (several policy sets may find the same)."""
    seen: dict[tuple[str, str, str], Finding] = {}
    for f in findings:
        seen.setdefault((f.code, str(f.location), f.message), f)
    return sorted(seen.values(), key=Finding.sort_key)


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------


def lint_policies(
    policies: Mapping[str, CompiledPolicy],
    documents: Mapping[str, Document] | Iterable[Document] | None = None,
    *,
    registry: Registry | None = None,
    now: datetime | None = None,
) -> list[Finding]:
    """Every finding in one loaded policy set (compiled policies by domain).

    ``documents`` (the loaded files, by path) make locations exact down to a list entry or
    a comparison inside a condition; without them findings point at the rule. ``registry``
    tells which facts plugin scorers read (without it, unread facts are not reported when a
    policy uses a plugin scorer). ``now`` enables the expired-waiver check.
    """
    if documents is None:
        docs: dict[str, Document] = {}
    elif isinstance(documents, Mapping):
        docs = dict(documents)
    else:
        docs = {d.path: d for d in documents}
    ctx = _Context({kind: cp.policy for kind, cp in policies.items()}, docs, registry, now)
    for policy in ctx.policies.values():
        if policy.steps or policy.facts:
            _check_tables(ctx, policy)
            _check_declarations(ctx, policy)
        if policy.kind == "retention":
            _check_retention(ctx, policy)
        if policy.kind == "access":
            _check_access(ctx, policy)
    return dedupe(ctx.findings)


def lint_paths(paths: Sequence[str | Path], registry: Registry, *, now: datetime | None = None) -> list[Finding]:
    """Load the policy files and lint them; files that do not load give their load errors."""
    try:
        bundle = build_bundle(paths, registry)
    except PolicyErrors as exc:
        docs = _documents(paths)
        return dedupe(_load_finding(e, docs) for e in exc.errors)
    return lint_bundle(bundle, registry, now=now)


def lint_bundle(bundle: Bundle, registry: Registry | None = None, *, now: datetime | None = None) -> list[Finding]:
    """Lint a loaded bundle (``charter validate`` prints these after a successful load).

    A bundle whose rules carry effective dates or audit mode holds several policy sets: each
    is linted, and the findings combined. Their documents are the files as they stand in each
    period (list positions differ from the files'), so locations come from the policies."""
    sets = [s for p in bundle.periods for s in (p.policies, p.audit) if s is not None]
    if len(sets) <= 1:
        return lint_policies(bundle.policies, _documents(bundle.files).values(), registry=registry, now=now)
    return dedupe(f for policies in sets for f in lint_policies(policies, None, registry=registry, now=now))


def _documents(paths: Sequence[str | Path]) -> dict[str, Document]:
    """The policy files that parse as YAML, by path (the ones that do not are load errors)."""
    out: dict[str, Document] = {}
    for p in paths:
        path = Path(p)
        files = list(policy_files(path)) if path.is_dir() else [path] if path.is_file() else []
        for f in files:
            try:
                doc = load_file(f)
            except PolicyErrors:
                continue
            out[doc.path] = doc
    return out


@dataclass
class _Context:
    policies: dict[str, Policy]
    docs: dict[str, Document]
    registry: Registry | None
    now: datetime | None
    findings: list[Finding] = field(default_factory=list)

    def add(
        self,
        code: str,
        severity: str,
        message: str,
        location: Location,
        hint: str = "",
        related: Iterable[Related] = (),
    ) -> None:
        self.findings.append(Finding(code, severity, message, location, hint, tuple(related)))

    def at(self, base: Location, path: DocPath, *, key: bool = False, offset: int | None = None) -> Location:
        """The location of ``path`` in ``base``'s file, or ``base`` itself without the document."""
        doc = self.docs.get(base.file)
        if doc is None:
            return base
        try:
            doc.get(path)
        except (KeyError, IndexError, TypeError):
            return base
        return doc.text_location(path, offset) if offset is not None else doc.location(path, key=key)


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
class _Row:
    rule: RuleDecl
    cases: Analysis
    atoms: list[Atom]
    cells: dict[str, cond.State]  # input name -> the states its cell matches


def _check_tables(ctx: _Context, policy: Policy) -> None:
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


def _row(space: Space, rule: RuleDecl, inputs: Mapping[str, Var]) -> _Row:
    atoms: list[Atom] = []
    if rule.when is not None:
        return _Row(rule, cond.analyse(rule.when, space, atoms), atoms, {})
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
        return _Row(rule, Analysis(None, None), atoms, states)
    true: cond.Cases = [box] if all(not s.empty for s in box.values()) else []
    return _Row(rule, Analysis(true, None), atoms, states)


def _check_table(ctx: _Context, policy: Policy, space: Space, table: TableDecl) -> None:
    inputs = _inputs(space, table)
    rows = [_row(space, r, inputs) for r in table.rules]
    for row in rows:
        _check_row(ctx, space, row, inputs)
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


def _check_row(ctx: _Context, space: Space, row: _Row, inputs: Mapping[str, Var], verb: str = "fire") -> None:
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


def _why_never(row: _Row, inputs: Mapping[str, Var]) -> tuple[str, list[Related]]:
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


def _suggest(row: _Row, inputs: Mapping[str, Var]) -> str | None:
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


def _check_atoms(ctx: _Context, rule: RuleDecl, atoms: Sequence[Atom]) -> None:
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


def _check_listed(ctx: _Context, rule: RuleDecl, row: _Row, inputs: Mapping[str, Var]) -> None:
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


def _duplicates(ctx: _Context, space: Space, table: TableDecl, rows: Sequence[_Row]) -> set[int]:
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
    ctx: _Context, policy: Policy, space: Space, table: TableDecl, rows: Sequence[_Row], skip: set[int]
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


def _report_shadowed(ctx: _Context, table: TableDecl, row: _Row, winners: Sequence[_Row]) -> None:
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


def _check_gaps(ctx: _Context, space: Space, table: TableDecl, rows: Sequence[_Row], inputs: Mapping[str, Var]) -> None:
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


# --------------------------------------------------------------------------------------------
# declarations: L030-L032
# --------------------------------------------------------------------------------------------


def _check_declarations(ctx: _Context, policy: Policy) -> None:
    _unread_facts(ctx, policy)
    produced: dict[str, set[Any]] = {name: set() for name in policy.outputs}
    for step in policy.steps:
        if isinstance(step, BandsDecl):
            produced.setdefault(step.output, set()).update(_hashable(b.value) for b in step.bands)
            continue
        default = step.default or {}
        for name in step.outputs:
            given = [r.then[name] for r in step.rules if name in r.then]
            if name in default:
                given.append(default[name])
            if not given:
                ctx.add(
                    "L031",
                    WARNING,
                    f"no rule of table `{step.id}` sets output `{name}`, so it is always empty",
                    step.location,
                    f"set `{name}` in the rules' `then:`, give the table a `default:`, or drop the output",
                    _declared_output(policy, name),
                )
            for value in given:
                produced.setdefault(name, set()).update(_hashable(v) for v in _flat(value))
    for name, out in policy.outputs.items():
        for k, value in enumerate(out.values or ()):
            if _hashable(value) not in produced.get(name, set()):
                ctx.add(
                    "L032",
                    WARNING,
                    f"value `{value}` of output `{name}` is never set: no rule, band or default gives it",
                    ctx.at(out.location, ("outputs", name, "values", k)),
                    "add a rule that sets it, or remove it from `values`",
                )


def _declared_output(policy: Policy, name: str) -> list[Related]:
    out = policy.outputs.get(name)
    return [Related(out.location, f"output `{name}` is declared here")] if out is not None else []


def _flat(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _hashable(value: Any) -> Any:
    return (type(value).__name__ == "bool", value) if isinstance(value, (str, int, float, bool)) else repr(value)


def _unread_facts(ctx: _Context, policy: Policy) -> None:
    read: set[str] = {"id"}  # the customer's id names the subject of every decision
    nodes: list[Node] = []
    for step in policy.steps:
        if isinstance(step, TableDecl):
            nodes += list(step.inputs.values()) + [r.when for r in step.rules if r.when is not None]
    for score in policy.scores.values():
        if score.expr is not None:
            nodes.append(score.expr)
        elif ctx.registry is not None and score.scorer is not None and score.scorer in ctx.registry.scorers:
            read.update(ctx.registry.scorers[score.scorer].reads)
        else:
            return  # a scorer whose reads are unknown might read any fact
    for node in nodes:
        read.update(ref.split(".")[1] for ref in references(node) if ref.startswith("customer."))
    for name, fact in policy.facts.items():
        if name not in read:
            burden = "; it is `required`, so every record must carry it for nothing" if fact.required else ""
            ctx.add(
                "L030",
                WARNING,
                f"fact `{name}` is declared but no condition, input or score reads it{burden}",
                fact.location,
                "use it in a condition or score, or remove the declaration",
            )


# --------------------------------------------------------------------------------------------
# retention: L010-L015
# --------------------------------------------------------------------------------------------

_HOURS = {"h": (1, 1), "d": (24, 24), "w": (168, 168), "m": (28 * 24, 31 * 24), "y": (365 * 24, 366 * 24)}


def _period_hours(period: tuple[int, str]) -> tuple[int, int]:
    """The shortest and longest a period can last, in hours (months and years vary)."""
    n, unit = period
    lo, hi = _HOURS[unit]
    return n * lo, n * hi


def _check_retention(ctx: _Context, policy: Policy) -> None:
    model = policy.extra
    holds_at = ctx.at(policy.location, ("hold_fields",), key=True)
    for j, name in enumerate(model.hold_fields):
        where = ctx.at(policy.location, ("hold_fields", j))
        if re.search(r"[.\[\]*?]", name):
            ctx.add(
                "L010",
                ERROR,
                f"hold field `{name}` can never place a hold: holds are read from a record's top-level fields",
                where,
                "name a top-level field of the record, like `legal_hold`",
            )
        else:
            _hold_classified(ctx, name, where)
    for rule in model.rules:
        period = f"{rule.period[0]}{rule.period[1]}"
        if rule.starts.startswith("event:") and "hold" in rule.starts:
            consequence = "kept for ever" if rule.keep else "never disposed of by it"
            ctx.add(
                "L012",
                WARNING,
                f"the clock of `{rule.id}` starts at `{rule.starts[6:]}`: a record never put on hold is {consequence}",
                ctx.at(rule.location, (*rule.location.path, "starts")),
                "start the clock at the record's own date or event; an active hold already suspends disposal",
                [Related(holds_at, "holds are declared here")] if model.hold_fields else [],
            )
        if not rule.keep and rule.period[0] == 0 and rule.starts in ("created", "last_activity"):
            ctx.add(
                "L014",
                WARNING,
                f"`{rule.id}` disposes of a record the moment its `{rule.starts}` clock starts ({period})",
                ctx.at(rule.location, (*rule.location.path, "period")),
                "give the period the record must be kept for, like `30d`",
            )
    _postponed(ctx, model)
    _uncovered_types(ctx, policy, model)


def _hold_classified(ctx: _Context, name: str, where: Location) -> None:
    source = ctx.policies.get("classification")
    if source is None:
        return
    for rule in source.extra.rules:
        if rule.detector is None and any(fnmatch.fnmatchcase(name, p) for p in rule.fields):
            return
    rules_at = ctx.at(source.location, ("rules",), key=True)
    ctx.add(
        "L011",
        WARNING,
        f"hold field `{name}` is not classified: every held record lists it as unclassified, and access denies it",
        where,
        f"add `{name}` to the `fields:` of a classification rule",
        [Related(rules_at, "classification rules by field name")],
    )


def _postponed(ctx: _Context, model: Any) -> None:
    """L013: a dispose rule that a keep rule with the same clock always outlasts."""
    for d in model.rules:
        if d.keep:
            continue
        for k in model.rules:
            common = _common_types(d.record_types, k.record_types)
            if not k.keep or k.starts != d.starts or not common:
                continue
            if _period_hours(k.period)[0] > _period_hours(d.period)[1]:
                ctx.add(
                    "L013",
                    WARNING,
                    f"`{d.id}` ({d.period[0]}{d.period[1]} after `{d.starts}`) is always postponed by keep rule "
                    f"`{k.id}` ({k.period[0]}{k.period[1]}) for {common} records with both rules' classes",
                    d.location,
                    f"shorten `{k.id}`, lengthen `{d.id}`, or narrow their record types or classes",
                    [Related(k.location, f"keep rule `{k.id}`")],
                )
                break


def _common_types(a: Sequence[str], b: Sequence[str]) -> str:
    if "*" in a and "*" in b:
        return "all"
    if "*" in a or "*" in b:
        return ", ".join(f"`{t}`" for t in (b if "*" in a else a))
    both = [t for t in a if t in b]
    return ", ".join(f"`{t}`" for t in both)


def _uncovered_types(ctx: _Context, policy: Policy, model: Any) -> None:
    """L015: a record type no rule names, and that no rule for every type and class covers."""
    named = {t for r in model.rules for t in r.record_types}
    wide = [r for r in model.rules if "*" in r.record_types]
    if any("*" in r.classes for r in wide):
        return
    for j, rtype in enumerate(model.record_types):
        if rtype in named:
            continue
        only = ", ".join(f"`{r.id}` (for {', '.join(f'`{c}`' for c in r.classes)} data)" for r in wide)
        scope = f"only {only} can apply, so its other records get" if only else "its records get"
        ctx.add(
            "L015",
            WARNING,
            f"no retention rule names record type `{rtype}`: {scope} `no_rule`",
            ctx.at(policy.location, ("record_types", j)),
            f"add a rule with `record_types: [{rtype}]`, or remove the record type",
            [Related(r.location, f"rule `{r.id}`") for r in wide],
        )


# --------------------------------------------------------------------------------------------
# access: L020-L022 (and conditions: L003-L005)
# --------------------------------------------------------------------------------------------


def _access_space(ctx: _Context, policy: Policy, grant: Any) -> Space:
    model = policy.extra
    text = Values(co=True)
    space = Space()
    for name, absent in (("subject.id", False), ("subject.department", True)):
        space.add(Var(name, text, absent))
    for key in ("customer", "record_type", "owner", "tier", "department"):
        space.add(Var(f"resource.{key}", text, True))
    for key, declared in (("action", model.actions), ("purpose", model.purposes)):
        listed = getattr(grant, f"{key}s")
        values = declared if "*" in listed else listed
        universe = Values.of(values) or Values(co=True)
        where = ctx.at(grant.location, (*grant.location.path, f"{key}s"))
        space.add(Var(key, universe, False, where, f"{key}s: " + ", ".join(values)))
    return space


def _check_access(ctx: _Context, policy: Policy) -> None:
    model = policy.extra
    for grant in (*model.rules, *model.exceptions):
        if grant.when is not None:
            space = _access_space(ctx, policy, grant)
            atoms: list[Atom] = []
            cases = cond.analyse(grant.when, space, atoms)
            rule = RuleDecl(grant.id, grant.location, {}, grant.when, grant.when_text)
            row = _Row(rule, cases, atoms, {})
            _check_row(ctx, space, row, {}, "apply")
        _overridden(ctx, policy, grant)
    _ungranted_roles(ctx, policy)
    if ctx.now is not None:
        for i, waiver in enumerate(model.exceptions):
            if waiver.expires is not None and waiver.expires <= ctx.now:
                ctx.add(
                    "L022",
                    WARNING,
                    f"waiver `{waiver.id}` expired on {waiver.expires.isoformat().replace('+00:00', 'Z')}",
                    ctx.at(waiver.location, ("exceptions", i, "expires")),
                    f"renew it with its owner (`{waiver.owner}`) or remove it",
                )


def _covers(deny: Any, roles: Mapping[str, tuple[str, ...]], role: str, cls: str, action: str, purpose: str) -> bool:
    return (
        ("*" in deny.roles or bool(set(roles.get(role, (role,))) & set(deny.roles)))
        and ("*" in deny.classes or cls in deny.classes)
        and ("*" in deny.actions or action in deny.actions)
        and ("*" in deny.purposes or purpose in deny.purposes)
    )


def _overridden(ctx: _Context, policy: Policy, grant: Any) -> None:
    """L020: an allow rule or waiver every case of which an unconditional deny rule covers."""
    model = policy.extra
    if grant.effect != "allow":
        return
    denies = [d for d in model.rules if d.effect == "deny" and d.when is None and d.id not in grant.waives]
    if not denies:
        return
    source = ctx.policies.get("classification")
    all_classes = tuple(c.id for c in source.extra.classes) if source is not None else ("*",)
    classes = all_classes if "*" in grant.classes else grant.classes
    actions = model.actions if "*" in grant.actions else grant.actions
    purposes = model.purposes if "*" in grant.purposes else grant.purposes
    # a grant for anyone, or for named subjects, applies whatever roles they hold: only a deny
    # for every role (`"*"`) covers it
    roles = ("*",) if "*" in grant.roles or grant.subjects else grant.roles
    used: list[Any] = []
    for role in roles:
        for c in classes:
            for a in actions:
                for p in purposes:
                    deny = next((d for d in denies if _covers(d, model.roles, role, c, a, p)), None)
                    if deny is None:
                        return
                    if deny not in used:
                        used.append(deny)
    names = ", ".join(f"`{d.id}`" for d in used)
    ctx.add(
        "L020",
        ERROR,
        f"{'waiver' if grant.waiver else 'rule'} `{grant.id}` can never allow anything: deny "
        f"{'rules' if len(used) > 1 else 'rule'} {names} always {'apply' if len(used) > 1 else 'applies'} "
        "too, and deny wins",
        grant.location,
        "narrow the deny rule, or list it under a waiver's `waives:` if the exception is intended",
        [Related(d.location, f"deny rule `{d.id}`") for d in used],
    )


def _ungranted_roles(ctx: _Context, policy: Policy) -> None:
    model = policy.extra
    granted = {r for g in (*model.rules, *model.exceptions) if g.effect == "allow" for r in g.roles}
    if "*" in granted:
        return
    for role, closure in model.roles.items():
        if not granted.intersection(closure):
            ctx.add(
                "L021",
                WARNING,
                f"role `{role}` is granted nothing: no allow rule or waiver names it or a role it inherits",
                model.role_locations.get(role, policy.location),
                "grant it what its duties need, or remove it",
            )


# --------------------------------------------------------------------------------------------
# load errors, with the second place they involve
# --------------------------------------------------------------------------------------------


def _load_finding(err: PolicyError, docs: Mapping[str, Document]) -> Finding:
    location, related = err.location, []
    if err.related is not None:
        related.append(Related(err.related, _what_is_at(docs, err.related)))
    if err.code in ("P181", "P183"):  # an unknown role: name the roles declared
        doc = docs.get(location.file)
        if doc is not None and isinstance(doc.data, dict) and "roles" in doc.data:
            related.append(Related(doc.location(("roles",), key=True), "roles are declared here"))
    if err.code == "P185":  # an unknown data class: point at it, and at the classes declared
        location, related = _unknown_class(err, docs)
    return Finding(err.code, ERROR, err.message, location, err.hint or "", tuple(related))


def _what_is_at(docs: Mapping[str, Document], where: Location) -> str:
    doc = docs.get(where.file)
    if doc is None or not where.path:
        return "the other place involved"
    try:
        node = doc.get(where.path)
    except (KeyError, IndexError, TypeError):
        return "the other place involved"
    kinds = {"rules": "rule", "bands": "band", "tables": "table", "exceptions": "waiver", "classes": "class"}
    parts = [p for p in where.path if isinstance(p, str)]
    kind = kinds.get(parts[-1], "") if parts else ""
    if isinstance(node, dict) and "id" in node:
        return f"{kind} `{node['id']}`".strip()
    return "the other place involved"


def _unknown_class(err: PolicyError, docs: Mapping[str, Document]) -> tuple[Location, list[Related]]:
    location, related = err.location, []
    names = re.findall(r"`([^`]*)`", err.message)
    doc = docs.get(location.file)
    if names and doc is not None:
        try:
            listed = doc.get(location.path).get("classes", [])
            location = doc.location((*location.path, "classes", listed.index(names[0])))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            pass
    for other in docs.values():
        if isinstance(other.data, dict) and other.data.get("kind") == "classification" and "classes" in other.data:
            related.append(Related(other.location(("classes",), key=True), "data classes are declared here"))
            break
    else:
        if err.related is not None:
            related.append(Related(err.related, "the classification policy"))
    return location, related


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("lint", help="find mistakes policies can load with: dead rules, gaps, conflicts")
    p.add_argument("paths", nargs="*", help="policy files or directories (default: policies)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--now", help="the date to judge waiver expiry against, e.g. 2026-01-01 (default: not judged)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.cli import parse_now  # the CLI's own timestamp reading, with its error message

    now = parse_now(args.now) if args.now else None
    findings = lint_paths(args.paths or ["policies"], build_registry(), now=now)
    if args.format == "json":
        print(json.dumps([f.to_dict() for f in findings], ensure_ascii=False, indent=2))
    else:
        for f in findings:
            print(f.describe())
    errors = sum(f.severity == ERROR for f in findings)
    warnings = len(findings) - errors
    print(f"{errors} error(s), {warnings} warning(s)", file=sys.stderr)
    return 1 if errors or (args.strict and findings) else 0


__all__ = ["Finding", "Related", "add_command", "dedupe", "lint_bundle", "lint_paths", "lint_policies", "policy_space"]
