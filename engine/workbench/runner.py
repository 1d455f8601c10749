"""``charter test``: policy tests written in YAML by compliance officers, and rule coverage.

A test file (``policies/tests/*.yaml``; the format is documented in docs/testing.md) holds
cases. A *decision case* gives a domain and its facts (inline, or an example customer by id
with some fields overridden) and what the decision must show: outputs (a mapping checks
only the keys it names), rules that must or must not fire, notes, or the bad fact it must
be refused for. A *distribution case* evaluates a whole population and pins the share of
each value of an output (``high: 0.20``), which is how percentile figures are tested.

Stages, each feeding the next:

1. ``load_suite``: read every test file (safe YAML, node locations kept), check it against
   ``SCHEMA`` and the rules a schema cannot say; every mistake is located ``file:line:col``
   like a policy error, and nothing runs until every file is right (exit 2);
2. ``Workspace``: one engine per policy directory, example records and population
   snapshots read once and cached;
3. ``run_case``: decide, compare, and keep the fired rules (coverage) and, for a failure,
   the rules and trace steps that decided the outputs that did not match;
4. reports: text (one block per failure, a summary), ``--junit``, ``--json``, coverage.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema

from engine.api import Engine
from engine.cli import read_facts
from engine.core.decision import Decision, FiredRule
from engine.core.load import DocPath, Document, load_file
from engine.domains import DOMAINS
from engine.errors import CharterError, FactError, FactErrors, Location, PolicyError, PolicyErrors, did_you_mean
from engine.population import Snapshot
from engine.workbench import coverage as cov

DEFAULT_DIR = "policies/tests"
DEFAULT_TOLERANCE = 0.005
MAX_TRACE_LINES = 30

# --------------------------------------------------------------------------------------------
# the format
# --------------------------------------------------------------------------------------------

_text = {"type": "string", "minLength": 1}
_when = {**_text, "description": "a time with a zone, like `2025-06-30T00:00:00Z`, or a date like `2025-06-30`"}
_rule_ids = {
    "type": "array",
    "minItems": 1,
    "uniqueItems": True,
    "items": {
        "type": "string",
        "pattern": "^([a-z]+/)?[a-z][a-z0-9_-]*$",
        "description": "a rule id, like `risk-fraud`, or `classification/sensitive-identifiers` for another domain",
    },
}
_fraction = {"type": "number", "minimum": 0, "maximum": 1}
DISTRIBUTION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["output", "expect"],
    "properties": {
        "output": _text,
        "over": _text,
        "share_of": _text,
        "tolerance": _fraction,
        "expect": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "description": "a share like `0.20`, or `{at_least: 0.5}` / `{at_most: 0.1}`",
                "oneOf": [
                    _fraction,
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "minProperties": 1,
                        "properties": {"at_least": _fraction, "at_most": _fraction},
                    },
                ],
            },
        },
    },
}
CASE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "domain"],
    "properties": {
        "name": _text,
        "domain": {"enum": list(DOMAINS)},
        "covers": _text,
        "description": _text,
        "now": _when,
        "customer": _text,
        "facts": {"type": "object"},
        "without": {"type": "array", "minItems": 1, "items": _text},
        "expect": {"type": "object", "minProperties": 1},
        "fired": _rule_ids,
        "not_fired": _rule_ids,
        "notes_contain": {"type": "array", "minItems": 1, "items": _text},
        "error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["field"],
            "properties": {"field": _text, "code": _text, "message": _text},
        },
        "distribution": DISTRIBUTION,
    },
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Charter policy test file",
    "type": "object",
    "additionalProperties": False,
    "required": ["cases"],
    "properties": {
        "title": _text,
        "description": _text,
        "now": _when,
        "policies": _text,
        "customers": _text,
        "population": _text,
        "cases": {"type": "array", "minItems": 1, "items": CASE},
    },
}
DECISION_KEYS = ("customer", "facts", "without", "expect", "fired", "not_fired", "notes_contain", "error")
EXPECTATIONS = ("expect", "fired", "not_fired", "notes_contain", "error")
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass
class SuiteFile:
    """One test file: its document (for locations), its defaults and its cases."""

    path: str  # as shown: relative to the working directory when under it
    doc: Document
    policies: str
    customers: str | None
    population: str | None
    now: datetime | None
    cases: list[Case] = field(default_factory=list)


@dataclass
class Case:
    """One case of a test file; ``spec`` is its mapping as written."""

    file: SuiteFile
    index: int
    name: str
    domain: str
    spec: dict[str, Any]
    now: datetime

    @property
    def line(self) -> int:
        return self.file.doc.location(("cases", self.index)).line

    @property
    def where(self) -> str:
        return f"{self.file.path}:{self.line}"

    def at(self, *path: str | int, key: bool = False) -> Location:
        return self.file.doc.location(("cases", self.index, *path), key=key)


def _shown(path: Path) -> str:
    """A path as the officer would type it: relative to the working directory when under it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def parse_when(text: str) -> datetime | None:
    """A timestamp with a zone, or a date (midnight UTC); None when it is neither."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC) if len(text) == 10 else None
    return stamp


def find_test_files(paths: Sequence[str]) -> tuple[list[Path], list[PolicyError]]:
    """The test files named: files as given, directories' ``*.yaml`` and ``*.yml`` (not below)."""
    files: list[Path] = []
    errors: list[PolicyError] = []
    for p in paths or [DEFAULT_DIR]:
        path = Path(p)
        if path.is_dir():
            files += sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
        elif path.is_file():
            files.append(path)
        else:
            errors.append(PolicyError("no such file or directory", Location(p), code="T009", hint="check the path"))
    return files, errors


