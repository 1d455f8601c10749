"""Access control three ways: Charter, pycasbin and zen-engine over the same rules and requests.

The rules are the shipped ``policies/access.yaml`` rules without a ``when:`` condition; its
waivers (``exceptions:``) are left out too, since neither peer has expiring grants. From them:

* a Charter policy directory: the shipped file minus those rules and waivers, beside the
  shipped ``classification.yaml`` (access classifies the record's fields first);
* a pycasbin policy for ``access.model.conf``: one ``p`` line for each role, class, action
  and purpose of a rule (``*`` expanded, except a rule for every role, kept as ``*``), ``g``
  lines for role inheritance and for each test subject's roles;
* a zen-engine decision table, hit policy *first*: deny rules, then unmasked allows, then
  masked allows (Charter's order of precedence), then a catch-all deny row. A row's role
  cell lists the rule's roles and every role that inherits one of them.

A request is one subject (one or two roles), one field of a known class, an action and a
purpose. Charter gets a full access request whose record holds that one field with a
``null`` value (classified by name only); the peers get the field's class directly.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import casbin  # type: ignore[import-untyped]  # pycasbin ships no type information
import yaml
import zen

from engine import Engine

HERE = Path(__file__).resolve().parent
MODEL = HERE / "access.model.conf"
ANY = "*"
ZEN_KEY = "access.json"


@dataclass(frozen=True)
class Grant:
    id: str
    effect: str  # allow or deny
    mask: bool
    roles: tuple[str, ...]  # may be ("*",)
    classes: tuple[str, ...]  # "*" expanded
    actions: tuple[str, ...]
    purposes: tuple[str, ...]


@dataclass(frozen=True)
class AccessModel:
    """The unconditional part of an access policy, in the terms all three engines share."""

    document: dict[str, Any]  # the Charter policy, as YAML data
    inherits: dict[str, tuple[str, ...]]  # role -> the roles it inherits directly
    classes: tuple[str, ...]
    actions: tuple[str, ...]
    purposes: tuple[str, ...]
    grants: tuple[Grant, ...]
    left_out: tuple[str, ...]  # conditional rules and waivers, by id

    def closure(self, role: str) -> set[str]:
        """``role`` and every role it inherits, transitively."""
        seen, todo = set(), [role]
        while todo:
            r = todo.pop()
            if r not in seen:
                seen.add(r)
                todo.extend(self.inherits.get(r, ()))
        return seen

    def holders(self, role: str) -> list[str]:
        """Every role that has ``role``'s grants: itself and the roles inheriting it."""
        return [r for r in self.inherits if role in self.closure(r)]


def derive(access_file: Path, classification_file: Path) -> AccessModel:
    """The unconditional rules of ``access_file``; classes come from ``classification_file``."""
    doc = yaml.safe_load(access_file.read_text(encoding="utf-8"))
    classes = tuple(c["id"] for c in yaml.safe_load(classification_file.read_text(encoding="utf-8"))["classes"])
    actions, purposes = tuple(doc["actions"]), tuple(doc["purposes"])
    kept = [r for r in doc["rules"] if "when" not in r]
    left_out = [r["id"] for r in doc["rules"] if "when" in r] + [x["id"] for x in doc.get("exceptions", [])]
    document = {k: v for k, v in doc.items() if k != "exceptions"}
    document["rules"] = kept
    document["title"] = f"{doc.get('title', 'access')} (unconditional rules only, for bench/bench_peers.py)"

    def expand(values: Sequence[str], universe: tuple[str, ...]) -> tuple[str, ...]:
        return universe if ANY in values else tuple(values)

    grants = tuple(
        Grant(
            r["id"],
            r["effect"],
            bool(r.get("mask", False)),
            (ANY,) if ANY in r["roles"] else tuple(r["roles"]),
            expand(r["classes"], classes),
            expand(r["actions"], actions),
            expand(r["purposes"], purposes),
        )
        for r in kept
    )
    inherits = {name: tuple((spec or {}).get("inherits", ())) for name, spec in doc["roles"].items()}
    return AccessModel(document, inherits, classes, actions, purposes, grants, tuple(left_out))


