"""``charter log verify|show|erase`` and ``charter replay``: the auditor's commands."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.audit.approvals import APPROVALS_FILE, ApprovalPolicy, approvals_file, approve, read_approvals, review
from engine.audit.chain import ChainBroken, verify
from engine.audit.checkpoint import (
    CheckpointError,
    append_line,
    load_public_key,
    load_signing_key,
    public_pem,
    read_checkpoints,
    sign,
    verify_checkpoints,
)
from engine.audit.depends import Dependencies
from engine.audit.present import request_lines, trace_lines
from engine.audit.protect import Protector, SealError, load_key, mark_erased
from engine.audit.query import find
from engine.audit.replay import Filters, Replayer, records
from engine.core.decision import Decision
from engine.errors import CharterError
from engine.inputs import parse_now
from engine.plugins import open_store
from engine.storage import Store

FIND_LIMIT = 50  # `charter log find` shows at most this many records unless told


def add_commands(
    sub: Any, default_store: str, default_key: str, default_signing_key: str, default_checkpoints: str
) -> None:
    def store_args(sp: argparse.ArgumentParser, key: bool = True) -> None:
        sp.add_argument("--store", default=default_store, help=f"the decision log (default: {default_store})")
        if key:
            sp.add_argument("--key-file", default=default_key, help=f"the log key (default: {default_key})")

    log = sub.add_parser("log", help="the decision log: verify the chain, show a decision, erase a customer")
    lsub = log.add_subparsers(dest="log_command", required=True, metavar="COMMAND")
    v = lsub.add_parser("verify", help="check the hash chain; exit 1 at the first bad record")
    store_args(v, key=False)
    v.add_argument("--head", help="the head hash kept from an earlier verify: also catches records cut off the end")
    v.add_argument(
        "--checkpoints",
        metavar="FILE",
        help="signed checkpoints kept outside the store: also catches a log rewritten and re-chained, and records "
        f"cut off the end (default, for the default store: {default_checkpoints} when it exists; `none` to skip)",
    )
    v.add_argument(
        "--public-key",
        metavar="PEM",
        action="append",
        help=f"a trusted checkpoint key (repeatable; default: the public half of {default_signing_key})",
    )
    v.add_argument(
        "--chain-only",
        action="store_true",
        help="check the hash chain only, not the blobs and keys the records depend on",
    )
    v.set_defaults(
        run=cmd_verify,
        signing_key=default_signing_key,
        default_checkpoints=default_checkpoints,
        default_store=default_store,
    )
    c = lsub.add_parser("checkpoint", help="verify the chain, then sign its head and add it to a checkpoints file")
    store_args(c, key=False)
    c.add_argument("--signing-key", default=default_signing_key, help=f"Ed25519 key (default: {default_signing_key})")
    c.add_argument("--out", default=default_checkpoints, help=f"the checkpoints file (default: {default_checkpoints})")
    c.set_defaults(run=cmd_checkpoint)
    pk = lsub.add_parser("public-key", help="print the public key that checks the checkpoints (PEM)")
    pk.add_argument("--signing-key", default=default_signing_key, help=f"Ed25519 key (default: {default_signing_key})")
    pk.set_defaults(run=cmd_public_key)
    s = lsub.add_parser("show", help="one decision with its trace and the rule text as it was")
    store_args(s)
    s.add_argument("id", help="record id (its hash, or the first 8 or more characters of it), or its number as #N")
    s.add_argument(
        "--unseal",
        action="store_true",
        help="open the request's sealed values and show the values each test compared (needs the log key)",
    )
    s.set_defaults(run=cmd_show)
    f = lsub.add_parser("find", help="the decisions that match: a customer's, a rule's, an outcome's; newest first")
    store_args(f, key=False)
    f.add_argument("--customer", help="only decisions about this customer (the record's subject)")
    f.add_argument("--rule", help="only decisions where this rule fired")
    f.add_argument(
        "--outcome", help="only this outcome (`deny`, `high`, ...), or one output's value (`risk_level=high`)"
    )
    f.add_argument("--domain")
    f.add_argument("--since", help="only decisions at or after this time")
    f.add_argument("--until", help="only decisions before this time")
    f.add_argument("--limit", type=_positive, default=FIND_LIMIT, help=f"at most this many (default {FIND_LIMIT})")
    f.add_argument("--format", choices=["text", "json"], default="text")
    f.set_defaults(run=cmd_find)
    e = lsub.add_parser("erase", help="delete a customer's key: their logged values become unreadable")
    store_args(e)
    e.add_argument("customer")
    e.set_defaults(run=cmd_erase)

    add_bundle_commands(sub)

    r = sub.add_parser("replay", help="re-evaluate logged decisions; exit 1 unless all reproduce")
    store_args(r)
    r.add_argument("--against", metavar="DIR", help="evaluate with these policies instead: what would change")
    r.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    r.add_argument("--sample", type=int, default=5, help="changed decisions to show with both traces (default 5)")
    r.add_argument("--domain")
    r.add_argument("--customer")
    r.add_argument("--rule", help="only decisions where this rule fired")
    r.add_argument("--since", help="only decisions at or after this time")
    r.add_argument("--until", help="only decisions before this time")
    r.set_defaults(run=cmd_replay)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number of 1 or more")
    return int(text)


def add_bundle_commands(sub: Any) -> None:
    b = sub.add_parser("bundle", help="approved policy bundles: what approvers sign, signing, checking approvals")
    bsub = b.add_subparsers(dest="bundle_command", required=True, metavar="COMMAND")
    build = bsub.add_parser("build", help="validate a policy set and print its version and files: what approvers sign")
    build.add_argument("policies", nargs="?", default="policies")
    build.set_defaults(run=cmd_bundle_build)
    kg = bsub.add_parser("keygen", help="make an approver's Ed25519 key (NAME.key, private) and NAME.pem (to trust)")
    kg.add_argument("approver")
    kg.add_argument("--dir", default=".", help="where to write them (default: here)")
    kg.set_defaults(run=cmd_bundle_keygen)
    sg = bsub.add_parser("sign", help="approve the policy set as it is now: add a signed approval to its directory")
    sg.add_argument("policies", nargs="?", default="policies")
    sg.add_argument("--approver", required=True, help="your name, as the engine trusts it (NAME.pem)")
    sg.add_argument("--key", required=True, help="your private key (from `charter bundle keygen`)")
    sg.set_defaults(run=cmd_bundle_sign)
    vf = bsub.add_parser("verify", help="check a policy set's approvals; exit 1 unless enough trusted approvers signed")
    vf.add_argument("policies", nargs="?", default="policies")
    vf.add_argument("--approvers", required=True, metavar="DIR", help="trusted approvers' public keys, NAME.pem each")
    vf.add_argument("--require", type=int, default=3, metavar="N", help="distinct approvers needed (default 3)")
    vf.set_defaults(run=cmd_bundle_verify)


def _bundle(directory: str) -> Any:
    from engine.core.bundle import build_bundle
    from engine.plugins import build_registry

    return build_bundle([directory], build_registry())  # PolicyErrors: nothing to sign or check


def cmd_bundle_build(args: argparse.Namespace) -> int:
    bundle = _bundle(args.policies)
    print(f"bundle {bundle.version}: {len(bundle.sources)} policy file(s)")
    for name, raw in bundle.sources:
        print(f"  {hashlib.sha256(raw).hexdigest()}  {Path(name).name}")
    entries = read_approvals(approvals_file([args.policies]) or Path(APPROVALS_FILE))
    current = sum(1 for _, e in entries if e["bundle"] == bundle.version)
    print(f"{current} approval(s) of this version, {len(entries) - current} of earlier ones")
    return 0


def cmd_bundle_keygen(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    private, public = directory / f"{args.approver}.key", directory / f"{args.approver}.pem"
    if private.exists():
        raise CharterError(f"`{private}` exists already", code="C030", hint="keep it, or remove it first")
    key = load_signing_key(private, create=True)
    public.write_bytes(public_pem(key))
    print(f"wrote {private} (keep it to yourself) and {public} (give it to whoever configures the engine)")
    return 0


def cmd_bundle_sign(args: argparse.Namespace) -> int:
    bundle = _bundle(args.policies)  # an invalid policy set is never approved
    path = approvals_file([args.policies])
    assert path is not None
    entry = approve(load_signing_key(args.key), args.approver, bundle.version, datetime.now(UTC))
    append_line(path, entry)
    print(f"{args.approver} approved bundle {bundle.version} ({len(bundle.sources)} file(s)) in {path}")
    return 0


def cmd_bundle_verify(args: argparse.Namespace) -> int:
    bundle = _bundle(args.policies)
    policy = ApprovalPolicy.from_directory(args.approvers, args.require)
    path = approvals_file([args.policies])
    assert path is not None
    found = review(read_approvals(path), bundle.version, policy)
    for line, why in found.problems:
        print(f"{path}:{line}: {why}")
    names = ", ".join(e["approver"] for e in found.valid) or "nobody"
    enough = len(found.valid) >= policy.required
    print(
        f"{'ok' if enough else 'not approved'}: bundle {bundle.version} approved by {names} "
        f"({len(found.valid)} of {policy.required} required)"
    )
    return 0 if enough else 1


def _open(args: argparse.Namespace) -> tuple[Store, Protector | None]:
    store = open_store(args.store)
    try:
        key = load_key(args.key_file)
    except SealError:
        return store, None
    return store, Protector(store, key)


def _time(text: str | None, option: str) -> datetime | None:
    return None if text is None else parse_now(text, option)


def cmd_verify(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    held = None
    deps = None if args.chain_only else Dependencies()
    observe = deps.note if deps is not None else None
    checkpoints = args.checkpoints
    if checkpoints is None and args.store == args.default_store and Path(args.default_checkpoints).is_file():
        # the default log's own checkpoints, written beside it: a cut-off tail shows without asking
        checkpoints = args.default_checkpoints
        print(f"checkpoints: {checkpoints}", file=sys.stderr)
    if checkpoints in (None, "none"):
        result = verify(store.read(), head=args.head, observe=observe)
    else:
        keys = [load_public_key(p) for p in args.public_key or [args.signing_key]]
        held = verify_checkpoints(store.read(), read_checkpoints(checkpoints), keys, observe=observe)
        result = held.chain
        if result.ok and args.head is not None and args.head != result.head:  # as `verify` says it
            result = dataclasses.replace(
                result, ok=False, bad_seq=result.count or None, reason="the log does not end at the expected head"
            )
        if result.ok and held.problem:
            print(f"checkpoints: {held.problem}")
            return 1
    partial = getattr(store, "partial_tail", None)  # a JSONL log's last write a crash cut short
    if callable(partial) and partial():
        print("note: 1 unacknowledged partial line at the end, ignored (a write cut short: never acknowledged)")
    if not result.ok:
        print(f"record {result.bad_seq}: {result.reason} ({result.count} good record(s) before it)")
        return 1
    problems = deps.check(store) if deps is not None else []
    for problem in problems:
        print(f"depends: {problem}")
    if problems:
        print(f"{len(problems)} problem(s) with what the records depend on; the hash chain of {result.count} holds")
        return 1
    extra = f"; {held.checked} signed checkpoint(s) hold" if held is not None else ""
    if deps is not None:
        extra += f"; {deps.checked_blobs} blob(s) and {deps.checked_keys} customer key(s) they depend on are intact"
    print(f"ok: {result.count} record(s), head {result.head}{extra}")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    key = load_signing_key(args.signing_key, create=True)
    store = open_store(args.store)
    earlier = read_checkpoints(args.out) if Path(args.out).exists() else []
    held = verify_checkpoints(store.read(), earlier, [key.public_key()])
    if not held.ok:  # never sign a head that does not follow from what was signed before
        what = held.problem or f"record {held.chain.bad_seq}: {held.chain.reason}"
        raise CheckpointError(
            f"not signing: {what}", code="H006", hint="`charter log verify --checkpoints` says what is wrong"
        )
    if held.chain.count == 0:
        raise CheckpointError("not signing: the log is empty", code="H006")
    cp = sign(key, held.chain.count, held.chain.head, datetime.now(UTC))
    append_line(args.out, cp)
    print(json.dumps(cp, sort_keys=True, separators=(",", ":")))
    print(f"signed the head of {cp['n']} record(s) into {args.out}; keep a copy outside the store", file=sys.stderr)
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    sys.stdout.write(public_pem(load_signing_key(args.signing_key)).decode())
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    """The matching records, newest first: number, id, time, domain, customer, outcome, rules.
    Exit 1 when the hash chain breaks (the records before the break are listed)."""
    store = open_store(args.store)
    filters = Filters(args.domain, args.customer, args.rule, _time(args.since, "--since"), _time(args.until, "--until"))
    try:
        found = find(store, filters, outcome=args.outcome, limit=args.limit, newest_first=True)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps({**found.to_dict(), "order": "newest first"}, ensure_ascii=False, indent=2))
    else:
        rows = [
            (f"#{r['seq']}", r["decision_id"][:12], r["now"], r["domain"], str(r["subject"]), r["outcome"], rules)
            for r in found.records
            for rules in [", ".join(r["fired"]) or "-"]
        ]
        if rows:
            rows.insert(0, ("#", "record", "time", "domain", "customer", "outcome", "rules"))
        widths = [max(len(row[i]) for row in rows) for i in range(6)] if rows else []
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[6])
        more = f"; more match: pass --limit over {args.limit}" if found.truncated else ""
        print(f"{len(found.records)} record(s), newest first{more}", file=sys.stderr)
    if found.chain_broken is not None:
        broken = found.chain_broken
        problem = CharterError(
            f"the log's hash chain breaks at record {broken['seq']}: {broken['reason']}; only the records before it "
            "were searched",
            code="C013",
            hint="run `charter log verify`",
        )
        print(f"error: {problem.describe()}", file=sys.stderr)
        return 1
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store, protector = _open(args)
    if args.unseal and protector is None:
        raise CharterError("unsealing needs the log key", code="C014", hint="pass --key-file, or set CHARTER_LOG_KEY")
    by_number = args.id.lstrip("#").isdigit() and (args.id.startswith("#") or len(args.id) < 8)
    if len(args.id) < 8 and not by_number:
        raise CharterError("give at least 8 characters of the record id, or its number as `#N`", code="C010")
    if by_number:
        want = int(args.id.lstrip("#"))  # the record's position, as `verify` reports it
        found = [
            (seq, str(rec["hash"]), json.loads(rec["body"]))
            for seq, rec in ((seq, json.loads(data)) for seq, data in store.read(after=want - 1, limit=1))
            if seq == want
        ]
    else:
        try:
            found = [(seq, rid, body) for seq, rid, body in records(store) if rid.startswith(args.id)]
        except ChainBroken as broken:
            raise CharterError(
                f"the log's hash chain breaks at record {broken.result.bad_seq}: {broken.result.reason}",
                code="C013",
                hint="run `charter log verify`; `charter log show #N` still shows a record by number",
            ) from None
    if len(found) != 1:
        raise CharterError(
            f"{'no' if not found else 'more than one'} record `{args.id}`",
            code="C011",
            hint="run `charter log verify` to list the head; ids are record hashes",
        )
    seq, rid, body = found[0]
    print(f"record {seq} ({rid}) — {body['domain']} for {body['subject']} at {body['time']}")
    print(
        f"  bundle {body['bundle']}, snapshot {body['snapshot']}, engine {body['engine']}, "
        f"semantics {body['semantics']}"
    )
    for name, value in body["outputs"].items():
        print(f"  {name}: {json.dumps(value, ensure_ascii=False)}")
    print("request (the facts the policy read" + ("" if args.unseal else "; --unseal opens the sealed ones") + "):")
    for line in request_lines(body.get("facts", {}), body["subject"] or "", protector if args.unseal else None):
        print(f"    {line}")
    stored = json.loads(store.get_blob("bundle", body["bundle_blob"]) or b'{"files": {}}')
    files = stored["files"]
    if stored.get("approvals"):
        print("  approved by " + ", ".join(f"{a['approver']} ({a['time'][:10]})" for a in stored["approvals"]))
    with Replayer(store, protector) as replayer:
        try:
            decision = replayer.decide(body, logged=True, explain=True)
        except SealError as exc:
            decision = None
            print(f"  (no trace: {exc})")
    print("because:")
    rules = {r.id: r for r in decision.fired} if decision is not None else {}
    for rule_id, step in body["fired"]:
        r = rules.get(rule_id)
        if r is not None:
            where = f"{Path(r.file).name}:{r.line}"
            print(f"  - [{rule_id}] {r.message} ({where}{'; ' + r.clause if r.clause else ''})")
            print(_rule_text(files.get(Path(r.file).name, ""), r.line, rule_id))
            continue
        place = _find_rule(files, rule_id)  # no replayed decision (no key): the rule from the stored files
        print(f"  - [{rule_id}] ({f'{place[0]}:{place[1]}' if place else step})")
        if place:
            print(_rule_text(files[place[0]], place[1], rule_id))
    if decision is not None and decision.trace:
        _show_trace(decision, [rule_id for rule_id, _ in body["fired"]], args.unseal)
    return 0


def _show_trace(decision: Decision, fired: list[str], unseal: bool) -> None:
    """The replayed trace: each test with the values it compared (the scores and cut points of
    a band, the request's values against a rule's), those only with ``--unseal``: they are
    read from the sealed facts."""
    if unseal and decision.scores:
        print("scores: " + ", ".join(f"{k} = {v:,.2f}" for k, v in decision.scores.items()))
    print("trace, replayed from the record (* fired; yes/no: whether the rule's condition held; n/a: undefined):")
    for line in trace_lines(decision, values=unseal, fired=fired):
        print(f"  {line}")
    if not unseal:
        print("  (… stands for the values each test compared: pass --unseal to show them)")


def _find_rule(files: dict[str, str], rule_id: str) -> tuple[str, int] | None:
    """(file, line) where ``rule_id`` is declared in the stored policy files."""
    declared = re.compile(rf"(^|[{{\s-])id:\s*[\"']?{re.escape(rule_id)}[\"']?\s*(,|}}|$)")
    for name, text in sorted(files.items()):
        for i, line in enumerate(text.splitlines(), 1):
            if declared.search(line):
                return name, i
    return None


def _rule_text(text: str, line: int, rule_id: str) -> str:
    """The rule as written at the time: its lines in the stored policy file."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return ""
    first = lines[line - 1]
    if rule_id not in first:  # a domain's built-in rule (a default): no text of its own
        return "      | (built into the domain, not written in the policy file)"
    indent = len(first) - len(first.lstrip(" "))  # where the rule's `- ` starts
    out = [first]
    for more in lines[line : line + 40]:
        if more.strip() and len(more) - len(more.lstrip(" ")) <= indent:
            break
        out.append(more)
    return "\n".join(f"      | {x}" for x in out if x.strip())