# --------------------------------------------------------------------------------------------
# stage 1: load and check the test files
# --------------------------------------------------------------------------------------------


def load_suite(paths: Sequence[str]) -> tuple[list[SuiteFile], list[PolicyError]]:
    """Every test file, checked; the errors of all of them, sorted by location."""
    files, errors = find_test_files(paths)
    suite = []
    for f in files:
        try:
            doc = load_file(f, display=_shown(f))
        except PolicyErrors as exc:
            errors += exc.errors
            continue
        found = schema_errors(doc)
        if found:
            errors += found
            continue
        suite_file, found = _read_file(doc, f.resolve().parent)
        errors += found
        suite.append(suite_file)
    return suite, errors


def schema_errors(doc: Document) -> list[PolicyError]:
    """The test file against ``SCHEMA``, each error in plain words at its node's location."""
    if not isinstance(doc.data, dict):
        return [PolicyError("a test file must be a mapping with `cases:`", doc.location(()), code="T010")]
    out: dict[tuple[DocPath, str], PolicyError] = {}
    for err in _VALIDATOR.iter_errors(doc.data):
        for e in _translate(doc, err):
            out.setdefault((e.location.path, e.code), e)
    return list(out.values())


def _translate(doc: Document, err: jsonschema.ValidationError) -> list[PolicyError]:
    path: DocPath = tuple(err.absolute_path)
    where, value, expected = doc.location(path), err.instance, list(_as_list(err.validator_value))
    schema: dict[str, Any] = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        return [
            PolicyError(
                f"unknown key `{k}`",
                doc.location((*path, k), key=True),
                code="T020",
                hint=did_you_mean(k, allowed) or "allowed here: " + ", ".join(f"`{a}`" for a in allowed),
            )
            for k in value
            if k not in allowed
        ]
    if err.validator == "required" and isinstance(value, dict):
        missing = [k for k in expected if k not in value]
        hints = {"domain": "add `domain:`, one of " + ", ".join(f"`{d}`" for d in DOMAINS)}
        return [
            PolicyError(f"missing key `{k}`", where, code="T021", hint=hints.get(k, f"add `{k}:`")) for k in missing
        ]
    if err.validator == "enum":
        words = [str(c) for c in expected]
        hint = did_you_mean(str(value), words) or "write one of " + ", ".join(f"`{w}`" for w in words)
        return [PolicyError(f"`{value}` is not allowed here", where, code="T022", hint=hint)]
    if err.validator == "type":
        wanted = {"string": "text", "object": "a mapping (`key: value` lines)", "array": "a list", "number": "a number"}
        want = wanted.get(str(err.validator_value), str(err.validator_value))
        return [PolicyError(f"expected {want}, found {_kind(value)}", where, code="T023")]
    if err.validator in ("minItems", "minProperties", "minLength"):
        return [PolicyError("this must not be empty", where, code="T026", hint="add at least one entry")]
    if err.validator in ("minimum", "maximum"):
        hint = f"the {err.validator} is {err.validator_value}"
        return [PolicyError(f"`{value}` is out of range", where, code="T025", hint=hint)]
    if err.validator == "uniqueItems":
        return [PolicyError("a value is listed twice", where, code="T027", hint="list each value once")]
    if err.validator in ("pattern", "oneOf", "anyOf"):
        about = schema.get("description")
        shown = f"`{value}`" if isinstance(value, (str, int, float)) else "this value"
        return [PolicyError(f"{shown} is not written as expected", where, code="T024", hint=about)]
    return [PolicyError(str(err.message), where, code="T029")]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing" if value is None else f"`{_plain(value)}`"


def _read_file(doc: Document, here: Path) -> tuple[SuiteFile, list[PolicyError]]:
    """The file's defaults and cases; what a schema cannot check (times, files, case shapes)."""
    data: dict[str, Any] = doc.data
    errors: list[PolicyError] = []

    def when(path: DocPath) -> datetime | None:
        stamp = parse_when(doc.get(path))
        if stamp is None:
            errors.append(
                PolicyError(
                    f"`{doc.get(path)}` is not a time", doc.location(path), code="T039", hint=str(_when["description"])
                )
            )
        return stamp

    def file_ref(key: str) -> str | None:
        if key not in data:
            return None
        target = here / data[key]
        if not target.exists():
            errors.append(
                PolicyError(
                    f"`{data[key]}` does not exist",
                    doc.location((key,)),
                    code="T035",
                    hint="paths are relative to this file",
                )
            )
        return _shown(target)

    now = when(("now",)) if "now" in data else None
    customers = file_ref("customers")
    population = file_ref("population") or customers
    policies = file_ref("policies") or _shown(here.parent)
    suite_file = SuiteFile(doc.path, doc, policies, customers, population, now)
    names: dict[str, int] = {}
    for i, spec in enumerate(data["cases"]):
        case_now = when(("cases", i, "now")) if "now" in spec else now
        errors += _case_errors(doc, i, spec, case_now is not None or "now" in spec, names)
        if case_now is not None:
            suite_file.cases.append(Case(suite_file, i, spec["name"], spec["domain"], spec, case_now))
        over = spec.get("distribution", {}).get("over")
        if over not in (None, "population", "customers") and not (here / over).exists():
            errors.append(
                PolicyError(
                    f"`{over}` does not exist",
                    doc.location(("cases", i, "distribution", "over")),
                    code="T035",
                    hint="write `population`, `customers`, or a path relative to this file",
                )
            )
    return suite_file, errors


