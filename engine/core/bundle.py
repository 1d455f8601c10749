"""The policy bundle: every policy file of a directory, loaded, validated and compiled together.

The bundle version is a content hash: SHA-256 over the policy-semantics version and each
file's name and bytes, so any edit to any file (comments included: decisions cite file
lines) gives a new version, and the same files always give the same one.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.core.compile import CompiledPolicy, compile_policy
from engine.core.decision import SEMANTICS_VERSION
from engine.core.load import Document, load_file, load_text, policy_files, read_policy_bytes
from engine.core.model import Policy
from engine.core.periods import Marks, describe_period, period_starts, read_marks, variant
from engine.core.validate import validate
from engine.errors import Location, PolicyError, PolicyErrors, did_you_mean
from engine.hookspecs import Registry


@dataclass(frozen=True)
class PolicySet:
    """The policies in force during one period (``start`` inclusive, ``end`` exclusive; None
    is open-ended), in dependency order; and, when some rule or policy in force then is in
    audit mode, the set with those applied (``audit``) and the domains whose outcome they
    can change (``audited``: those with audit rules and those that use them)."""

    start: datetime | None
    end: datetime | None
    policies: dict[str, CompiledPolicy]
    audit: dict[str, CompiledPolicy] | None = None
    audited: frozenset[str] = frozenset()

    def describe(self) -> str:
        return describe_period(self.start, self.end)


@dataclass(frozen=True)
class Bundle:
    """A loaded policy set: compiled policies by domain and the bundle version.

    ``periods`` are the policy sets the files describe over time (one when no rule carries
    an effective date), in time order; ``policies`` is the last of them (in force from the
    latest date written in the files on).
    """

    version: str
    policies: dict[str, CompiledPolicy]  # in dependency order: a domain after those it uses
    files: tuple[str, ...]
    sources: tuple[tuple[str, bytes], ...] = ()  # (file name, bytes): what the version hashes
    periods: tuple[PolicySet, ...] = ()
    approvals: tuple[dict[str, Any], ...] = ()  # the signed approvals it was let in with (engine.audit.approvals)

    def policy(self, domain: str) -> Policy:
        return self.policies[domain].policy

    @cached_property
    def _starts(self) -> list[datetime]:
        """Where each period after the first starts, computed once (evaluation bisects it)."""
        return [p.start for p in self.periods[1:] if p.start is not None]

    def period_index(self, now: datetime) -> int:
        """The position in ``periods`` of the policy set in force at ``now``."""
        return bisect_right(self._starts, now) if len(self.periods) > 1 else 0


def bundle_version(docs: Sequence[Document]) -> str:
    return _version([(doc.path, doc.raw) for doc in docs])


def _version(sources: Sequence[tuple[str, bytes]]) -> str:
    h = hashlib.sha256(f"charter-semantics:{SEMANTICS_VERSION}\n".encode())
    for path, raw in sorted(sources, key=lambda s: Path(s[0]).name):
        h.update(f"{Path(path).name}\n{len(raw)}\n".encode())
        h.update(raw)
    return "b-" + h.hexdigest()[:32]


def read_sources(paths: Sequence[str | Path]) -> list[tuple[str, bytes]]:
    """The bytes of every policy file named, directories expanded to their ``*.yaml`` files."""
    out: list[tuple[str, bytes]] = []
    errors: list[PolicyError] = []
    for p in paths:
        path = Path(p)
        files = list(policy_files(path)) if path.is_dir() else [path]
        for f in files:
            try:
                out.append((str(f), read_policy_bytes(f)))
            except PolicyErrors as exc:  # too big to read
                errors.extend(exc.errors)
            except OSError as exc:
                reason = "no such file or directory" if not f.exists() else f"cannot read the file: {exc.strerror}"
                errors.append(PolicyError(reason, Location(str(f)), code="P009", hint="check the path"))
    if errors:
        raise PolicyErrors(errors)
    return out


BundleCache = dict[tuple[str, tuple[str, ...]], "Bundle | PolicyErrors"]
CACHE_SIZE = 16


def build_bundle_cached(
    paths: Sequence[str | Path],
    registry: Registry,
    cache: BundleCache,
    sources: Sequence[tuple[str, bytes]] | None = None,
) -> Bundle:
    """``build_bundle``, reusing the result for files whose names and bytes were seen before.

    A reload of unchanged files, or a switch back to a version seen recently, costs a read
    and a hash; a set of files known to be wrong fails again at once with the same errors.
    ``sources``: the files' (name, bytes) as already read (``engine.api`` reads them whole,
    checked against a manifest or left to settle); by default they are read from ``paths``.
    """
    sources = read_sources(paths) if sources is None else list(sources)
    key = (_version(sources), tuple(p for p, _ in sources))
    hit = cache.get(key)
    if hit is None:
        try:
            hit = _build([load_text(raw, path) for path, raw in sources], paths, registry)
        except PolicyErrors as exc:
            hit = exc
        if len(cache) >= CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = hit
    if isinstance(hit, PolicyErrors):
        raise hit
    return hit


def load_documents(paths: Sequence[str | Path]) -> list[Document]:
    """Load every policy file named, directories expanded to their ``*.yaml`` files."""
    files: list[Path] = []
    errors: list[PolicyError] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend(policy_files(path))
        elif path.exists():
            files.append(path)
        else:
            errors.append(
                PolicyError("no such file or directory", Location(str(p)), code="P009", hint="check the path")
            )
    docs = []
    for f in files:
        try:
            docs.append(load_file(f))
        except PolicyErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise PolicyErrors(errors)
    return docs


def check_uses(policies: Mapping[str, Policy], registry: Registry) -> list[PolicyError]:
    """Every domain a policy ``uses:`` is loaded, the uses have no cycle, and cross-domain checks pass."""
    errors: list[PolicyError] = []
    for policy in policies.values():
        for name, use in policy.uses.items():
            if name not in policies:
                errors.append(
                    PolicyError(
                        f"this policy uses `{name}`, but no `{name}` policy is loaded",
                        use.location,
                        code="P160",
                        hint=did_you_mean(name, policies)
                        or f"add the `{name}` policy file to the policy directory, or remove this line",
                    )
                )
    if errors:
        return errors
    cycle = _find_cycle(policies)
    if cycle:
        files = " -> ".join(f"{policies[k].path} ({k})" for k in [*cycle, cycle[0]])
        first, second = policies[cycle[0]], policies[cycle[1 % len(cycle)]]
        return [
            PolicyError(
                f"the policies use each other in a cycle: {files}",
                first.uses[second.kind].location,
                code="P161",
                related=second.uses[cycle[2 % len(cycle)]].location if len(cycle) > 1 else None,
                hint="a domain can use another's decisions only if that one does not use it back; remove one `uses:`",
            )
        ]
    for policy in policies.values():
        cross = registry.domains[policy.kind].cross_check
        if cross is not None:
            errors.extend(cross(policy, policies))
    return errors


def _find_cycle(policies: Mapping[str, Policy]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(kind: str) -> list[str]:
        state[kind] = 1
        stack.append(kind)
        for dep in policies[kind].uses:
            if state.get(dep) == 1:
                return stack[stack.index(dep) :]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[kind] = 2
        return []

    for kind in sorted(policies):
        if kind not in state:
            found = visit(kind)
            if found:
                return found
    return []


def dependency_order(policies: Mapping[str, Policy]) -> list[str]:
    """Domain names with each after the domains it uses (ties by name); the uses have no cycle."""
    out: list[str] = []

    def visit(kind: str) -> None:
        if kind in out:
            return
        for dep in sorted(policies[kind].uses):
            visit(dep)
        out.append(kind)

    for kind in sorted(policies):
        visit(kind)
    return out


def build_bundle(paths: Sequence[str | Path], registry: Registry) -> Bundle:
    """Load, validate and compile a policy set. Raises ``PolicyErrors`` with every error found."""
    return _build(load_documents(paths), paths, registry)


def build_bundle_from_documents(docs: list[Document], paths: Sequence[str | Path], registry: Registry) -> Bundle:
    """``build_bundle`` over documents already loaded (``load_documents``), so that a caller
    which needs them too (``charter validate`` lints them) reads and parses each file once."""
    return _build(docs, paths, registry)


def build_bundle_from_sources(sources: Sequence[tuple[str, bytes]], registry: Registry) -> Bundle:
    """``build_bundle`` over policy files given as (name, bytes), as a decision log stores
    them: nothing is read from or written to disk."""
    return _build([load_text(raw, name) for name, raw in sources], [name for name, _ in sources], registry)


def _build(docs: list[Document], paths: Sequence[str | Path], registry: Registry) -> Bundle:
    if not docs:
        raise PolicyErrors(
            [
                PolicyError(
                    "no policy files found",
                    Location(", ".join(str(p) for p in paths)),
                    code="P151",
                    hint="policy files end in `.yaml`",
                )
            ]
        )
    marks = [read_marks(doc) for doc in docs]
    errors = [e for m in marks for e in m.errors]
    if errors:
        raise PolicyErrors(errors)
    builder = _SetBuilder(registry)
    starts = period_starts(marks)
    any_audit = any(m.has_audit for m in marks)
    periods: list[PolicySet] = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        when = describe_period(start, end)
        enforced = builder.build([variant(m, start, audit=False) for m in marks], when)
        audit = None
        if any_audit and enforced is not None:
            audit = builder.build(_audit_docs(marks, start), f"{when}, with the rules in audit mode")
        if enforced is None or (any_audit and audit is None):
            continue
        audited = frozenset(k for k in audit or {} if audit is not None and _differs(k, audit, enforced))
        periods.append(PolicySet(start, end, enforced, audit if audited else None, audited))
    if builder.errors:
        raise PolicyErrors(builder.finish_errors(len(starts) * (2 if any_audit else 1)))
    sources = tuple(sorted((Path(d.path).name, d.raw) for d in docs))
    return Bundle(bundle_version(docs), periods[-1].policies, tuple(d.path for d in docs), sources, tuple(periods))


def _audit_docs(marks: list[Marks], start: datetime | None) -> list[Document | None]:
    """The documents with audit mode applied: a policy file in audit mode stands in for the
    enforced file of its kind."""
    docs = [variant(m, start, audit=True) for m in marks]
    shadowing = {str(d.data.get("kind")) for m, d in zip(marks, docs, strict=True) if d is not None and m.policy.audit}
    return [
        d
        for m, d in zip(marks, docs, strict=True)
        if d is not None and (m.policy.audit or str(d.data.get("kind")) not in shadowing)
    ]


def _differs(kind: str, audit: Mapping[str, CompiledPolicy], enforced: Mapping[str, CompiledPolicy]) -> bool:
    """Whether audit mode can change ``kind``'s outcome: its policy differs, or one it uses does."""
    mine = audit[kind]
    if enforced.get(kind) is not mine:
        return True
    return any(_differs(dep, audit, enforced) for dep in mine.policy.uses if dep in audit)