def cmd_erase(args: argparse.Namespace) -> int:
    """Delete the customer's data key and say exactly what became unreadable and what stays.
    Exit 0 when none of their personal values is left in clear; 1 when some are (records
    logged before every personal value was sealed), or when they had no key."""
    from engine.audit.log import tally

    store, protector = _open(args)
    try:
        if protector is None:
            raise CharterError("erasing needs the log key", code="C012", hint="pass --key-file")
        found = tally(store, args.customer)  # counted first: records are never changed by erasing
        done = protector.shred(args.customer)
        erased = done.erased
        if erased or found.records:
            mark_erased(store, args.customer)  # verify tells this from a key lost
    finally:
        store.close()
    who = f"`{args.customer}`"
    values = f"{found.sealed} sealed value(s) in {found.sealed_records} of their {found.records} record(s)"
    if erased:
        print(f"erased the key of {who}: {values} can no longer be read, by anyone, with any key")
    elif found.records:
        print(f"no key for {who} (erased before, or never made): {values} stay unreadable")
    else:
        print(f"no key for {who} and no record of theirs in this log")
        return 1
    print("kept: every record's outputs, fired rules, notes and reasons, and the hash chain (it still verifies)")
    if done.lasting:
        print(
            f"the other {done.rewrapped} key(s) are wrapped under a new key of the keyring and the old one is "
            "destroyed: copies the store may keep (old row versions, WAL, backups) open with no key"
        )
    else:
        print(
            "note: this log has no keyring: the key was deleted from the store, but a copy the database keeps "
            "(old row versions, WAL, backups) still opens with the master key; set CHARTER_LOG_KEYRING, or use "
            "a key file, for an erasure that lasts",
            file=sys.stderr,
        )
    if found.withheld:
        print(f"never stored: {found.withheld} value(s) withheld when logged without a key")
    for why in found.unchecked[:5]:
        print(f"not checked for values in clear: {why}", file=sys.stderr)
    if found.clear:
        print(
            f"still readable: {found.clear} personal value(s) of {who} in {found.clear_records} record(s) "
            "logged in clear (before every personal value was sealed); erasing the key cannot reach them"
        )
    return 0 if erased and not found.clear and not found.unchecked else 1