def _case_errors(doc: Document, i: int, spec: dict[str, Any], timed: bool, names: dict[str, int]) -> list[PolicyError]:
    where = doc.location(("cases", i))
    out = []
    if spec["name"] in names:
        first = doc.location(("cases", names[spec["name"]]))
        message = f"two cases are named `{spec['name']}`"
        out.append(PolicyError(message, where, code="T040", hint="give each case its own name", related=first))
    names.setdefault(spec["name"], i)
    if not timed:
        out.append(PolicyError("the case has no `now`", where, code="T034", hint="add `now:` to the case or the file"))
    if "distribution" in spec:
        mixed = [k for k in DECISION_KEYS if k in spec]
        if mixed:
            out.append(
                PolicyError(
                    f"a distribution case cannot also have `{mixed[0]}`",
                    doc.location(("cases", i, mixed[0]), key=True),
                    code="T032",
                    hint="write a separate case for one decision",
                )
            )
        return out
    if "facts" not in spec and "customer" not in spec:
        out.append(
            PolicyError(
                "the case has no facts", where, code="T030", hint="add `facts:`, `customer:` (an id) or `distribution:`"
            )
        )
    if not any(k in spec for k in EXPECTATIONS):
        out.append(
            PolicyError(
                "the case checks nothing",
                where,
                code="T031",
                hint="add `expect:`, `fired:`, `not_fired:`, `notes_contain:` or `error:`",
            )
        )
    if "error" in spec:
        mixed = [k for k in EXPECTATIONS if k in spec and k != "error"]
        if mixed:
            out.append(
                PolicyError(
                    f"a case expecting an error makes no decision to check with `{mixed[0]}`",
                    doc.location(("cases", i, mixed[0]), key=True),
                    code="T033",
                    hint="write a separate case for the decision",
                )
            )
    return out


# --------------------------------------------------------------------------------------------
# stage 2: engines, example records and snapshots, each made once
# --------------------------------------------------------------------------------------------


class Workspace:
    """The engines, example records and population snapshots a run shares between cases."""

    def __init__(self) -> None:
        self.engines: dict[str, Engine | CharterError] = {}
        self.records: dict[str, list[dict[str, Any]] | CharterError] = {}
        self.by_id: dict[str, dict[str, dict[str, Any]]] = {}
        self.snapshots: dict[tuple[str, str, str, datetime], Snapshot] = {}

    def engine(self, policies: str) -> Engine | CharterError:
        if policies not in self.engines:
            try:
                self.engines[policies] = Engine(policies)
            except CharterError as exc:
                self.engines[policies] = exc
        return self.engines[policies]

    def read(self, source: str, engine: Engine | CharterError) -> list[dict[str, Any]] | CharterError:
        """The records of a JSON, JSON Lines or CSV file (CSV cells typed by the facts the policies declare)."""
        if source not in self.records:
            declared = {}
            if isinstance(engine, Engine):
                for compiled in engine.bundle.policies.values():
                    declared.update(compiled.policy.facts)
            try:
                self.records[source] = list(read_facts(source, "auto", declared))
            except (CharterError, ValueError, OSError) as exc:
                message = exc.message if isinstance(exc, CharterError) else str(exc)
                self.records[source] = CharterError(f"cannot read `{source}`: {message}", code="T035")
        return self.records[source]

    def customer(self, case: Case) -> dict[str, Any] | None:
        source = case.file.customers
        records = self.read(source, self.engine(case.file.policies)) if source else None
        if source is None or not isinstance(records, list):
            return None
        if source not in self.by_id:
            self.by_id[source] = {str(r["id"]): r for r in records if isinstance(r, dict) and "id" in r}
        return self.by_id[source].get(case.spec["customer"])

    def use_snapshot(self, engine: Engine, case: Case) -> None:
        """Rank against the case's population at its ``now``, when its domain (or one it uses) ranks."""
        ranking = ranking_domain(engine, case.domain)
        if ranking is None:
            return
        source = case.file.population
        assert source is not None  # checked before anything runs
        key = (case.file.policies, source, ranking, case.now)
        snap = self.snapshots.get(key)
        if snap is None:
            records = self.read(source, engine)
            if isinstance(records, CharterError):
                raise records
            snap = self.snapshots[key] = engine.build_snapshot(records, now=case.now, domain=ranking)
        if engine.snapshot is not snap:
            engine.use_snapshot(snap)


