"""Stage 2: engines, example records and population snapshots, each made once, and the checks
of the test files that need them (domains, rule ids, customers, outputs, populations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.api import Engine
from engine.errors import CharterError, PolicyError, did_you_mean
from engine.inputs import read_facts
from engine.population import Snapshot
from engine.workbench.policytest import coverage as cov
from engine.workbench.policytest.format import Case, SuiteFile, _shown


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
        ranking = engine.ranking_domain(case.domain)
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
                hint=did_you_mean(case.domain, engine.domains)
                or "loaded: " + ", ".join(f"`{d}`" for d in engine.domains),
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
    if engine.ranking_domain(case.domain) is not None and case.file.population is None:
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