def cmd_replay(args: argparse.Namespace) -> int:
    store, protector = _open(args)
    filters = Filters(args.domain, args.customer, args.rule, _time(args.since, "--since"), _time(args.until, "--until"))
    with Replayer(store, protector, against=args.against) as replayer:
        report = replayer.run(filters, sample=max(args.sample, 20 if args.json else args.sample))
    if args.json:
        Path(args.json).write_text(
            json.dumps(report.to_dict(sample=len(report.changed)), ensure_ascii=False, indent=2) + "\n",
            encoding="utf-8",
        )
    what = "unchanged" if args.against else "reproduced"
    print(
        f"{report.total} decision(s): {report.same} {what}, {len(report.changed)} "
        f"{'changed' if args.against else 'diverged'}, {report.unreadable} unreadable (erased or withheld), "
        f"{len(report.errors)} error(s)"
    )
    for domain, n in sorted(report.audit_differs.items()):
        print(f"  audit mode: in {n} {domain} decision(s) the rules in audit mode decide otherwise")
    for label, n in sorted(report.versions.items()):
        print(f"  note: {n} record(s) with the {label}: a difference may come from that")
    for p in report.plugin_differences():
        now = f"version {p['version_now']} now" if p["version_now"] is not None else "not installed now"
        print(
            f"  plugin: {p['kind'].replace('_', ' ')} `{p['name']}` (version {p['version_then']} when logged, {now}) "
            f"answers otherwise in {p['calls']} call(s) of {p['records']} record(s); the recorded answers were used"
        )
    if report.live:
        print(
            f"  note: {report.live} record(s) logged without plugin outputs (record version 1): "
            "replayed with the installed plugins, which may have changed since"
        )
    for domain, n in sorted(report.by_domain.items()):
        print(f"  {domain}: {n} changed")
    for output, counts in sorted(report.by_output.items()):
        for change, n in counts.most_common(5):
            print(f"    {output}: {change}  ({n})")
    for c in report.changed[: args.sample]:
        print(f"  record {c['seq']} ({c['id'][:12]}) {c['domain']} {c['subject']}:")
        for line in _sample_lines(c):
            print(f"    {line}")
    for e in report.errors[:5]:
        print(f"  record {e['seq']}: {e['error']}", file=sys.stderr)
    if args.against:
        return 0 if not report.errors else 1
    return 0 if report.ok else 1