# --------------------------------------------------------------------------------------------
# the three policies
# --------------------------------------------------------------------------------------------


def write_charter_policies(model: AccessModel, classification_file: Path, directory: Path) -> Path:
    """A Charter policy directory: the derived access policy and the shipped classification."""
    directory.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(model.document, sort_keys=False, allow_unicode=True, width=120)
    (directory / "access.yaml").write_text(text, encoding="utf-8")
    shutil.copyfile(classification_file, directory / "classification.yaml")
    return directory


def casbin_lines(model: AccessModel, subjects: Iterable[tuple[str, ...]]) -> list[str]:
    """The pycasbin policy: ``p`` lines for the grants, ``g`` lines for inheritance and subjects."""
    lines = [
        f"p, {role}, {cls}, {action}, {purpose}, {g.effect}"
        for g in model.grants
        for role in g.roles
        for cls in g.classes
        for action in g.actions
        for purpose in g.purposes
    ]
    lines = list(dict.fromkeys(lines))  # two deny rules both forbid exporting sensitive data for marketing
    lines += [f"g, {role}, {parent}" for role, parents in model.inherits.items() for parent in parents]
    lines += [f"g, {subject_id(roles)}, {role}" for roles in subjects for role in roles]
    return lines


def zen_jdm(model: AccessModel) -> dict[str, Any]:
    """A zen-engine decision graph: one first-hit table in Charter's order of precedence."""

    def listed(values: Iterable[str]) -> str:
        return ", ".join(json.dumps(v) for v in values)

    order = sorted(model.grants, key=lambda g: (g.effect != "deny", g.mask))  # stable: file order within each
    rows = []
    for g in order:
        roles = (
            ""
            if ANY in g.roles
            else f"some($, # in [{listed(sorted({h for r in g.roles for h in model.holders(r)}))}])"
        )
        rows.append(
            {
                "_id": g.id,
                "roles": roles,
                "cls": listed(g.classes),
                "action": listed(g.actions),
                "purpose": listed(g.purposes),
                "effect": json.dumps("deny" if g.effect == "deny" else "mask" if g.mask else "allow"),
                "rule": json.dumps(g.id),
            }
        )
    rows.append(
        {"_id": "default-deny", "roles": "", "cls": "", "action": "", "purpose": "", "effect": '"deny"', "rule": "null"}
    )
    columns = ("roles", "cls", "action", "purpose")

    def node(node_id: str, kind: str, x: int, content: dict[str, Any] | None = None) -> dict[str, Any]:
        n: dict[str, Any] = {"id": node_id, "type": kind, "name": node_id, "position": {"x": x, "y": 100}}
        if content is not None:
            n["content"] = content
        return n

    table = {
        "hitPolicy": "first",
        "passThrough": False,
        "inputField": None,
        "outputPath": None,
        "executionMode": "single",
        "inputs": [{"id": c, "name": c, "field": c} for c in columns],
        "outputs": [{"id": c, "name": c, "field": c} for c in ("effect", "rule")],
        "rules": rows,
    }
    nodes = [node("request", "inputNode", 0), node("access", "decisionTableNode", 200, table)]
    nodes.append(node("response", "outputNode", 400))
    edges = [
        {"id": "request->access", "sourceId": "request", "targetId": "access", "type": "edge"},
        {"id": "access->response", "sourceId": "access", "targetId": "response", "type": "edge"},
    ]
    return {"contentType": "application/vnd.gorules.decision", "nodes": nodes, "edges": edges}


@dataclass(frozen=True)
class PeerFiles:
    charter: Path  # policy directory
    casbin_model: Path
    casbin_policy: Path
    zen: Path  # directory for zen's file-system loader; the decision is ZEN_KEY


