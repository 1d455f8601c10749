"""The policy test file: its schema, and stage 1, loading and checking the test files.

A test file (``policies/tests/*.yaml``; the format is documented in docs/testing.md) is read
with safe YAML, node locations kept, and checked against ``SCHEMA`` and the rules a schema
cannot say; every mistake is located ``file:line:col`` like a policy error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema

from engine.core.decision import jsonable
from engine.core.load import DocPath, Document, load_file
from engine.errors import Location, PolicyError, PolicyErrors, calendar_hint, did_you_mean
from engine.plugins import installed

DEFAULT_DIR = "policies/tests"

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
        "domain": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"},  # checked against the loaded domains (T038)
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


PROJECT_MARKERS = ("pyproject.toml", "charter.toml", ".git")
MAX_INPUT_BYTES = 1 << 30  # a customers or population file a test file names: 1 GiB at most


def project_roots(here: Path) -> list[Path]:
    """Where the files a test file (in the folder ``here``) names may lie: the working
    directory ``charter test`` runs in, and the test file's project — the nearest folder above
    it holding ``pyproject.toml``, ``charter.toml`` or ``.git``; else, for tests kept in a
    policy folder's ``tests/`` (the shipped layout), the folder holding that policy folder, and
    otherwise the folder holding the test file's folder."""
    folder = here.resolve()
    project = next((d for d in (folder, *folder.parents) if any((d / m).exists() for m in PROJECT_MARKERS)), None)
    if project is None:
        project = folder.parent.parent if folder.name == "tests" else folder.parent
    return [Path.cwd().resolve(), project]


def confinement(target: Path, here: Path, written: str, *, directory: bool = False) -> tuple[str, str, str] | None:
    """Why a file a test file names may not be read — (message, code, hint) — or None.

    A test file is text anyone with write access to the repository can change: it must not
    make ``charter test`` read a system file, a device (``/dev/zero`` never ends) or a file too
    large to hold in memory."""
    resolved = target.resolve()
    roots = project_roots(here)
    if not any(resolved.is_relative_to(root) for root in roots):
        return (
            f"`{written}` lies outside the project ({roots[-1]})",
            "T043",
            "name files inside the project, relative to this test file",
        )
    if directory:
        if not resolved.is_dir():
            return f"`{written}` is not a folder", "T044", "name the folder that holds the policy files"
        return None
    if not resolved.is_file():
        return f"`{written}` is not a regular file", "T044", "name a JSON, JSON Lines or CSV file"
    size = resolved.stat().st_size
    if size > MAX_INPUT_BYTES:
        return (
            f"`{written}` is {size:,} bytes, more than the {MAX_INPUT_BYTES:,} a test file may read",
            "T044",
            "test against a sample of the customers",
        )
    return None


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
        hints = {"domain": "add `domain:`, one of " + ", ".join(f"`{d}`" for d in installed().domains)}
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
    return "nothing" if value is None else f"`{jsonable(value)}`"


def _read_file(doc: Document, here: Path) -> tuple[SuiteFile, list[PolicyError]]:
    """The file's defaults and cases; what a schema cannot check (times, files, case shapes)."""
    data: dict[str, Any] = doc.data
    errors: list[PolicyError] = []

    def when(path: DocPath) -> datetime | None:
        stamp = parse_when(doc.get(path))
        if stamp is None:
            errors.append(
                PolicyError(
                    f"`{doc.get(path)}` is not a time",
                    doc.location(path),
                    code="T039",
                    hint=calendar_hint(doc.get(path)) or str(_when["description"]),
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
        problem = confinement(target, here, str(data[key]), directory=key == "policies")
        if problem is not None:
            errors.append(PolicyError(problem[0], doc.location((key,)), code=problem[1], hint=problem[2]))
            refused.append(key)
            return None
        return _shown(target)

    refused: list[str] = []  # files this test file may not read: its cases are not checked further
    now = when(("now",)) if "now" in data else None
    customers = file_ref("customers")
    population = file_ref("population") or customers
    policies = file_ref("policies") or _shown(here.parent)
    suite_file = SuiteFile(doc.path, doc, policies, customers, population, now)
    names: dict[str, int] = {}
    for i, spec in enumerate(data["cases"]):
        case_now = when(("cases", i, "now")) if "now" in spec else now
        # a file's `now` that is wrong is reported once, at its line, not again for every case
        errors += _case_errors(doc, i, spec, case_now is not None or "now" in spec or "now" in data, names)
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
        elif over not in (None, "population", "customers"):
            problem = confinement(here / over, here, str(over))
            if problem is not None:
                where = doc.location(("cases", i, "distribution", "over"))
                errors.append(PolicyError(problem[0], where, code=problem[1], hint=problem[2]))
                suite_file.cases = [c for c in suite_file.cases if c.index != i]
    if refused:
        suite_file.cases = []
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
