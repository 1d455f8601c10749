"""The decision log: one hash-chained record per decision, durable before it is reported.

What a record holds (``body``, canonical JSON; see docs/audit.md):

* ``domain``, ``subject``, ``time`` (the caller's ``now``), ``outputs``, ``fired`` (rule id
  and step), ``notes``, and ``upstream``: the same for each decision of a domain it used;
* ``facts``: the facts the policy could read, and only those, with every personal value
  sealed (``engine.audit.protect``) — a value is personal when the loaded classification
  policy gives its field a class other than a non-personal one (``public``), or one of its
  detectors finds what it recognises anywhere in the value's text, or its fact is declared
  ``sensitive: true`` (``sensitivity``);
* ``bundle`` (version) and ``bundle_blob`` (the policy files, stored content-addressed in
  the same store the first time they are used), ``snapshot`` (likewise stored),
  ``engine``, ``semantics`` and ``plugins`` (a digest of every plugin's name and version,
  the list itself stored as a blob);
* ``plugin_outputs`` (record version 2): what each scorer, detector and event backend
  answered in this decision (``plugin_outputs``), so that replay uses those answers and a
  changed plugin cannot change history.

``record`` appends a batch in one transaction and returns only when it is durable, so a
decision reported as recorded survives a crash of the process.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

from engine.audit.chain import canonical, decode, encode, head_of
from engine.audit.protect import SEALED, Protector
from engine.core.decision import Decision, jsonable
from engine.storage import StorageError, Store

if TYPE_CHECKING:
    from engine.audit.checkpoint import Checkpointer
    from engine.core.bundle import Bundle
    from engine.core.evaluate import Program
    from engine.hookspecs import Registry

RECORD_VERSION = 2  # 2: plugin outputs recorded (``plugin_outputs``); version 1 records are still read
Sensitive = Callable[[str, Any], bool]


def record_after(prev_hash: str, prev_n: int, body: bytes) -> tuple[bytes, str, int]:
    """``chain.link_after``, byte for byte, with the body encoded once: the record's canonical
    JSON (``{"body","hash","n","prev"}``, sorted keys) is put together around the body's text
    escaped as a JSON string, and the hash is taken over the body's bytes as they are."""
    n = prev_n + 1
    head = prev_hash.encode()
    digest = hashlib.sha256(b"%s\n%d\n%s" % (head, n, body)).hexdigest()
    text = encode_basestring(body.decode()).encode()
    return b'{"body":%s,"hash":"%s","n":%d,"prev":"%s"}' % (text, digest.encode(), n, head), digest, n


def decision_body(decision: Decision) -> dict[str, Any]:
    """The outcome part of a record: what replay compares."""
    return {
        "domain": decision.domain,
        "subject": decision.subject,
        "outputs": _jsonable(decision.outputs),
        "fired": [[r.id, r.step] for r in decision.fired],
        "notes": list(decision.notes),
        "upstream": [decision_body(u) for u in decision.upstream],
        **({"audit": decision_body(decision.audit)} if decision.audit is not None else {}),
    }


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _jsonable(value: Any) -> Any:
    """``jsonable(value)``, the same value, faster for what outputs are made of (objects,
    lists and plain values: those are not looked at twice); anything else is ``jsonable``'s."""
    kind = type(value)
    if kind is dict:
        plain = _PLAIN
        return {(k if type(k) is str else str(k)): (v if type(v) in plain else _jsonable(v)) for k, v in value.items()}
    if kind is list or kind is tuple:
        plain = _PLAIN
        return [v if type(v) in plain else _jsonable(v) for v in value]
    return jsonable(value)


class _Entry:
    """One call to ``DecisionLog.record`` waiting for its group's commit."""

    __slots__ = ("built", "decisions", "done", "error", "ids", "pending", "wake")

    def __init__(self, decisions: list[Decision]) -> None:
        self.decisions = decisions
        self.built: list[dict[str, Any]] = []
        self.pending: list[tuple[str, str, Any, dict[str, str]]] = []
        self.ids: list[str] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.wake = threading.Lock()
        self.wake.acquire()  # held until its thread is to go on