def write_peers(
    model: AccessModel, subjects: Iterable[tuple[str, ...]], classification_file: Path, directory: Path
) -> PeerFiles:
    """Write all three policies under ``directory`` (each engine then loads from its files)."""
    charter = write_charter_policies(model, classification_file, directory / "charter")
    policy = directory / "casbin" / "access.policy.csv"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("\n".join(casbin_lines(model, subjects)) + "\n", encoding="utf-8")
    zen_dir = directory / "zen"
    zen_dir.mkdir(parents=True, exist_ok=True)
    (zen_dir / ZEN_KEY).write_text(json.dumps(zen_jdm(model), indent=2) + "\n", encoding="utf-8")
    return PeerFiles(charter, MODEL, policy, zen_dir)


# --------------------------------------------------------------------------------------------
# requests
# --------------------------------------------------------------------------------------------


def subject_id(roles: tuple[str, ...]) -> str:
    return "s:" + "+".join(roles)


@dataclass(frozen=True)
class Request:
    roles: tuple[str, ...]
    path: str  # the one field of the record
    cls: str
    action: str
    purpose: str
    charter: dict[str, Any] = field(compare=False, repr=False)
    zen: dict[str, Any] = field(compare=False, repr=False)

    @property
    def casbin(self) -> tuple[str, str, str, str]:
        return (subject_id(self.roles), self.cls, self.action, self.purpose)

    def describe(self) -> str:
        return f"{'+'.join(self.roles)} {self.action} `{self.path}` ({self.cls}) for {self.purpose}"


def make_request(n: int, roles: tuple[str, ...], name: str, cls: str, action: str, purpose: str) -> Request:
    charter = {
        "id": f"R{n:06d}",
        "subject": {"id": f"u{n:06d}", "roles": list(roles), "department": "bench"},
        "action": action,
        "purpose": purpose,
        "resource": {"customer": f"C{n:06d}", "record_type": "customer_profile", "record": {name: None}},
    }
    zen = {"roles": list(roles), "cls": cls, "action": action, "purpose": purpose}
    return Request(roles, name, cls, action, purpose, charter, zen)


def subjects(model: AccessModel, seed: int, pairs: int = 4) -> list[tuple[str, ...]]:
    """Every role alone, and a few subjects holding two roles (fixed by ``seed``)."""
    rng = random.Random(seed)
    roles = list(model.inherits)
    out: list[tuple[str, ...]] = [(r,) for r in roles]
    while len(out) < len(roles) + pairs:
        pair = tuple(rng.sample(roles, 2))
        if pair not in out:
            out.append(pair)
    return out


def make_requests(
    model: AccessModel, fields: Mapping[str, Sequence[str]], who: Sequence[tuple[str, ...]], count: int, seed: int
) -> list[Request]:
    """Every (subject, class, action, purpose) once, then random ones up to ``count``; shuffled."""
    rng = random.Random(seed)
    combos = [(s, c, a, p) for s in who for c in model.classes for a in model.actions for p in model.purposes]
    picks = combos + [rng.choice(combos) for _ in range(max(0, count - len(combos)))]
    rng.shuffle(picks)
    return [make_request(i, s, rng.choice(fields[c]), c, a, p) for i, (s, c, a, p) in enumerate(picks)]


def fields_by_class(classification_file: Path, classify: Any, now: datetime) -> dict[str, list[str]]:
    """Field names the classification policy names literally, in one rule only, grouped by class.

    ``classify`` is Charter's classification program: each name's class is asked of it, and
    must be the class of the rule that lists the name (a name-only decision, value ``null``).
    """
    doc = yaml.safe_load(classification_file.read_text(encoding="utf-8"))
    listed: dict[str, list[str]] = {}
    for rule in doc["rules"]:
        if "detector" in rule:
            continue
        for name in rule.get("fields", ()):
            listed.setdefault(name, []).append(rule["class"])
    out: dict[str, list[str]] = {}
    for name, classes in listed.items():
        if len(classes) != 1 or not name.replace("_", "").isalnum():
            continue  # globs, nested paths and names two rules claim
        decided = classify.evaluate({name: None}, now).outputs["fields"][name]["class"]
        if decided != classes[0]:
            raise AssertionError(f"Charter classifies `{name}` as {decided}, the policy lists it as {classes[0]}")
        out.setdefault(decided, []).append(name)
    return out