def ranking_domain(engine: Engine, domain: str) -> str | None:
    """``domain``, or a domain it uses (directly or not), whose policy ranks customers."""
    program = engine.program(domain)
    if program.needs_snapshot:
        return domain
    for name in program.policy.uses:
        found = ranking_domain(engine, name)
        if found is not None:
            return found
    return None


def reference_errors(suite: Sequence[SuiteFile], ws: Workspace) -> list[PolicyError]:
    """What needs the policies and the example records: domains, rule ids, customers, outputs."""
    errors: list[PolicyError] = []
    for suite_file in suite:
        engine = ws.engine(suite_file.policies)
        if isinstance(engine, CharterError):
            continue  # reported as each case's error when it runs
        policies = cov.policies_of(engine.bundle)
        known = cov.known_rules(policies)
        for case in suite_file.cases:
            errors += _case_references(case, engine, known, ws)
    return errors


def _case_references(case: Case, engine: Engine, known: Mapping[str, set[str]], ws: Workspace) -> list[PolicyError]:
    spec = case.spec
    if case.domain not in engine.domains:
        return [
            PolicyError(
                f"no `{case.domain}` policy is loaded from `{case.file.policies}`",
                case.at("domain"),
                code="T038",
                hint="loaded: " + ", ".join(f"`{d}`" for d in engine.domains),
            )
        ]
    out = []
    for key in ("fired", "not_fired"):
        for j, text in enumerate(spec.get(key, ())):
            domain, rid = qualify(text, case.domain)
            if rid in known.get(domain, ()):
                continue
            elsewhere = [d for d, ids in known.items() if rid in ids]
            hint = did_you_mean(rid, known.get(domain, ())) or (
                f"a rule of `{elsewhere[0]}`: write `{elsewhere[0]}/{rid}`" if elsewhere else None
            )
            out.append(PolicyError(f"no rule `{rid}` in `{domain}`", case.at(key, j), code="T037", hint=hint))
    outputs = engine.program(case.domain).policy.outputs
    if outputs:  # a domain with declared outputs (tiering): check the names
        names = [*spec.get("expect", {})] + ([spec["distribution"]["output"]] if "distribution" in spec else [])
        for name in names:
            if name not in outputs:
                where = case.at("expect", name, key=True) if name in spec.get("expect", {}) else case.at("distribution")
                hint = did_you_mean(name, outputs) or "outputs: " + ", ".join(f"`{o}`" for o in outputs)
                out.append(PolicyError(f"no output `{name}` in `{case.domain}`", where, code="T041", hint=hint))
    if "customer" in spec:
        out += _customer_errors(case, engine, ws)
    if ranking_domain(engine, case.domain) is not None and case.file.population is None:
        out.append(
            PolicyError(
                f"`{case.domain}` ranks customers against a population, and this file names none",
                case.at(),
                code="T042",
                hint="add `population:` or `customers:` at the top of the file",
            )
        )
    if "distribution" in spec and not _sources(case):
        out.append(
            PolicyError(
                "no population to count over",
                case.at("distribution"),
                code="T042",
                hint="add `population:` or `customers:` at the top of the file, or `over:` a file",
            )
        )
    for source in _sources(case):
        records = ws.read(source, engine)
        if isinstance(records, CharterError):
            out.append(PolicyError(records.message, case.at(), code="T035"))
    return out


def _customer_errors(case: Case, engine: Engine, ws: Workspace) -> list[PolicyError]:
    where = case.at("customer")
    if case.file.customers is None:
        return [PolicyError("no `customers:` file to look the id up in", where, code="T036", hint="add `customers:`")]
    records = ws.read(case.file.customers, engine)
    if isinstance(records, CharterError):
        return [PolicyError(records.message, case.file.doc.location(("customers",)), code="T035")]
    if ws.customer(case) is None:
        return [
            PolicyError(
                f"no customer `{case.spec['customer']}` in `{case.file.customers}`",
                where,
                code="T036",
                hint=did_you_mean(case.spec["customer"], [str(r.get("id")) for r in records[:100000]]),
            )
        ]
    return []


def _sources(case: Case) -> list[str]:
    """The file a distribution case counts over (none for a decision case, or when missing)."""
    if "distribution" not in case.spec:
        return []
    over = case.spec["distribution"].get("over", "population")
    if over == "population":
        return [case.file.population] if case.file.population else []
    if over == "customers":
        return [case.file.customers] if case.file.customers else []
    return [_shown(Path(case.file.doc.path).resolve().parent / over)]


def qualify(text: str, domain: str) -> cov.RuleKey:
    """``risk-fraud`` in the case's domain, or ``classification/basic-contact`` in another."""
    if "/" in text:
        other, rid = text.split("/", 1)
        return (other, rid)
    return (domain, text)


# --------------------------------------------------------------------------------------------
# stage 3: run the cases
# --------------------------------------------------------------------------------------------


class _Missing:
    """What a key that is not there holds, told apart from a `null` value."""

    def __repr__(self) -> str:
        return "nothing"


MISSING: Any = _Missing()


