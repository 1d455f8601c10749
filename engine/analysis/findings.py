"""What ``charter lint`` reports: ``Finding``s, the places they involve, and the ``Context``
the checks add them to.

A finding has a stable code (docs/lint.md lists them all), a severity, a located one-line
message, the other places involved (``Related``) and a hint; ``describe`` renders it as
text, ``to_dict`` as JSON, and ``dedupe`` sorts findings by location, each once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.core.domain import Domain, providing
from engine.core.load import DocPath, Document
from engine.core.model import Policy
from engine.errors import Location
from engine.hookspecs import Registry

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


@dataclass
class Context:
    """One policy set being linted, its documents, and the findings the checks add to it."""

    policies: dict[str, Policy]
    docs: dict[str, Document]
    registry: Registry | None
    now: datetime | None
    findings: list[Finding] = field(default_factory=list)
    domains: dict[str, Domain] = field(default_factory=dict)  # the domain of each policy, by kind

    def classes_source(self, policy: Policy) -> Policy | None:
        """The policy ``policy`` uses that gives fields their data classes (``Domain.classes``)."""
        kind = providing(self.domains, {k: None for k in policy.uses if k in self.policies}, "classes")
        return self.policies[kind] if kind is not None else None

    def data_classes(self, policy: Policy) -> tuple[str, ...] | None:
        """The data classes of the policy ``policy`` uses for them; None when none is loaded."""
        source = self.classes_source(policy)
        if source is None:
            return None
        classes = self.domains[source.kind].classes
        return classes(source) if classes is not None else None

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