# --------------------------------------------------------------------------------------------
# the engines, and whether they agree
# --------------------------------------------------------------------------------------------


def casbin_enforcer(files: PeerFiles, *, fast: bool = False) -> Any:
    """pycasbin from the model and policy files; ``fast``: ``FastEnforcer`` with the policy
    indexed by class, action and purpose (only the lines with the request's three are tried)."""
    if fast:
        return casbin.FastEnforcer(str(files.casbin_model), str(files.casbin_policy), cache_key_order=[1, 2, 3])
    return casbin.Enforcer(str(files.casbin_model), str(files.casbin_policy))


def zen_engine(files: PeerFiles) -> Any:
    """zen-engine loading its decision from the written file, compiled once and cached by key."""
    return zen.ZenEngine({"loader": {"type": "fs", "path": str(files.zen)}})


@dataclass
class Access:
    """Everything the access workload needs, built from the shipped policies."""

    model: AccessModel
    files: PeerFiles
    charter: Any  # Charter's access program
    requests: list[Request]
    casbin: dict[str, Any]  # name -> enforcer
    zen: Any


def setup(policies: Path, directory: Path, count: int, seed: int, now: datetime) -> Access:
    """Derive the rules, write the three policies under ``directory``, load them, make the requests."""
    classification = policies / "classification.yaml"
    model = derive(policies / "access.yaml", classification)
    who = subjects(model, seed)
    files = write_peers(model, who, classification, directory)
    engine = Engine(files.charter)
    fields = fields_by_class(classification, engine.program("classification"), now)
    requests = make_requests(model, fields, who, count, seed)
    enforcers = {"pycasbin": casbin_enforcer(files), "pycasbin FastEnforcer": casbin_enforcer(files, fast=True)}
    return Access(model, files, engine.program("access"), requests, enforcers, zen_engine(files))


def charter_effect(program: Any, request: Request, now: datetime) -> tuple[str, str | None]:
    """Charter's (effect, deciding rule) for the request's one field: allow, mask or deny."""
    entry = program.evaluate(request.charter, now).outputs["fields"][request.path]
    return entry["effect"], entry["rule"]


def disagreements(
    setup: Access, now: datetime, requests: Sequence[Request] | None = None
) -> tuple[list[str], dict[str, int]]:
    """Every request on which the engines differ, described; and how many requests each allowed.

    Allowed means ``allow`` or ``mask`` for Charter and zen-engine, ``True`` for pycasbin.
    zen-engine's table also names the deciding rule and tells mask from allow: those must
    match Charter's too.
    """
    found: list[str] = []
    allowed = dict.fromkeys(["Charter", *setup.casbin, "zen-engine"], 0)
    for r in setup.requests if requests is None else requests:
        effect, rule = charter_effect(setup.charter, r, now)
        allowed["Charter"] += effect != "deny"
        for name, enforcer in setup.casbin.items():
            theirs = bool(enforcer.enforce(*r.casbin))
            allowed[name] += theirs
            if theirs != (effect != "deny"):
                found.append(f"{r.describe()}: Charter {effect} ({rule}), {name} {'allow' if theirs else 'deny'}")
        z = setup.zen.evaluate(ZEN_KEY, r.zen)["result"]
        allowed["zen-engine"] += z["effect"] != "deny"
        if (z["effect"], z.get("rule")) != (effect, rule):
            found.append(f"{r.describe()}: Charter {effect} ({rule}), zen-engine {z['effect']} ({z.get('rule')})")
    return found, allowed