@dataclass
class Problem:
    """One way a case's expectation was not met: ``what`` expected ``expected``, got ``actual``."""

    what: str
    expected: Any = MISSING
    actual: Any = MISSING
    text: str = ""
    output: str | None = None  # the output it concerns, to show the rules that set it
    rule: cov.RuleKey | None = None  # the rule it concerns (`fired`, `not_fired`), to show its trace

    def describe(self) -> str:
        if self.text:
            return f"{self.what}: {self.text}"
        return f"{self.what}: expected {show(self.expected)}, got {show(self.actual)}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"what": self.what, "message": self.describe()}
        if self.expected is not MISSING:
            out["expected"] = _plain(self.expected)
        if self.text == "" or self.actual is not MISSING:
            out["actual"] = None if self.actual is MISSING else _plain(self.actual)
        return out


@dataclass
class Result:
    case: Case
    status: str = "passed"  # passed, failed, or error (the case could not run)
    problems: list[Problem] = field(default_factory=list)
    fired: set[cov.RuleKey] = field(default_factory=set)
    explanation: list[str] = field(default_factory=list)  # the deciding rules and trace, for a failure
    detail: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def run_case(case: Case, ws: Workspace) -> Result:
    result = Result(case)
    start = time.perf_counter()
    engine = ws.engine(case.file.policies)
    if isinstance(engine, CharterError):
        result.status = "error"
        first = engine.errors[0] if isinstance(engine, PolicyErrors) else engine
        result.problems.append(Problem("policies", text=f"`{case.file.policies}` do not load: {first}"))
        return result
    try:
        ws.use_snapshot(engine, case)
        if "distribution" in case.spec:
            _run_distribution(case, engine, ws, result)
        else:
            _run_decision(case, engine, ws, result)
    except CharterError as exc:  # no decision could be made: a missing snapshot, a plugin's failure
        result.status = "error"
        result.problems.append(Problem("error", text=exc.describe()))
    if result.problems and result.status == "passed":
        result.status = "failed"
    result.seconds = time.perf_counter() - start
    return result


def _run_decision(case: Case, engine: Engine, ws: Workspace, result: Result) -> None:
    spec = case.spec
    facts = build_facts(case, engine, ws, result.problems)
    try:
        decision = engine.evaluate(case.domain, facts, now=case.now, explain=True)
    except FactErrors as exc:
        result.problems += check_error(spec.get("error"), exc)
        return
    result.fired = fired_keys(decision)
    if "error" in spec:
        wanted = spec["error"]["field"]
        result.problems.append(Problem("error", text=f"expected the facts to be refused for `{wanted}`; they were not"))
    else:
        result.problems += check_decision(case, decision)
    if result.problems:
        result.explanation = explain(decision, result.problems, engine)


def build_facts(case: Case, engine: Engine, ws: Workspace, problems: list[Problem]) -> dict[str, Any]:
    """The case's facts: its example customer placed where the domain reads one, ``facts`` over it."""
    spec = case.spec
    facts: dict[str, Any] = {}
    if "customer" in spec:
        record: Any = copy.deepcopy(ws.customer(case))
        uses = engine.program(case.domain).policy.uses
        for key in reversed(next(iter(uses.values())).path if uses else ()):
            record = {key: record}  # escalation reads the customer at `customer`, access at `resource.record`
        facts = record
    facts = merge(facts, copy.deepcopy(spec.get("facts", {})))
    for dotted in spec.get("without", ()):
        *parents, last = dotted.split(".")
        node: Any = facts
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            del node[last]
        else:
            problems.append(Problem("without", text=f"there is no fact `{dotted}` to leave out"))
    return facts


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def check_error(expected: Mapping[str, Any] | None, exc: FactErrors) -> list[Problem]:
    if expected is None:
        return [Problem("facts", text=f"refused: {e.message} [{e.code}]") for e in exc.errors]
    if any(_error_matches(expected, e) for e in exc.errors):
        return []
    wanted = f"`{expected['field']}`" + (f" [{expected['code']}]" if "code" in expected else "")
    got = "; ".join(f"`{e.field}`: {e.message} [{e.code}]" for e in exc.errors)
    return [Problem("error", text=f"expected an error naming {wanted}, got: {got}")]


def _error_matches(expected: Mapping[str, Any], error: FactError) -> bool:
    return (
        error.field == expected["field"]
        and expected.get("code", error.code) == error.code
        and expected.get("message", "") in error.message
    )


def check_decision(case: Case, decision: Decision) -> list[Problem]:
    spec, out = case.spec, list[Problem]()
    outputs = decision.outputs
    for name, want in spec.get("expect", {}).items():
        if name in outputs:
            compare(want, outputs[name], name, out, name)
        else:
            hint = did_you_mean(name, outputs) or "outputs: " + ", ".join(f"`{o}`" for o in outputs)
            out.append(Problem(name, text=f"the decision has no such output ({hint})", output=name))
    fired = fired_keys(decision)
    for text in spec.get("fired", ()):
        key = qualify(text, case.domain)
        if key not in fired:
            out.append(Problem("fired", text=f"rule `{text}` did not fire", rule=key))
    for text in spec.get("not_fired", ()):
        key = qualify(text, case.domain)
        if key in fired:
            r = next(r for d in _decisions(decision) for r in d.fired if (d.domain, r.id) == key)
            out.append(Problem("not_fired", text=f"rule `{text}` fired ({r.file}:{r.line})", rule=key))
    notes = [n for d in _decisions(decision) for n in d.notes]
    for text in spec.get("notes_contain", ()):
        if not any(text in n for n in notes):
            seen = "; ".join(f"`{n}`" for n in notes) or "there are none"
            out.append(Problem("notes", text=f"no note contains `{text}` (notes: {seen})"))
    return out


