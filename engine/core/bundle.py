"""The policy bundle: every policy file of a directory, loaded, validated and compiled together.

The bundle version is a content hash: SHA-256 over the policy-semantics version and each
file's name and bytes, so any edit to any file (comments included: decisions cite file
lines) gives a new version, and the same files always give the same one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.core.compile import CompiledPolicy, compile_policy
from engine.core.decision import SEMANTICS_VERSION
from engine.core.load import Document, load_file, load_text, policy_files
from engine.core.model import Policy
from engine.core.validate import validate
from engine.domains import DOMAINS
from engine.errors import Location, PolicyError, PolicyErrors
from engine.plugins import Registry


@dataclass(frozen=True)
class Bundle:
    """A loaded policy set: compiled policies by domain and the bundle version."""

    version: str
    policies: dict[str, CompiledPolicy]  # in dependency order: a domain after those it uses
    files: tuple[str, ...]
    sources: tuple[tuple[str, bytes], ...] = ()  # (file name, bytes): what the version hashes

    def policy(self, domain: str) -> Policy:
        return self.policies[domain].policy


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
                out.append((str(f), f.read_bytes()))
            except OSError as exc:
                reason = "no such file or directory" if not f.exists() else f"cannot read the file: {exc.strerror}"
                errors.append(PolicyError(reason, Location(str(f)), code="P009", hint="check the path"))
    if errors:
        raise PolicyErrors(errors)
    return out


BundleCache = dict[tuple[str, tuple[str, ...]], "Bundle | PolicyErrors"]
CACHE_SIZE = 16


def build_bundle_cached(paths: Sequence[str | Path], registry: Registry, cache: BundleCache) -> Bundle:
    """``build_bundle``, reusing the result for files whose names and bytes were seen before.

    A reload of unchanged files, or a switch back to a version seen recently, costs a read
    and a hash; a set of files known to be wrong fails again at once with the same errors.
    """
    sources = read_sources(paths)
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


def check_uses(policies: Mapping[str, Policy]) -> list[PolicyError]:
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
                        hint=f"add the `{name}` policy file to the policy directory, or remove this line",
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
        cross = DOMAINS[policy.kind].cross_check
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


def _build(docs: list[Document], paths: Sequence[str | Path], registry: Registry) -> Bundle:
    errors: list[PolicyError] = []
    policies: dict[str, Policy] = {}
    for doc in docs:
        try:
            policy = validate(doc, registry)
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
                    hint="keep one policy file per domain",
                )
            )
            continue
        policies[policy.kind] = policy
    if not docs:
        errors.append(
            PolicyError(
                "no policy files found",
                Location(", ".join(str(p) for p in paths)),
                code="P151",
                hint="policy files end in `.yaml`",
            )
        )
    if not errors:
        errors.extend(check_uses(policies))
    if errors:
        raise PolicyErrors(errors)
    compiled = {kind: compile_policy(policies[kind], registry) for kind in dependency_order(policies)}
    sources = tuple(sorted((Path(d.path).name, d.raw) for d in docs))
    return Bundle(bundle_version(docs), compiled, tuple(d.path for d in docs), sources)
