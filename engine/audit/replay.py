"""Replay: re-evaluate logged decisions from what the log holds, as they were or with other policies.

Every record names the policy files (stored in the log's store), the population snapshot
(likewise), the caller's ``now`` and the facts read (sensitive ones sealed). Replay opens
the sealed values with the log key, rebuilds (in memory) the policies the record names and
compares the outcome — outputs, fired rules, notes and upstream decisions — byte for byte as canonical
JSON. ``against`` evaluates the same inputs with another policy directory instead: the
what-if of an edit, before it is deployed.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.audit.chain import ChainBroken, canonical, checked
from engine.audit.log import decision_body, plugins_listing
from engine.audit.protect import SEALED, Protector, SealError
from engine.core.bundle import Bundle, build_bundle, build_bundle_from_sources
from engine.core.decision import ENGINE_VERSION, SEMANTICS_VERSION, Decision
from engine.core.state import Loaded
from engine.errors import CharterError
from engine.plugins import Registry, build_registry
from engine.population import fetch_snapshot
from engine.storage import Store


@dataclass(frozen=True)
class Filters:
    domain: str | None = None
    customer: str | None = None
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keep(self, body: Mapping[str, Any], when: datetime) -> bool:
        if self.domain is not None and body["domain"] != self.domain:
            return False
        if self.customer is not None and body["subject"] != self.customer:
            return False
        if self.rule is not None and not any(f[0] == self.rule for f in body["fired"]):
            return False
        if self.since is not None and when < self.since:
            return False
        return not (self.until is not None and when >= self.until)


@dataclass
class Report:
    """What a replay found. ``changed`` holds every divergence (or, with ``against``, change)."""

    against: str | None = None
    total: int = 0
    same: int = 0
    unreadable: int = 0
    changed: list[dict[str, Any]] = field(default_factory=list)
    by_domain: Counter[str] = field(default_factory=Counter)
    by_output: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)  # logged vs running versions that differ
    audit_differs: Counter[str] = field(default_factory=Counter)  # by domain: audit mode would decide otherwise

    @property
    def ok(self) -> bool:
        return not self.changed and not self.errors

    def to_dict(self, sample: int = 20) -> dict[str, Any]:
        return {
            "against": self.against,
            "total": self.total,
            "reproduced" if self.against is None else "unchanged": self.same,
            "changed": len(self.changed),
            "unreadable": self.unreadable,
            "errors": self.errors,
            "by_domain": dict(self.by_domain),
            "by_output": {k: dict(v) for k, v in self.by_output.items()},
            "versions": dict(self.versions),
            "audit_differs": dict(self.audit_differs),
            "sample": self.changed[:sample],
        }


def records(store: Store, filters: Filters = Filters()) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(seq, record id, body) of every logged decision that passes ``filters``, each checked
    against the hash chain first: a tampered log raises ``ChainBroken`` at its first bad record."""
    for seq, rec in checked(store.read()):
        body = json.loads(rec["body"])
        if filters.keep(body, datetime.fromisoformat(body["time"])):
            yield seq, rec["hash"], body


def unseal(value: Any, path: str, subject: str, protector: Protector | None) -> Any:
    if isinstance(value, dict):
        if SEALED in value:
            if protector is None:
                raise SealError(
                    "the record holds sealed values and no log key was given",
                    code="K001",
                    hint="pass the log key (--key-file or CHARTER_LOG_KEY)",
                )
            return protector.open(subject, path, value)
        if "$withheld" in value:
            raise SealError(f"`{path}` was withheld when logged (no key)", code="K006")
        return {k: unseal(v, f"{path}.{k}" if path else str(k), subject, protector) for k, v in value.items()}
    if isinstance(value, list):
        return [unseal(v, f"{path}[{i}]", subject, protector) for i, v in enumerate(value)]
    return value


