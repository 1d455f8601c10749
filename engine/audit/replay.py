"""Replay: re-evaluate logged decisions from what the log holds, as they were or with other policies.

Every record names the policy files (stored in the log's store), the population snapshot
(likewise), the caller's ``now`` and the facts read (sensitive ones sealed). Replay opens
the sealed values with the log key, rebuilds (in memory) the policies the record names and
compares the outcome — outputs, fired rules, notes and upstream decisions — byte for byte as canonical
JSON. ``against`` evaluates the same inputs with another policy directory instead: the
what-if of an edit, before it is deployed.

Plugins are pinned: a record (version 2) holds what each scorer, detector and event backend
answered (``plugin_outputs``), and replay decides with those answers in place of the plugins
(``Playback``), with the plugin versions the record names, so a changed or replaced plugin
cannot change history. It also asks the installed plugins the same questions and reports
each plugin whose answer now differs (``Report.plugins``). A record without plugin outputs
(version 1) is replayed with the installed plugins, as before, and counted (``Report.live``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.audit.chain import ChainBroken, checked, decode, same_json
from engine.audit.log import decision_body, plugins_listing, scorer_input
from engine.audit.protect import SEALED, Protector, SealError, was_erased
from engine.core.bundle import Bundle, build_bundle, build_bundle_from_sources
from engine.core.decision import ENGINE_VERSION, SEMANTICS_VERSION, Decision, RecordedNote
from engine.core.evaluate import Program
from engine.core.state import Loaded
from engine.errors import CharterError, EvaluationError, FactErrors, PluginError
from engine.plugins import DetectorSpec, EventBackendSpec, Registry, ScorerSpec, build_registry
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
    # (kind, name, version when logged, version installed or None) -> [calls whose live answer differs, records]
    plugins: dict[tuple[str, str, str | None, str | None], list[int]] = field(default_factory=dict)
    live: int = 0  # records without plugin outputs (version 1): replayed with the installed plugins

    def plugin_differences(self) -> list[dict[str, Any]]:
        """Each plugin whose installed version now answers otherwise than the record holds."""
        return [
            {"kind": k, "name": n, "version_then": then, "version_now": now, "calls": calls, "records": recs}
            for (k, n, then, now), (calls, recs) in sorted(self.plugins.items(), key=lambda kv: str(kv[0]))
        ]

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
            "plugins_differ": self.plugin_differences(),
            "live_plugins": self.live,
            "sample": self.changed[:sample],
        }


def records(store: Store, filters: Filters = Filters()) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(seq, record id, body) of every logged decision that passes ``filters``, each checked
    against the hash chain first: a tampered log raises ``ChainBroken`` at its first bad record."""
    for seq, rec in checked(store.read()):
        body = decode(rec["body"])
        if filters.keep(body, datetime.fromisoformat(body["time"])):
            yield seq, rec["hash"], body


def unseal(value: Any, path: str, subject: str, protector: Protector | None) -> Any:
    """``value`` (a record's facts, or a part at ``path``) with its sealed values opened with
    ``subject``'s key (looked up once); a sealed value without a protector raises K001, a
    withheld one K006."""
    return _unseal(value, path, None if protector is None else protector.opener(subject))


def _unseal(value: Any, path: str, opener: Callable[[str, dict[str, str]], Any] | None) -> Any:
    if isinstance(value, dict):
        if SEALED in value:
            if opener is None:
                raise SealError(
                    "the record holds sealed values and no log key was given",
                    code="K001",
                    hint="pass the log key (--key-file or CHARTER_LOG_KEY)",
                )
            return opener(path, value)
        if "$withheld" in value:
            raise SealError(f"`{path}` was withheld when logged (no key)", code="K006")
        out = {}
        for k, v in value.items():
            kind = type(v)
            if kind is str or kind is int or kind is float or kind is bool or v is None:  # a leaf: as it is
                out[k] = v
            else:
                out[k] = _unseal(v, f"{path}.{k}" if path else str(k), opener)
        return out
    if isinstance(value, list):
        return [_unseal(v, f"{path}[{i}]", opener) for i, v in enumerate(value)]
    return value


_MISSING = object()