class DecisionLog:
    """Writes decision records to a store; thread-safe."""

    def __init__(
        self, store: Store, protector: Protector | None = None, checkpoints: Checkpointer | None = None
    ) -> None:
        """``checkpoints``: sign the head every so many records (``engine.audit.checkpoint``)."""
        self.store = store
        self.protector = protector
        self.checkpoints = checkpoints
        self._stored: set[tuple[str, str]] = set()
        self._sensitive: dict[tuple[int, int], tuple[Program, Program | None, Sensitive]] = {}
        self._lock = threading.Lock()
        self._children: dict[tuple[str, str], str] = {}  # (path, key) -> the path of the key's value
        self._group = threading.Lock()  # guards the group commit's queue
        self._queue: list[_Entry] = []
        self._committing = False

    # -- content-addressed context ---------------------------------------------------------------

    def _blob(self, kind: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if (kind, digest) not in self._stored:
            self.store.put_blob(kind, digest, data)
            with self._lock:
                self._stored.add((kind, digest))
        return digest

    def bundle_blob(self, bundle: Bundle) -> str:
        files = {name: raw.decode("utf-8") for name, raw in bundle.sources}
        approved = {"approvals": list(bundle.approvals)} if bundle.approvals else {}  # who let these files in
        return self._blob("bundle", canonical({"version": bundle.version, "files": files, **approved}))

    def plugins_blob(self, registry: Registry) -> str:
        return self._blob("plugins", plugins_listing(registry))

    def snapshot_blob(self, program: Program) -> None:
        snap, snap_id = program.snapshot, program.snapshot_id
        if snap is not None and snap_id is not None and ("population", snap_id) not in self._stored:
            from engine.population import store_snapshot

            store_snapshot(snap, self.store)
            with self._lock:
                self._stored.add(("population", snap_id))

    # -- records ---------------------------------------------------------------------------------

    def _body(
        self,
        decision: Decision,
        facts: Mapping[str, Any],
        program: Program,
        context: Mapping[str, str],
        classification: Program | None,
        pending: list[tuple[str, str, Any, dict[str, str]]],
        shadow: Program | None = None,
        registry: Registry | None = None,
    ) -> dict[str, Any]:
        read = program.facts_read(facts)
        if shadow is not None and decision.audit is not None:  # replay needs what audit mode read too
            read = {**shadow.facts_read(facts), **read}
        sensitive = self._sensitive_for(program, classification)
        subject = decision.subject or ""
        return {
            "v": RECORD_VERSION,
            "time": jsonable(decision.now),
            **decision_body(decision),
            "facts": self._seal(read, "", subject, sensitive, pending),
            "bundle": decision.bundle_version,
            "snapshot": _snapshot_of(decision),
            "engine": decision.engine_version,
            "semantics": decision.semantics_version,
            "plugin_outputs": plugin_outputs(decision, facts, program, shadow, registry),
            **context,
        }

    def _fill(self, pending: list[tuple[str, str, Any, dict[str, str]]]) -> None:
        """Seal the values set aside while building bodies: all their customers' keys at once."""
        if pending and self.protector is not None:
            self.protector.seal_into(pending)

    def record(
        self,
        items: Sequence[tuple[Decision, Mapping[str, Any], Program, Program | None]],
        bundle: Bundle,
        registry: Registry,
        classification: Program | None = None,
    ) -> list[str]:
        """Append one record per decision, durably; returns their ids (record hashes).

        Each item: the decision, the facts it was made from, the program that made it and the
        audit-mode program that made ``decision.audit`` (or None). Group commit: records that
        other threads hand in while a commit is under way are appended together in the next
        one, in one transaction; a lone call commits at once. A failed commit raises its error
        in every call whose records it held, and none of them is given an id."""
        if not items:
            return []
        entry = self._prepare(items, bundle, registry, classification)
        self._submit(entry)
        if entry.error is not None:
            raise entry.error
        assert entry.ids is not None
        return entry.ids

    def _prepare(
        self,
        items: Sequence[tuple[Decision, Mapping[str, Any], Program, Program | None]],
        bundle: Bundle,
        registry: Registry,
        classification: Program | None,
    ) -> _Entry:
        """The records' bodies, built in the caller's thread; their sealed values left to fill."""
        context = {"bundle_blob": self.bundle_blob(bundle), "plugins": self.plugins_blob(registry)}
        for _, _, program, _ in items:
            self.snapshot_blob(program)
            for up in program.upstream.values():
                self.snapshot_blob(up)
        entry = _Entry([d for d, _, _, _ in items])
        entry.built = [
            self._body(d, f, p, context, classification, entry.pending, shadow, registry) for d, f, p, shadow in items
        ]
        return entry

    def _submit(self, entry: _Entry) -> None:
        """Commit ``entry`` with whatever else is waiting: the first caller to find no commit
        under way leads (commits the queue, itself included); the others wait, and when a
        commit ends it hands the lead to the first still waiting."""
        with self._group:
            self._queue.append(entry)
            lead = not self._committing
            self._committing = True
        if not lead:
            entry.wake.acquire()  # released when its commit is done, or when it is to lead
            if entry.done:
                return
        with self._group:
            group, self._queue = self._queue, []
        try:
            self._commit_group(group)
        finally:
            for other in group:
                if not other.done:  # the commit itself went wrong: never acknowledged
                    other.error, other.done = StorageError("the decision log's commit failed", code="D004"), True
                if other is not entry:
                    other.wake.release()
            with self._group:
                nxt = self._queue[0] if self._queue else None
                self._committing = nxt is not None
            if nxt is not None:
                nxt.wake.release()  # its thread leads the next commit (not done: it leads)

    def _commit_group(self, group: list[_Entry]) -> None:
        start = time.perf_counter()
        try:
            ids = self._commit([e.built for e in group], [p for e in group for p in e.pending])
        except BaseException as exc:  # every call in the group fails with it; none is acknowledged
            for e in group:
                e.error, e.done = exc, True
            return
        at = 0
        for e in group:
            e.ids = ids[at : at + len(e.decisions)]
            at += len(e.decisions)
            for decision, rid in zip(e.decisions, e.ids, strict=True):
                decision.record_id = rid
            e.done = True
        self.committed(len(group), len(ids), time.perf_counter() - start)

    def committed(self, calls: int, records: int, seconds: float) -> None:
        """Called after each durable commit: ``records`` records of ``calls`` calls to ``record``
        in one transaction, in ``seconds``. Nothing by default (the service counts them)."""

    def _commit(
        self, built: list[list[dict[str, Any]]], pending: list[tuple[str, str, Any, dict[str, str]]]
    ) -> list[str]:
        """Seal, encode and append the bodies of a group in one transaction; their ids."""
        self._fill(pending)
        bodies = [encode(b) for part in built for b in part]  # canonical JSON, byte for byte
        made: list[tuple[bytes, str, int]] = []  # (record, hash, n) as linked, in order

        def linked(prev: bytes | None, body: bytes) -> bytes:
            if made and prev is made[-1][0]:  # the record just made: no need to parse it again
                record, digest, n = record_after(made[-1][1], made[-1][2], body)
            else:
                record, digest, n = record_after(*head_of(prev), body)
            made.append((record, digest, n))
            return record

        self.store.append_linked(bodies, linked)  # returns once the records are durable
        if self.checkpoints is not None:
            self.checkpoints.linked(made[-1][2], made[-1][1])
        return [digest for _, digest, _ in made[-len(bodies) :]]

    # -- sensitivity -----------------------------------------------------------------------------

    def _sensitive_for(self, program: Program, classification: Program | None) -> Sensitive:
        # per program and classifier: periods of one bundle may classify differently (the
        # programs are kept with their entry, so their ids are not reused while it is)
        key = (id(program), id(classification))
        hit = self._sensitive.get(key)
        if hit is None or hit[0] is not program or hit[1] is not classification:
            if len(self._sensitive) >= 256:
                self._sensitive.clear()
            hit = self._sensitive[key] = (program, classification, sensitivity(program, classification))
        return hit[2]

    def _seal(
        self,
        value: Any,
        path: str,
        subject: str,
        sensitive: Sensitive,
        pending: list[tuple[str, str, Any, dict[str, str]]],
    ) -> Any:
        """``value`` as logged: each sensitive leaf becomes a slot ``_fill`` seals."""
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            children = self._children
            for k, v in value.items():
                child = children.get((path, k)) if type(k) is str else None  # (1 and True are one key)
                if child is None:
                    child = f"{path}.{k}" if path else str(k)
                    if type(k) is str:
                        if len(children) >= 65536:
                            children.clear()
                        children[(path, k)] = child
                kind = type(v)
                if kind is str or kind is int or kind is float or kind is bool:  # a leaf (as jsonable has it)
                    out[k] = self._sealed(v, child, subject, pending) if sensitive(child, v) else v
                elif v is None:
                    out[k] = None
                else:
                    out[k] = self._seal(v, child, subject, sensitive, pending)
            return out
        if isinstance(value, list):
            return [self._seal(v, f"{path}[{i}]", subject, sensitive, pending) for i, v in enumerate(value)]
        if value is None or not sensitive(path, value):
            return jsonable(value)
        return self._sealed(jsonable(value), path, subject, pending)

    def _sealed(self, value: Any, path: str, subject: str, pending: list[tuple[str, str, Any, dict[str, str]]]) -> Any:
        if self.protector is None:
            return {"$withheld": "sensitive; no log key was given"}
        slot: dict[str, str] = {}
        pending.append((subject, path, value, slot))
        return slot


# ---------------------------------------------------------------------------------------------
# plugin outputs: what the plugins answered, recorded with the decision
# ---------------------------------------------------------------------------------------------

Calls = dict[tuple[str, str, str], dict[str, Any]]  # (kind, name, at) -> {input: output}


def plugin_outputs(
    decision: Decision,
    facts: Mapping[str, Any],
    program: Program,
    shadow: Program | None = None,
    registry: Registry | None = None,
) -> list[dict[str, Any]]:
    """What every plugin answered in ``decision`` (and the decisions it used, and its audit
    mode's): one entry per plugin and place, ``{"kind", "name", "version", "at", "calls":
    {input: output}}``, sorted. ``at`` is where in the decision the plugin was asked (the
    domains from the top, ``access/classification``; ``audit/...`` for audit mode); an input
    is named by where it is in the record, which holds it: a scorer's by a digest of its
    arguments (``scorer_input``; it reads the facts and ``now`` of its place), a detector's by
    the field's path (relative to the facts of its place), an event
    backend's as ``events``. Outputs: a scorer's number, or ``{"note": ...}`` when it gave
    none; a detector's yes or no on the field, or ``{"raised": type}``; the backend's alerts.

    Taken from the decision itself, which holds every answer it used (scores, the rule that
    classified each field, the alerts; domains say how with ``plugin_calls``): nothing is
    recorded while deciding, so a decision that is not logged costs nothing more."""
    found: Calls = {}
    _plugin_calls(decision, facts, program, decision.domain, found)
    if shadow is not None and decision.audit is not None:
        _plugin_calls(decision.audit, facts, shadow, f"audit/{decision.domain}", found)
    specs: dict[str, Mapping[str, Any]] = (
        {"scorer": registry.scorers, "detector": registry.detectors, "event_backend": registry.event_backends}
        if registry is not None
        else {}
    )
    out = []
    for (kind, name, at), calls in sorted(found.items()):
        spec = specs.get(kind, {}).get(name)
        out.append(
            {
                "kind": kind,
                "name": name,
                "version": spec.version if spec is not None else None,
                "at": at,
                "calls": calls,
            }
        )
    return out


def scorer_input(args: Mapping[str, Any]) -> str:
    """How a scorer's call is named in a record: ``args-`` and the first 16 hex digits of the
    SHA-256 of its arguments as canonical JSON (they are in the stored policy files); it reads
    the facts and ``now`` the record holds. Kept per arguments object (a policy's, compiled
    once), so a record costs a lookup."""
    hit = _INPUTS.get(id(args))
    if hit is not None and hit[0] is args:
        return hit[1]
    key = "args-" + hashlib.sha256(canonical(jsonable(dict(args)))).hexdigest()[:16]
    if len(_INPUTS) >= 1024:
        _INPUTS.clear()
    _INPUTS[id(args)] = (args, key)
    return key


_INPUTS: dict[int, tuple[Mapping[str, Any], str]] = {}  # id(args) -> (args, its name), args kept alive


def _plugin_calls(decision: Decision, facts: Mapping[str, Any], program: Program, at: str, found: Calls) -> None:
    if program.runner is None:
        notes = list(decision.notes)
        for name, decl in program.policy.scores.items():
            if decl.scorer is None:
                continue
            if name in decision.scores:
                out: Any = decision.scores[name]
            else:  # it gave no value: the note the decision has says why
                out = {"note": _take_note(notes, name, decl.scorer)}
            found.setdefault(("scorer", decl.scorer, at), {}).setdefault(scorer_input(decl.args), out)
    else:
        asked = getattr(program.runner, "plugin_calls", None)  # a domain's: [(kind, name, {input: output})]
        if callable(asked):
            for kind, name, calls in asked(facts, decision):
                had = found.get((kind, name, at))  # (``calls`` may be shared: never changed here)
                found[(kind, name, at)] = calls if had is None else {**calls, **had}
    for up in decision.upstream:
        upstream, use = program.upstream.get(up.domain), program.policy.uses.get(up.domain)
        if upstream is None or use is None:
            continue
        part: Any = facts
        for key in use.path:
            part = part.get(key) if isinstance(part, Mapping) else None
        if isinstance(part, Mapping):
            _plugin_calls(up, part, upstream, f"{at}/{up.domain}", found)


def _take_note(notes: list[str], score: str, scorer: str) -> str | None:
    for i, note in enumerate(notes):
        if note.startswith((f"score `{score}` is undefined", f"scorer `{scorer}` ")):
            return notes.pop(i)
    return None


def plugins_listing(registry: Registry) -> bytes:
    """Every plugin's kind, name, version and package, canonical JSON: a record holds its SHA-256."""
    listed = sorted(
        [kind, spec.name, spec.version, spec.plugin]
        for kind, specs in (
            ("scorer", registry.scorers),
            ("detector", registry.detectors),
            ("event_backend", registry.event_backends),
        )
        for spec in specs.values()
    )
    return canonical(listed)


def _snapshot_of(decision: Decision) -> str | None:
    if decision.snapshot_id is not None:
        return decision.snapshot_id
    for u in decision.upstream:
        found = _snapshot_of(u)
        if found is not None:
            return found
    return None


def _leaf_name(path: str) -> str:
    name = path.rsplit(".", 1)[-1]
    return name.split("[", 1)[0]


_ITEM = re.compile(r"\[\d+\]")


def record_roots(program: Program, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where customer records sit in ``program``'s facts: the facts themselves, and the part
    each domain it ``uses:`` decides on (``resource.record``), recursively."""
    out = [prefix]
    for name, use in program.policy.uses.items():
        up = program.upstream.get(name)
        at = (*prefix, *use.path)
        out.extend(record_roots(up, at) if up is not None else [at])
    return out


def field_names(path: str, roots: Sequence[str]) -> tuple[str, ...]:
    """The names the classification policy may know a logged fact by: its path within each
    customer record it is in, as classification writes paths (``contacts[].phone``; a list of
    values is its field), and its own name (the last part of its path)."""
    norm = _ITEM.sub("[]", path)
    while norm.endswith("[]"):
        norm = norm[:-2]
    names = []
    for root in roots:
        if not root:
            names.append(norm)
        elif norm.startswith(root + "."):
            names.append(norm[len(root) + 1 :])
    names.append(_leaf_name(path))
    return tuple(dict.fromkeys(n for n in names if n))


def sensitivity(program: Program, classification: Program | None = None) -> Sensitive:
    """Whether a fact at ``path`` is personal data, so sealed in the log: its fact (or one
    of a domain ``program`` uses, at its place) is declared ``sensitive: true``, or the
    program that classifies data (``classification``, or one ``program`` uses) says so of
    it (``Domain.field_classifier``: with the shipped domain, a field of any class but a
    non-personal one, or a value in which a detector finds what it recognises) under one of
    its ``field_names``. Decided once per path where the value cannot change it."""
    roots = [".".join(r) for r in record_roots(program)]
    declared = {
        f"{root}.{name}" if root else name
        for root, prog in _programs_at(program)
        for name, decl in prog.policy.facts.items()
        if decl.sensitive
    }
    classifier = _classifier(classification or program)
    # path -> (sealed whatever its value: declared sensitive, or personal by its name alone
    # (a null value is classified by name only); else the names its value is judged under)
    paths: dict[str, tuple[bool, tuple[str, ...]]] = {}
    by_value: dict[tuple[str, type, Any], bool] = {}  # (path, type, a text or whole number) -> sealed

    def sensitive(path: str, value: Any) -> bool:
        known = paths.get(path)
        if known is None:
            known = learn(path)
        if known[0]:
            return True
        if classifier is None:
            return False
        kind = type(value)
        key = (path, kind, value) if kind is str or kind is int else None  # (not float: 0.0 is -0.0)
        if key is not None:
            hit = by_value.get(key)
            if hit is not None:
                return hit
        hit = any(classifier(name, value) for name in known[1])
        if key is not None:
            if len(by_value) >= 65536:
                by_value.clear()
            by_value[key] = hit
        return hit

    def learn(path: str) -> tuple[bool, tuple[str, ...]]:
        norm = _ITEM.sub("", path)
        names = field_names(path, roots)
        always = any(norm == d or norm.startswith(d + ".") for d in declared) or (
            classifier is not None and any(classifier(name, None) for name in names)
        )
        known = (always, names)
        if len(paths) < 65536:
            paths[path] = known
        return known

    return sensitive


def _programs_at(program: Program, prefix: str = "") -> list[tuple[str, Program]]:
    """``program`` and each program it uses, with where that one's facts sit in ``program``'s."""
    out = [(prefix, program)]
    for name, use in program.policy.uses.items():
        up = program.upstream.get(name)
        if up is not None:
            out.extend(_programs_at(up, ".".join(filter(None, (prefix, *use.path)))))
    return out


def count_values(facts: Any, sensitive: Sensitive, path: str = "") -> tuple[int, int, int]:
    """In a record's logged ``facts``: (sealed, withheld, personal values in clear) — the last
    are values ``sensitive`` would seal now that a record logged before personal data was
    sealed holds in clear."""
    if isinstance(facts, dict):
        if SEALED in facts:
            return 1, 0, 0
        if "$withheld" in facts:
            return 0, 1, 0
        total = [0, 0, 0]
        for k, v in facts.items():
            for i, n in enumerate(count_values(v, sensitive, f"{path}.{k}" if path else str(k))):
                total[i] += n
        return total[0], total[1], total[2]
    if isinstance(facts, list):
        total = [0, 0, 0]
        for j, v in enumerate(facts):
            for i, n in enumerate(count_values(v, sensitive, f"{path}[{j}]")):
                total[i] += n
        return total[0], total[1], total[2]
    return 0, 0, int(facts is not None and sensitive(path, facts))


def _classifier(program: Program) -> Callable[[str, Any], bool] | None:
    """From the program loaded with ``program`` (itself or one it uses) whose domain classifies
    data (``Domain.field_classifier``)."""
    seen: list[Program] = [program]
    while seen:
        p = seen.pop()
        domain = p.compiled.domain
        if domain is not None and domain.field_classifier is not None and p.runner is not None:
            return domain.field_classifier(p.runner)
        seen.extend(p.upstream.values())
    return None


@dataclass
class Tally:
    """What the log holds of one customer (``tally``): their records, the values sealed under
    their key, the values withheld (logged without a key), and the personal values in clear
    in records logged before every personal value was sealed."""

    records: int = 0
    sealed: int = 0
    sealed_records: int = 0
    withheld: int = 0
    clear: int = 0
    clear_records: int = 0
    unchecked: list[str] = field(default_factory=list)  # why some records could not be checked


def tally(store: Store, subject: str) -> Tally:
    """Count ``subject``'s values in the log. Values in clear are those that the record's own
    policies (its stored bundle) would have the log seal now. The chain is not checked:
    erasure must work on a damaged log too (``charter log verify`` checks it)."""

    from engine.audit.replay import Replayer
    from engine.errors import CharterError

    out = Tally()
    judged: dict[tuple[int, str], Sensitive] = {}
    with Replayer(store, None) as replayer:
        for seq, data in store.read():
            body = decode(decode(data)["body"])
            if body.get("subject") != subject:
                continue
            out.records += 1
            try:
                loaded = replayer.loaded({**body, "snapshot": None}, logged=True)
                now = datetime.fromisoformat(body["time"])
                period = loaded.period(now)
                program = loaded.program(period, body["domain"], now)
                key = (id(program), body["bundle_blob"])
                sensitive = judged.get(key)
                if sensitive is None:
                    sensitive = judged[key] = sensitivity(program, period.classifier)
            except (CharterError, KeyError, ValueError) as exc:  # the record's policies cannot be rebuilt
                out.unchecked.append(f"record {seq}: {exc}")
                sensitive = _never
            sealed, withheld, clear = count_values(body.get("facts"), sensitive)
            out.sealed += sealed
            out.sealed_records += sealed > 0
            out.withheld += withheld
            out.clear += clear
            out.clear_records += clear > 0
    return out


def _never(path: str, value: Any) -> bool:
    return False