def compare(expected: Any, actual: Any, path: str, out: list[Problem], output: str) -> None:
    """A mapping checks only the keys it names (`null` also matches a missing key); a list
    checks the same number of items, item by item; anything else must be equal."""
    if isinstance(expected, dict):
        if not isinstance(actual, Mapping):
            out.append(Problem(path, expected, actual, output=output))
            return
        keyed = {str(k): v for k, v in actual.items()}
        for key, want in expected.items():
            if key in keyed:
                compare(want, keyed[key], f"{path}.{key}", out, output)
            elif want is not None:
                out.append(Problem(f"{path}.{key}", want, MISSING, output=output))
        return
    if isinstance(expected, list):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            out.append(Problem(path, expected, actual, output=output))
            return
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            compare(want, got, f"{path}[{i}]", out, output)
        return
    if not same(expected, actual):
        out.append(Problem(path, expected, actual, output=output))


def same(expected: Any, actual: Any) -> bool:
    """Equal as an officer means it: `7` is `7.0`, `true` is not `1`, times compare as instants."""
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, str) and isinstance(actual, (str, datetime)):
        if expected == actual:
            return True
        want = parse_when(expected) if expected[:4].isdigit() else None
        got = actual if isinstance(actual, datetime) else parse_when(actual) if actual[:4].isdigit() else None
        return want is not None and got is not None and want == got
    return bool(expected == actual)


def _decisions(decision: Decision) -> Iterable[Decision]:
    """The decision and, depth first, every decision it used."""
    yield decision
    for up in decision.upstream:
        yield from _decisions(up)


def fired_keys(decision: Decision) -> set[cov.RuleKey]:
    return {(d.domain, r.id) for d in _decisions(decision) for r in d.fired}


def _run_distribution(case: Case, engine: Engine, ws: Workspace, result: Result) -> None:
    spec = case.spec["distribution"]
    output, weight = spec["output"], spec.get("share_of")
    records = ws.read(_sources(case)[0], engine)
    if isinstance(records, CharterError):
        raise records
    shares: dict[str, float] = {}
    counts: Counter[str] = Counter()
    refused = unweighted = 0
    deciders: dict[cov.RuleKey, FiredRule] = {}
    for record, made in zip(records, engine.evaluate_batch(case.domain, records, now=case.now), strict=True):
        if isinstance(made, FactErrors):
            refused += 1
            continue
        w = 1.0 if weight is None else record.get(weight)
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            unweighted += 1
            continue
        value = value_key(made.outputs.get(output))
        shares[value] = shares.get(value, 0.0) + w
        counts[value] += 1
        for r in made.fired:
            if any(name == output for name, _ in r.outputs):
                deciders.setdefault((made.domain, r.id), r)
    total = sum(shares.values())
    result.fired = set(deciders)
    result.detail = {
        "decided": sum(counts.values()),
        "refused": refused,
        "counts": dict(counts),
        "shares": {k: round(v / total, 6) for k, v in shares.items()} if total else {},
    }
    if unweighted:
        result.detail["without_" + str(weight)] = unweighted
    result.problems += check_shares(spec, shares, counts, total)
    if result.problems:
        found = ", ".join(f"{k} = {v:.4f}" for k, v in sorted(result.detail["shares"].items()))
        result.explanation = [f"  shares found: {found or 'none'}", "  rules that set it:"]
        result.explanation += [
            f"    {_fired_line(r)}" for r in sorted(deciders.values(), key=lambda r: (r.file, r.line))
        ]
        if refused:
            result.explanation.append(f"  ({refused} record(s) with bad facts were left out)")


def check_shares(
    spec: Mapping[str, Any], shares: Mapping[str, float], counts: Counter[str], total: float
) -> list[Problem]:
    output, tolerance = spec["output"], spec.get("tolerance", DEFAULT_TOLERANCE)
    of = f" of all `{spec['share_of']}`" if "share_of" in spec else ""
    if not total:
        return [Problem(output, text="no record could be decided")]
    out = []
    for value, want in spec["expect"].items():
        got = shares.get(str(value), 0.0) / total
        seen = f"got {got:.4f}{of} ({counts.get(str(value), 0)} of {sum(counts.values())})"
        what = f"{output} = {value}"
        if isinstance(want, dict):
            low, high = want.get("at_least", 0.0), want.get("at_most", 1.0)
            if got < low - 1e-12 or got > high + 1e-12:
                bound = " and ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in want.items())
                out.append(Problem(what, want, got, text=f"expected {bound}{of}, {seen}", output=output))
        elif abs(got - want) > tolerance + 1e-12:
            out.append(Problem(what, want, got, text=f"expected {want:g} ± {tolerance:g}{of}, {seen}", output=output))
    return out