class _SetBuilder:
    """Validates and compiles the policy set of each period, reusing what periods share."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.validated: dict[tuple[str, str], Policy | PolicyErrors] = {}
        self.compiled: dict[int, CompiledPolicy] = {}
        self.errors: dict[tuple[str, str, str], tuple[PolicyError, set[str]]] = {}

    def build(self, docs: Sequence[Document | None], when: str) -> dict[str, CompiledPolicy] | None:
        errors: list[PolicyError] = []
        policies: dict[str, Policy] = {}
        for doc in docs:
            if doc is None:
                continue
            try:
                policy = self._validate(doc)
            except PolicyErrors as exc:
                errors.extend(exc.errors)
                continue
            first = policies.get(policy.kind)
            if first is not None:
                errors.append(
                    PolicyError(
                        f"a second `{policy.kind}` policy; the first is in {first.path}",
                        policy.location,
                        code="P150",
                        related=first.location,
                        hint="keep one policy file per domain (a second one may be in `mode: audit`)",
                    )
                )
                continue
            policies[policy.kind] = policy
        if not errors:
            errors.extend(check_uses(policies, self.registry))
        if errors:
            for err in errors:
                key = (str(err.location), err.code, err.message)
                self.errors.setdefault(key, (err, set()))[1].add(when)
            return None
        return {kind: self._compile(policies[kind]) for kind in dependency_order(policies)}

    def _validate(self, doc: Document) -> Policy:
        key = (doc.path, hashlib.sha256(json.dumps(doc.data, sort_keys=True, default=str).encode()).hexdigest())
        hit = self.validated.get(key)
        if hit is None:
            try:
                hit = validate(doc, self.registry)
            except PolicyErrors as exc:
                hit = exc
            self.validated[key] = hit
        if isinstance(hit, PolicyErrors):
            raise hit
        return hit

    def _compile(self, policy: Policy) -> CompiledPolicy:
        hit = self.compiled.get(id(policy))
        if hit is None:
            hit = self.compiled[id(policy)] = compile_policy(policy, self.registry)
        return hit

    def finish_errors(self, sets: int) -> list[PolicyError]:
        """Each error once; one found in only some periods says which."""
        out = []
        for err, when in self.errors.values():
            if len(when) < sets:
                err.message = f"{err.message} (in force {'; '.join(sorted(when))})"
            out.append(err)
        return out