def _sample_lines(change: dict[str, Any]) -> list[str]:
    """A changed decision in words: the outputs that changed, the rules, and where the traces part."""
    before, after = change["before"], change["after"]
    out = []
    for name in sorted(set(before["outputs"]) | set(after["outputs"])):
        old, new = before["outputs"].get(name), after["outputs"].get(name)
        if old != new:
            out.append(f"{name}: {_short(old)} -> {_short(new)}")
    out.append("rules before: " + ", ".join(r for r, _ in before["fired"]))
    out.append("rules after:  " + ", ".join(r for r, _ in after["fired"]))
    was = {(t["step"], t["rule"]): t for t in change.get("trace_before") or []}
    now = {(t["step"], t["rule"]): t for t in change.get("trace_after") or []}
    parted = [
        k for k in dict.fromkeys([*was, *now]) if (was.get(k) or {}).get("matched") != (now.get(k) or {}).get("matched")
    ]
    if parted:
        out.append("where the traces part:")
    mark = {True: "yes", False: "no", None: "n/a"}
    for step, rule in parted[:8]:
        a, b = was.get((step, rule)), now.get((step, rule))
        tests = "; ".join(f"{t['test']} {_short(t['values'])}" for t in ((b or a or {}).get("tests") or [])[:2])
        out.append(
            f"  {step}/{rule}: {mark[a['matched']] if a else 'absent'} -> {mark[b['matched']] if b else 'absent'}"
            + (f"   [{tests}]" if tests else "")
        )
    return out


def _matched(step: dict[str, Any] | None) -> Any:
    return None if step is None else step.get("matched")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