def value_key(value: Any) -> str:
    """An output value as a distribution's `expect:` names it: `high`, `true`, `7`."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(_plain(value), ensure_ascii=False, default=str)


# --------------------------------------------------------------------------------------------
# why a case failed: the rules that decided and their trace
# --------------------------------------------------------------------------------------------


def explain(decision: Decision, problems: Sequence[Problem], engine: Engine) -> list[str]:
    """The rules that set the outputs that did not match, their trace, and the decisions used."""
    outs = {p.output for p in problems if p.output}
    named = {p.rule[1] for p in problems if p.rule and p.rule[0] == decision.domain}
    own = [r for r in decision.fired if outs & {name for name, _ in r.outputs}] or list(decision.fired)
    lines = ["  rules that decided:"] + [f"    {_fired_line(r)}" for r in own]
    if not own:
        lines.append("    (no rule fired)")
    for up in list(_decisions(decision))[1:]:
        lines += [f"    {_fired_line(r)}  [{up.domain}]" for r in up.fired[:10]]
    steps = {s.id for s in engine.program(decision.domain).policy.steps if outs & set(s.outputs)}
    wanted = {r.id for r in own} | named
    trace = [t for t in decision.trace or () if t.rule in wanted or t.step in steps]
    if trace:
        fired = set(decision.fired_ids)
        lines.append("  trace (* fired; yes/no: whether the rule's condition held; n/a: undefined):")
        for t in trace[:MAX_TRACE_LINES]:
            mark = ("*" if t.rule in fired else " ") + {True: "yes", False: "no ", None: "n/a"}[t.matched]
            tests = "; ".join(f"{text} [{', '.join(map(_show, vals))}] -> {_show(res)}" for text, vals, res in t.tests)
            lines.append(f"    {mark} {t.step}/{t.rule}: {tests or 'always'}{'  (' + t.error + ')' if t.error else ''}")
        if len(trace) > MAX_TRACE_LINES:
            lines.append(f"    ... {len(trace) - MAX_TRACE_LINES} more step(s): `charter explain` shows them all")
    return lines


def _fired_line(r: FiredRule) -> str:
    return f"[{r.id}] {r.message or '(no message)'}  ({r.file}:{r.line}{'; ' + r.clause if r.clause else ''})"


def _plain(value: Any) -> Any:
    """A value as JSON has it: times in ISO form with `Z`, durations in seconds."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, BaseException):
        return str(value)
    return value


def show(value: Any, limit: int = 200) -> str:
    if value is MISSING:
        return "nothing (no such key)"
    text = json.dumps(_plain(value), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    """A traced value as an officer would write it: durations in days and hours."""
    if isinstance(value, timedelta):
        days, rest = divmod(int(value.total_seconds()), 86400)
        return f"{days}d{rest // 3600}h" if days else f"{rest // 3600}h{rest % 3600 // 60}m"
    if isinstance(value, BaseException):
        return f"undefined: {value}"
    if isinstance(value, (str, bool, datetime)) or value is None:
        return show(value)
    return str(value)


# --------------------------------------------------------------------------------------------
# stage 4: reports
# --------------------------------------------------------------------------------------------


def failure_text(result: Result) -> list[str]:
    case = result.case
    head = "FAIL" if result.status == "failed" else "ERROR"
    lines = [f"{head} {case.where}: {case.name}"]
    lines += [f"  {p.describe()}" for p in result.problems]
    return lines + result.explanation


def summary(results: Sequence[Result]) -> str:
    counts = Counter(r.status for r in results)
    text = f"{counts['passed']} passed, {counts['failed']} failed"
    return text + (f", {counts['error']} could not run" if counts["error"] else "")


def junit(results: Sequence[Result], errors: Sequence[PolicyError] = ()) -> ET.ElementTree:
    """JUnit XML: a testsuite per test file, a testcase per case; CI servers read it."""
    root = ET.Element("testsuites", name="charter policy tests")
    by_file: dict[str, list[Result]] = {}
    for r in results:
        by_file.setdefault(r.case.file.path, []).append(r)
    for err in errors:
        by_file.setdefault(err.location.file, [])
    totals: Counter[str] = Counter()
    for path, rs in by_file.items():
        broken = [e for e in errors if e.location.file == path]
        counts = Counter(r.status for r in rs)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=path,
            tests=str(len(rs) + len(broken)),
            failures=str(counts["failed"]),
            errors=str(counts["error"] + len(broken)),
            skipped="0",
            time=f"{sum(r.seconds for r in rs):.3f}",
            file=path,
        )
        for err in broken:
            tc = ET.SubElement(suite, "testcase", name="(the test file)", classname=path, file=path)
            ET.SubElement(tc, "error", message=str(err), type="malformed").text = err.describe()
        for r in rs:
            tc = ET.SubElement(
                suite,
                "testcase",
                name=r.case.name,
                classname=Path(path).with_suffix("").as_posix().strip("/").replace("/", "."),
                file=path,
                line=str(r.case.line),
                time=f"{r.seconds:.3f}",
            )
            if r.status != "passed":
                tag = "failure" if r.status == "failed" else "error"
                message = "; ".join(p.describe() for p in r.problems)
                ET.SubElement(tc, tag, message=message, type=tag).text = "\n".join(failure_text(r))
        totals.update(tests=len(rs) + len(broken), failures=counts["failed"], errors=counts["error"] + len(broken))
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", str(totals["errors"]))
    return ET.ElementTree(root)