class Replayer:
    """Rebuilds the policies each record names from the log's stored policy files and
    snapshots, in memory, cached by version (``engine.core.state.Loaded``)."""

    def __init__(
        self,
        store: Store,
        protector: Protector | None,
        *,
        against: str | Path | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.store = store
        self.protector = protector
        self.registry = registry if registry is not None else build_registry()
        self.against = str(against) if against is not None else None
        self._loaded: dict[tuple[str, str | None], Loaded] = {}
        self._bundles: dict[str, Bundle] = {}

    def close(self) -> None:
        self._loaded.clear()
        self._bundles.clear()

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def loaded(self, body: Mapping[str, Any], *, logged: bool) -> Loaded:
        """The policies (and snapshot) that decide ``body`` again: those it was logged with,
        or with ``against`` the other policy directory."""
        source = body["bundle_blob"] if logged or self.against is None else f"dir:{self.against}"
        key = (source, body.get("snapshot"))
        hit = self._loaded.get(key)
        if hit is None:
            snapshot = fetch_snapshot(body["snapshot"], self.store) if body.get("snapshot") else None
            hit = self._loaded[key] = Loaded.build(self._bundle(source), snapshot)
        return hit

    def _bundle(self, source: str) -> Bundle:
        """The bundle of ``source`` (a directory, ``dir:...``, or a stored blob's digest), read
        and compiled once however many snapshots its records name."""
        hit = self._bundles.get(source)
        if hit is None:
            hit = self._bundles[source] = (
                build_bundle([source[4:]], self.registry) if source.startswith("dir:") else self._stored(source)
            )
        return hit

    def _stored(self, digest: str) -> Bundle:
        data = self.store.get_blob("bundle", digest)
        if data is None:
            raise CharterError(f"the log's store lacks the policy files `{digest[:16]}`", code="R001")
        files = json.loads(data)["files"]
        return build_bundle_from_sources([(name, text.encode("utf-8")) for name, text in files.items()], self.registry)

    def decide(self, body: Mapping[str, Any], *, logged: bool, explain: bool = False) -> Decision:
        facts = unseal(body["facts"], "", body["subject"] or "", self.protector)
        now = datetime.fromisoformat(body["time"])
        return self.loaded(body, logged=logged).decide(body["domain"], facts, now, explain=explain)[0]

    def run(self, filters: Filters = Filters(), sample: int = 20) -> Report:
        report = Report(against=self.against)
        running = {
            "engine": ENGINE_VERSION,
            "semantics": SEMANTICS_VERSION,
            "plugins": hashlib.sha256(plugins_listing(self.registry)).hexdigest(),
        }
        try:
            for seq, rid, body in self._keys_ahead(records(self.store, filters)):
                self._one(report, seq, rid, body, running, sample)
        except ChainBroken as broken:
            bad = broken.result
            report.errors.append(
                {
                    "seq": bad.bad_seq,
                    "id": None,
                    "error": f"the hash chain breaks at record {bad.bad_seq} ({bad.reason}): "
                    "it and the records after it were not replayed",
                }
            )
        return report

    def _keys_ahead(
        self, items: Iterator[tuple[int, str, dict[str, Any]]], ahead: int = 256
    ) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``items``, read ``ahead`` at a time so that their customers' data keys are fetched in
        one read per chunk rather than one per customer; records read before a break in the
        chain are still yielded before it is raised."""
        chunk: list[tuple[int, str, dict[str, Any]]] = []

        def flush() -> list[tuple[int, str, dict[str, Any]]]:
            if self.protector is not None and chunk:
                self.protector.preload({str(body["subject"] or "") for _, _, body in chunk})
            done = chunk.copy()
            chunk.clear()
            return done

        try:
            for item in items:
                chunk.append(item)
                if len(chunk) >= ahead:
                    yield from flush()
        except ChainBroken:
            yield from flush()
            raise
        yield from flush()

    def _one(
        self, report: Report, seq: int, rid: str, body: dict[str, Any], running: Mapping[str, str], sample: int
    ) -> None:
        report.total += 1
        for what, version in running.items():
            if body.get(what) != version:
                label = "plugins" if what == "plugins" else f"{what} {body.get(what)}"
                report.versions[f"{label} when logged, not the running one"] += 1
        try:
            new = self.decide(body, logged=self.against is None)
        except SealError as exc:
            if exc.code in ("K004", "K006"):  # erased, or logged without a key: unreadable by design
                report.unreadable += 1
            else:  # no key given, or the wrong one: the replay could not do its job
                report.errors.append({"seq": seq, "id": rid, "error": str(exc)})
            return
        except CharterError as exc:
            report.errors.append({"seq": seq, "id": rid, "error": str(exc)})
            return
        if new.audit_differs:
            report.audit_differs[body["domain"]] += 1
        before = {
            k: body[k] for k in ("domain", "subject", "outputs", "fired", "notes", "upstream", "audit") if k in body
        }
        after = decision_body(new)
        if canonical(before) == canonical(after):
            report.same += 1
            return
        report.by_domain[body["domain"]] += 1
        for name in sorted(set(before["outputs"]) | set(after["outputs"])):
            old, now = before["outputs"].get(name), after["outputs"].get(name)
            if old != now:
                report.by_output.setdefault(f"{body['domain']}.{name}", Counter())[_short(old, now)] += 1
        entry: dict[str, Any] = {
            "seq": seq,
            "id": rid,
            "domain": body["domain"],
            "subject": body["subject"],
            "before": before,
            "after": after,
        }
        if len(report.changed) < sample:
            entry["trace_before"] = self._trace(body, logged=True)
            entry["trace_after"] = self._trace(body, logged=self.against is None)
        report.changed.append(entry)

    def _trace(self, body: Mapping[str, Any], *, logged: bool) -> list[dict[str, Any]]:
        try:
            d = self.decide(body, logged=logged, explain=True)
        except CharterError as exc:
            return [{"error": str(exc)}]
        return [t.to_dict() for t in d.trace or ()]


def _short(old: Any, new: Any) -> str:
    text = f"{json.dumps(old, ensure_ascii=False)} -> {json.dumps(new, ensure_ascii=False)}"
    return text if len(text) <= 120 else text[:117] + "..."