class Playback:
    """The plugin answers of the record being replayed, given in place of the plugins'.

    Programs built for replay (``Replayer``) ask ``call(kind, name, input, live)``: the
    answer the record holds for that plugin at the place being evaluated (``stack``: the
    domains from the top, as ``engine.audit.log.plugin_outputs`` names them), after asking
    the installed plugin (``live()``) the same question and noting where it differs; or, for
    a record without plugin outputs, or a question it holds no answer to (``against`` other
    policies), the installed plugin's answer. One record at a time: not thread-safe."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.entries: dict[tuple[str, str, str], dict[str, Any]] | None = None
        self.versions: dict[tuple[str, str, str], str | None] = {}
        self.collect = False
        self.differ: dict[tuple[str, str, str | None], set[tuple[str, str]]] = {}

    def begin(self, body: Mapping[str, Any], *, collect: bool) -> None:
        recorded = body.get("plugin_outputs")
        self.stack = []
        self.collect = collect
        self.differ = {}
        self.entries = None
        self.versions = {}
        if isinstance(recorded, list):
            self.entries = {}
            for e in recorded:
                key = (str(e["kind"]), str(e["name"]), str(e["at"]))
                self.entries[key] = dict(e["calls"])
                self.versions[key] = e.get("version")

    def call(
        self, kind: str, name: str, key: str, live: Callable[[], Any], same: Callable[[Any, Any], bool] | None = None
    ) -> Any:
        calls = None if self.entries is None else self.entries.get((kind, name, "/".join(self.stack)))
        recorded = _MISSING if calls is None else calls.get(key, _MISSING)
        if recorded is _MISSING:
            return live()
        if self.collect:
            try:
                now = live()
            except Exception as exc:  # the installed plugin fails where the logged one answered
                now = {"raised": type(exc).__name__}
            if not (same(recorded, now) if same is not None else same_json(recorded, now)):
                at = "/".join(self.stack)
                self.differ.setdefault((kind, name, self.versions.get((kind, name, at))), set()).add((at, key))
        return recorded

    def scorer(
        self, name: str, live: Callable[..., float], facts: Any, args: Any, now: Any, stats: tuple[Any, ...]
    ) -> float:
        """A scorer's answer at replay: the recorded number, or its recorded note raised
        (``RecordedNote``) where it gave none."""
        got = self.call("scorer", name, scorer_input(args), lambda: live(facts, args, now, *stats), _same_score)
        if isinstance(got, dict):
            raise RecordedNote(got.get("note"))
        return float(got) if isinstance(got, int) and not isinstance(got, bool) else got


def _not_installed(kind: str, name: str) -> Callable[..., Any]:
    """A stand-in for a plugin the record names that is no longer installed: the record's
    answers are used; asked anything else (or to compare), it fails, naming the plugin."""

    def fail(*_: Any) -> Any:
        raise PluginError(
            f"the {kind.replace('_', ' ')} `{name}` that logged this decision is not installed",
            plugin=name,
            code="R002",
            hint="install it to compare its answers; the recorded ones are used",
        )

    if kind == "event_backend":
        return lambda patterns, key: fail
    return fail


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _same_score(recorded: Any, live: Any) -> bool:
    """A number is the same number; no value (a note, a failure, not a number) is no value."""
    return _number(recorded) == _number(live)


class Replayer:
    """Rebuilds the policies each record names from the log's stored policy files and
    snapshots, in memory, cached by version (``engine.core.state.Loaded``).

    For a record with plugin outputs, the policies are compiled against the plugins it names
    (``pinned``: the installed plugins with the versions logged, scorers answering from the
    record) and the domains' runners given the ``Playback``."""

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
        self.playback = Playback()
        self._erasures: dict[str, bool] = {}  # subject -> whether its key was erased on purpose
        self._loaded: dict[tuple[str, str | None, str | None], Loaded] = {}
        self._bundles: dict[tuple[str, str | None], Bundle] = {}
        self._pinned: dict[str, Registry] = {}

    def close(self) -> None:
        self._loaded.clear()
        self._bundles.clear()
        self._pinned.clear()

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def loaded(self, body: Mapping[str, Any], *, logged: bool) -> Loaded:
        """The policies (and snapshot) that decide ``body`` again: those it was logged with,
        or with ``against`` the other policy directory."""
        source = body["bundle_blob"] if logged or self.against is None else f"dir:{self.against}"
        # a record with plugin outputs: compiled against the plugins it names (their digest)
        plugins = str(body.get("plugins")) if isinstance(body.get("plugin_outputs"), list) else None
        key = (source, body.get("snapshot"), plugins)
        hit = self._loaded.get(key)
        if hit is None:
            snapshot = fetch_snapshot(body["snapshot"], self.store) if body.get("snapshot") else None
            hit = self._loaded[key] = Loaded.build(self._bundle(source, plugins), snapshot)
            if plugins is not None:
                self._play(hit)
        return hit

    def _bundle(self, source: str, plugins: str | None = None) -> Bundle:
        """The bundle of ``source`` (a directory, ``dir:...``, or a stored blob's digest), read
        and compiled once per plugin set however many snapshots its records name."""
        hit = self._bundles.get((source, plugins))
        if hit is None:
            registry = self.registry if plugins is None else self.pinned(plugins)
            hit = self._bundles[(source, plugins)] = (
                build_bundle([source[4:]], registry) if source.startswith("dir:") else self._stored(source, registry)
            )
        return hit

    def _stored(self, digest: str, registry: Registry) -> Bundle:
        data = self.store.get_blob("bundle", digest)
        if data is None:
            raise CharterError(f"the log's store lacks the policy files `{digest[:16]}`", code="R001")
        files = json.loads(data)["files"]
        return build_bundle_from_sources([(name, text.encode("utf-8")) for name, text in files.items()], registry)

    def pinned(self, plugins: str) -> Registry:
        """The installed plugins as the records naming plugin set ``plugins`` (the digest of
        its stored listing) had them: each with the version listed then (score digests, which
        snapshots are checked against, name it), scorers answering through the ``Playback``."""
        hit = self._pinned.get(plugins)
        if hit is not None:
            return hit
        data = self.store.get_blob("plugins", plugins)
        then: dict[tuple[str, str], str] = {}
        if data is not None:
            then = {(str(kind), str(name)): str(version) for kind, name, version, _ in json.loads(data)}
        reg = self.registry
        playback = self.playback

        def scorer(spec: ScorerSpec) -> ScorerSpec:
            live, name = spec.func, spec.name

            def answer(facts: Any, args: Any, now: Any, *stats: Any) -> float:
                return playback.scorer(name, live, facts, args, now, stats)

            return dataclasses.replace(spec, func=answer, version=then.get(("scorer", name), spec.version))

        detectors = dict(reg.detectors)
        backends = dict(reg.event_backends)
        for kind, name in then:  # logged then, not installed now: answered from the record only
            if kind == "detector" and name not in detectors:
                detectors[name] = DetectorSpec(name, _not_installed(kind, name))
            elif kind == "event_backend" and name not in backends:
                backends[name] = EventBackendSpec(name, _not_installed(kind, name))
        hit = self._pinned[plugins] = dataclasses.replace(
            reg,
            scorers={n: scorer(s) for n, s in reg.scorers.items()},
            detectors={
                n: dataclasses.replace(s, version=then.get(("detector", n), s.version)) for n, s in detectors.items()
            },
            event_backends={
                n: dataclasses.replace(s, version=then.get(("event_backend", n), s.version))
                for n, s in backends.items()
            },
        )
        return hit

    def _play(self, loaded: Loaded) -> None:
        """Give ``loaded``'s programs the playback: domain runners ask it for their plugins'
        answers; every program says where it is evaluated (``Playback.stack``)."""
        seen: set[int] = set()
        todo = [p for period in loaded.periods for p in (*period.programs.values(), *(period.audit or {}).values())]
        while todo:
            program = todo.pop()
            if id(program) in seen:
                continue
            seen.add(id(program))
            todo.extend(program.upstream.values())
            if program.runner is not None and hasattr(program.runner, "playback"):
                program.runner.playback = self.playback
            setattr(program, "evaluate", self._scoped(program))  # noqa: B010 (a method replaced on one object)

    def _scoped(self, program: Program) -> Callable[..., Decision]:
        evaluate, domain, playback = program.evaluate, program.domain, self.playback

        def scoped(facts: Mapping[str, Any], now: datetime, *, explain: bool = False) -> Decision:
            playback.stack.append(domain)
            try:
                return evaluate(facts, now, explain=explain)
            finally:
                playback.stack.pop()

        return scoped

    def decide(
        self, body: Mapping[str, Any], *, logged: bool, explain: bool = False, collect: bool = False
    ) -> Decision:
        """``body``'s decision made again; ``collect``: note the plugins whose installed
        versions answer otherwise than the record holds (``Playback.differ``)."""
        facts = unseal(body["facts"], "", body["subject"] or "", self.protector)
        now = datetime.fromisoformat(body["time"])
        loaded = self.loaded(body, logged=logged)
        period = loaded.period(now)
        program = loaded.program(period, body["domain"], now)
        shadow = period.shadow(body["domain"])
        playback = self.playback
        playback.begin(body, collect=collect)
        try:  # as ``engine.core.state.decide``, with audit mode's place named for the playback
            decision = program.evaluate(facts, now, explain=explain)
            if shadow is not None:
                playback.stack = ["audit"]
                try:
                    decision.audit = shadow.evaluate(facts, now, explain=explain)
                except (FactErrors, EvaluationError) as exc:
                    decision.notes = (*decision.notes, f"audit mode could not decide: {exc.message}")
        finally:
            playback.stack = []
        return decision

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

    def _erased(self, subject: str) -> bool:
        """Whether ``subject``'s key was erased on purpose (an erasure mark), once per subject."""
        known = self._erasures.get(subject)
        if known is None:
            known = self._erasures[subject] = was_erased(self.store, subject)
        return known

    def _one(
        self, report: Report, seq: int, rid: str, body: dict[str, Any], running: Mapping[str, str], sample: int
    ) -> None:
        report.total += 1
        for what, version in running.items():
            if body.get(what) != version:
                label = "plugins" if what == "plugins" else f"{what} {body.get(what)}"
                report.versions[f"{label} when logged, not the running one"] += 1
        if not isinstance(body.get("plugin_outputs"), list):
            report.live += 1
        try:
            new = self.decide(body, logged=self.against is None, collect=True)
            self._plugins_differ(report)
        except SealError as exc:
            subject = str(body.get("subject"))
            lost = exc.code == "K004" and not self._erased(subject)
            if exc.code in ("K004", "K006") and not lost:  # erased, or logged without a key: unreadable by design
                report.unreadable += 1
            elif exc.code == "K005" and self._erased(subject):  # said as it is, never counted as unreadable:
                report.errors.append(  # a value sealed under the erased key and an altered one look alike
                    {
                        "seq": seq,
                        "id": rid,
                        "error": f"{exc.message}: `{subject}` was erased and has a new key since, and a value"
                        " sealed under the erased key cannot be told from an altered one (check the chain with"
                        " `charter log verify` against signed checkpoints) [K011]",
                        "code": "K011",
                    }
                )
            elif lost:  # a key deleted behind the log's back: the record cannot be reproduced, and should
                report.errors.append(
                    {
                        "seq": seq,
                        "id": rid,
                        "error": f"the data key of `{body.get('subject')}` is missing and was never erased"
                        " (`charter log erase` leaves a mark): its sealed values cannot be opened [K010]",
                        "code": "K010",
                    }
                )
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
        if same_json(before, after):  # the canonical JSON of each is the same
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

    def _plugins_differ(self, report: Report) -> None:
        installed: dict[str, Mapping[str, Any]] = {
            "scorer": self.registry.scorers,
            "detector": self.registry.detectors,
            "event_backend": self.registry.event_backends,
        }
        for (kind, name, then), calls in self.playback.differ.items():
            spec = installed.get(kind, {}).get(name)
            counts = report.plugins.setdefault((kind, name, then, spec.version if spec is not None else None), [0, 0])
            counts[0] += len(calls)
            counts[1] += 1

    def _trace(self, body: Mapping[str, Any], *, logged: bool) -> list[dict[str, Any]]:
        try:
            d = self.decide(body, logged=logged, explain=True)
        except CharterError as exc:
            return [{"error": str(exc)}]
        return [t.to_dict() for t in d.trace or ()]


def _short(old: Any, new: Any) -> str:
    text = f"{json.dumps(old, ensure_ascii=False)} -> {json.dumps(new, ensure_ascii=False)}"
    return text if len(text) <= 120 else text[:117] + "..."