def json_report(
    results: Sequence[Result], coverage: Mapping[str, cov.Coverage] | None, errors: Sequence[PolicyError] = ()
) -> dict[str, Any]:
    counts = Counter(r.status for r in results)
    files: dict[str, dict[str, Any]] = {}
    for r in results:
        where = r.case.file
        f = files.setdefault(where.path, {"file": where.path, "policies": where.policies, "cases": []})
        f["cases"].append(
            {
                "name": r.case.name,
                "line": r.case.line,
                "domain": r.case.domain,
                "covers": r.case.spec.get("covers"),
                "status": r.status,
                "seconds": round(r.seconds, 4),
                "problems": [p.to_dict() for p in r.problems],
                "explanation": r.explanation,
                "fired": sorted(f"{d}/{rid}" for d, rid in r.fired),
                **({"distribution": r.detail} if r.detail else {}),
            }
        )
    out: dict[str, Any] = {
        "summary": {
            "passed": counts["passed"],
            "failed": counts["failed"],
            "errors": counts["error"],
            "total": len(results),
        },
        "errors": [e.to_dict() for e in errors],
        "files": list(files.values()),
        "coverage": None,
    }
    if coverage is not None:
        rules = sum(c.rules for c in coverage.values())
        fired = sum(c.fired for c in coverage.values())
        out["coverage"] = {
            "percent": round(100.0 * fired / rules, 2) if rules else 100.0,
            "rules": rules,
            "fired": fired,
            "policies": [{"path": path, **c.to_dict()} for path, c in coverage.items()],
        }
    return out


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def measure_coverage(results: Sequence[Result], ws: Workspace) -> dict[str, cov.Coverage]:
    """Rule coverage of each policy directory the cases ran against."""
    exercised: dict[str, set[cov.RuleKey]] = {}
    for r in results:
        exercised.setdefault(r.case.file.policies, set()).update(r.fired)
    out = {}
    for policies, fired in exercised.items():
        engine = ws.engines.get(policies)
        if isinstance(engine, Engine):
            out[policies] = cov.measure(cov.policies_of(engine.bundle), fired)
    return out


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "test",
        help="run the policy tests (YAML cases in policies/tests) and measure rule coverage",
        description="Run policy tests written in YAML (docs/testing.md). Exit codes: 0 every case passed; "
        "1 a case failed, could not run, or coverage is below --fail-under; 2 a test file is malformed.",
    )
    p.add_argument("paths", nargs="*", help=f"test files or directories (default: {DEFAULT_DIR})")
    p.add_argument("-k", dest="select", metavar="TEXT", help="run only the cases whose name contains TEXT")
    p.add_argument("-v", "--verbose", action="store_true", help="also list the cases that pass")
    p.add_argument("--coverage", action="store_true", help="report the rules no case makes fire")
    p.add_argument("--fail-under", type=float, metavar="PCT", help="exit 1 when overall rule coverage is below PCT")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write a JSON report")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    suite, errors = load_suite(args.paths)
    ws = Workspace()
    errors += reference_errors(suite, ws)
    if errors:
        errors = list({(str(e.location), e.code, e.message): e for e in errors}.values())  # each once
        errors.sort(key=PolicyError.sort_key)
        for err in errors:
            print(err.describe())
        print(f"{len(errors)} error(s) in the test files; no case was run", file=sys.stderr)
        _write_reports(args, [], None, errors)
        return 2
    text = (args.select or "").lower()
    cases = [c for f in suite for c in f.cases if text in c.name.lower()]
    if not cases:
        print(f"no case matches `{args.select}`" if args.select else "no test files found", file=sys.stderr)
        return 2
    for policies, engine in ws.engines.items():
        if isinstance(engine, CharterError):
            print(f"the policies in `{policies}` do not load:\n{engine.describe()}")
    results = []
    for case in cases:
        result = run_case(case, ws)
        results.append(result)
        if result.status != "passed":
            print("\n".join(failure_text(result)))
        elif args.verbose:
            print(f"ok   {case.where}: {case.name}")
    coverage = None
    if args.coverage or args.fail_under is not None:
        coverage = measure_coverage(results, ws)
        for path, c in coverage.items():
            print("\n".join(cov.render(c, f"`{path}`")))
    print(summary(results))
    _write_reports(args, results, coverage, [])
    code = 1 if any(r.status != "passed" for r in results) else 0
    if args.fail_under is not None and coverage is not None:
        rules = sum(c.rules for c in coverage.values())
        percent = 100.0 * sum(c.fired for c in coverage.values()) / rules if rules else 100.0
        if percent < args.fail_under:
            print(f"rule coverage {percent:.1f}% is below --fail-under {args.fail_under:g}%")
            code = 1
    return code


def _write_reports(
    args: argparse.Namespace,
    results: Sequence[Result],
    coverage: Mapping[str, cov.Coverage] | None,
    errors: Sequence[PolicyError],
) -> None:
    if args.junit:
        tree = junit(results, errors)
        ET.indent(tree)
        tree.write(args.junit, encoding="utf-8", xml_declaration=True)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(json_report(results, coverage, errors), f, ensure_ascii=False, indent=2, default=str)
            f.write("\n")
