"""The ``charter`` command line.

Exit codes: 0 success; 1 the policies are invalid, a customer's facts are bad, or a
decision could not be made; 2 the command itself was used wrongly.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import keyhome, population
from engine.api import Engine
from engine.audit.whynot import why_not
from engine.core.bundle import build_bundle_from_documents, load_documents
from engine.core.decision import Decision, jsonable
from engine.errors import CharterError, EvaluationError, FactErrors, PolicyErrors
from engine.inputs import parse_now, read_facts
from engine.plugins import BUILTIN_PLUGINS, build_registry, open_store

DEFAULT_POLICIES = "policies"
DEFAULT_STORE = "sqlite:///charter.db"  # a SQLite file in the working directory
# the decision log's master key (CHARTER_LOG_KEY overrides it) and the key that signs checkpoints
# of the log's head (engine.audit.checkpoint): in the user's key directory, never beside the data
# (engine.keyhome; a file an earlier version left in the working directory is still used there)
DEFAULT_KEY = keyhome.MASTER
DEFAULT_SIGNING_KEY = keyhome.SIGNING
DEFAULT_CHECKPOINTS = "charter.checkpoints.jsonl"


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    """Load the policies; once they load, print what `charter lint` finds. Findings never fail it."""
    from engine.workbench.lint import lint_bundle

    paths = args.paths or [DEFAULT_POLICIES]
    registry = build_registry()
    try:
        docs = load_documents(paths)
        bundle = build_bundle_from_documents(docs, paths, registry)
    except PolicyErrors as exc:
        if args.format == "json":
            print(json.dumps([e.to_dict() for e in exc.errors], ensure_ascii=False, indent=2))
        else:
            for err in exc.errors:
                print(err.describe())
            print(f"{len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    findings = lint_bundle(bundle, registry, documents=docs)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "valid": True,
                    "bundle_version": bundle.version,
                    "files": list(bundle.files),
                    "warnings": [f.to_dict() for f in findings],
                },
                ensure_ascii=False,
            )
        )
    else:
        print(f"ok: {len(bundle.files)} policy file(s), bundle {bundle.version}")
        for finding in findings:
            print(finding.describe())
        if findings:
            print(f"{len(findings)} lint finding(s); they do not stop the policies loading", file=sys.stderr)
    return 0


def _engine(args: argparse.Namespace) -> Engine:
    log = None
    if getattr(args, "log", False):
        from engine.audit import DecisionLog, Protector, load_key
        from engine.audit.checkpoint import Checkpointer, load_signing_key

        store = open_store(args.store)
        checkpoints = None
        if getattr(args, "checkpoints", None):
            key = load_signing_key(args.signing_key, create=True)
            checkpoints = Checkpointer(args.checkpoints, key, every=args.checkpoint_every)
        log = DecisionLog(store, Protector(store, load_key(args.key_file, create=True)), checkpoints)
    approvals = None
    if getattr(args, "approvers", None):  # only a bundle enough trusted approvers signed may serve
        from engine.audit.approvals import ApprovalPolicy

        approvals = ApprovalPolicy.from_directory(args.approvers, args.require_approvals)
    engine = Engine(args.policies, log=log, approvals=approvals)
    if getattr(args, "domain", "") is None:  # no --domain: the domain whose policy ranks customers
        args.domain = engine.default_domain()
    return engine


def _customers(engine: Engine, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    return read_facts(args.facts, args.format, engine.program(args.domain).policy.facts)


def _snapshot_for(engine: Engine, args: argparse.Namespace, now: datetime) -> None:
    ranking = engine.ranking_domain(args.domain)
    if ranking is None:
        return
    if args.snapshot:
        if Path(args.snapshot).is_file():
            engine.use_snapshot(population.load(args.snapshot))
        else:
            engine.use_snapshot(population.fetch_snapshot(args.snapshot, open_store(args.store)))
        return
    source = args.population or (args.facts if ranking == args.domain else None)
    if source is None or source == "-":
        raise CharterError(
            f"the `{ranking}` policy ranks customers, so `{args.domain}` needs a population snapshot",
            code="C003",
            hint="pass `--population CUSTOMERS_FILE`, or run `charter snapshot` and pass `--snapshot ID`",
        )
    customers = read_facts(source, "auto", engine.program(ranking).policy.facts)
    snap = engine.build_snapshot(customers, now=now, domain=ranking)
    population.store_snapshot(snap, open_store(args.store))
    print(f"population snapshot {snap.id} from {source}, kept in {args.store}", file=sys.stderr)
    engine.use_snapshot(snap)


class _Progress:
    """A counter on stderr, shown only on a terminal and only once a batch runs over a second."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.start = time.monotonic()
        self.shown = False

    def tick(self, n: int) -> None:
        if self.enabled and n % 512 == 0 and time.monotonic() - self.start > 1.0:
            rate = n / (time.monotonic() - self.start)
            sys.stderr.write(f"\r{n:,} customers ({rate:,.0f}/s)")
            sys.stderr.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def cmd_evaluate(args: argparse.Namespace) -> int:
    now = parse_now(args.now)
    if args.on:  # on a Dask cluster (engine.distributed): the workers decide and log, Parquet out
        from engine.distributed import run

        engine = _engine(argparse.Namespace(**{**vars(args), "log": False}))  # the workers log, not this process
        args.domain = args.domain or engine.default_domain()
        return run(args, engine, now)
    engine = _engine(args)
    _snapshot_for(engine, args, now)
    out = sys.stdout
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    bad = failed = total = audit_differs = 0
    progress = _Progress()
    at: collections.deque[int] = collections.deque()  # the line each record read starts on, in order
    customers = read_facts(args.facts, args.format, engine.program(args.domain).policy.facts, lines=at)
    # a decision that cannot be made (an event backend failing on one history) is reported in
    # its place and the others go on, as bad facts are
    for result in engine.evaluate_batch(args.domain, customers, now=now, explain=args.explain, failures="yield"):
        total += 1
        line = at.popleft() if at else 0
        if isinstance(result, EvaluationError):
            failed += 1
            subject = result.subject
            where = f"{args.facts}:{line}: " if line else ""
            print(f"{where}{result.code}: {result.message}", file=sys.stderr)
            out.write(json.dumps({"subject": subject, "error": result.to_dict()}, ensure_ascii=False) + "\n")
        elif isinstance(result, FactErrors):
            bad += 1
            for e in result.errors:  # a fact's error names the record's place, as a reader's does
                if line and not e.line:
                    e.source, e.line = args.facts, line
            out.write(json.dumps({"subject": result.subject, "error": result.to_dict()}, ensure_ascii=False) + "\n")
        else:
            out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
            audit_differs += result.audit_differs
            for name, value in result.outputs.items():
                if isinstance(value, (str, bool, int)):
                    counts[name][str(value)] += 1
        progress.tick(total)
    progress.done()
    if engine.log is not None and engine.log.checkpoints is not None:
        engine.log.checkpoints.flush()  # the head this run left, signed
    summary = "; ".join(
        f"{k}: " + ", ".join(f"{v} {n}" for v, n in c.most_common())
        for k, c in counts.items()
        if len(c) <= 12  # outputs with many values (ids, day counts) say nothing in a summary
    )
    failures = f", {failed} that could not be decided" if failed else ""
    decided = total - bad - failed
    print(f"{total} customer(s), {decided} decision(s), {bad} with bad facts{failures}. {summary}", file=sys.stderr)
    if audit_differs:
        print(f"audit mode: the rules in audit mode decide otherwise for {audit_differs} of them", file=sys.stderr)
    return 1 if bad or failed else 0


def cmd_explain(args: argparse.Namespace) -> int:
    now = parse_now(args.now)
    engine = _engine(args)
    _snapshot_for(engine, args, now)
    shown = 0
    domain = engine.registry.domains.get(args.domain)
    for facts in _customers(engine, args):  # every request about --customer, or the first --limit
        if args.customer and (domain.customer_id(facts) if domain else str(facts.get("id"))) != args.customer:
            continue
        try:
            decision = engine.evaluate(args.domain, facts, now=now, explain=True)
        except FactErrors as exc:
            print(f"customer {exc.subject or '?'}: the facts are wrong")
            for e in exc.errors:
                print(f"  {e.describe()}")
            return 1
        print(("\n" if shown else "") + render(decision))
        changes = why_not(engine.program(args.domain, now), decision, facts, domain)
        if changes:
            print("what would change it:")
            for line in changes:
                print(f"  - {line}")
        shown += 1
        if not args.customer and shown >= args.limit:
            break
    if not shown:
        print(f"no customer `{args.customer}` in {args.facts}", file=sys.stderr)
        return 1
    return 0


def render(d: Decision) -> str:
    """A decision as readable text: outcome, the rules that decided, then the trace."""
    lines = [f"customer {d.subject} — {d.domain} at {d.now.isoformat()}"]
    for name, value in d.outputs.items():
        lines.append(f"  {name}: {_text(value)}")
    if d.scores:
        lines.append("  scores: " + ", ".join(f"{k} = {v:,.2f}" for k, v in d.scores.items()))
    lines.append("because:")
    for r in d.fired:
        lines.append(
            f"  - [{r.id}] {r.message or '(no message)'}  ({r.file}:{r.line}{'; ' + r.clause if r.clause else ''})"
        )
    for note in d.notes:
        lines.append(f"  ! {note}")
    if d.audit is not None:
        lines.append(f"audit mode ({'decides otherwise' if d.audit_differs else 'agrees'}):")
        for name, value in d.audit.outputs.items():
            if value != d.outputs.get(name):
                lines.append(f"  {name}: {_text(value)} (enforced: {_text(d.outputs.get(name))})")
        for r in d.audit.fired:
            lines.append(f"  - [{r.id}] {r.message or '(no message)'}  ({r.file}:{r.line})")
    if d.trace:
        from engine.audit.present import trace_lines  # as `charter log show` prints a logged one

        lines.append("trace (* fired; yes/no: whether the rule's condition held; n/a: undefined):")
        lines.extend(f"  {line}" for line in trace_lines(d))
    lines.append(
        f"bundle {d.bundle_version}, snapshot {d.snapshot_id}, engine {d.engine_version}, "
        f"semantics {d.semantics_version}"
    )
    return "\n".join(lines)


def _text(value: Any) -> str:
    """An output value as JSON text (times in ISO form)."""
    return json.dumps(jsonable(value), ensure_ascii=False)


def cmd_snapshot(args: argparse.Namespace) -> int:
    now = parse_now(args.now)
    engine = _engine(args)
    snap = engine.build_snapshot(_customers(engine, args), now=now, domain=args.domain)
    population.store_snapshot(snap, open_store(args.store))
    if args.out:
        population.save_file(snap, args.out)
    print(json.dumps({"id": snap.id, "store": args.store, **snap.to_dict()}, indent=2))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from engine.core.schema import SCHEMA_DIR, write_schemas

    domains = build_registry().domains
    if not args.directory:  # Charter's own schema directory holds the built-in domains' schemas only
        domains = {k: d for k, d in domains.items() if d.plugin in BUILTIN_PLUGINS}
    for path in write_schemas(domains, Path(args.directory) if args.directory else SCHEMA_DIR):
        print(path)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = build_registry()
    if args.format == "json":
        print(
            json.dumps({"plugins": registry.describe(), "problems": [p.to_dict() for p in registry.problems]}, indent=2)
        )
    else:
        for entry in registry.describe():
            provides = [f"{kind} " + ", ".join(entry[kind]) for kind in ("scorers", "detectors") if entry[kind]]
            print(f"{entry['plugin']}: {'; '.join(provides) or 'nothing'}")
        for problem in registry.problems:
            print(f"problem: {problem.describe()}")
    return 1 if registry.problems else 0


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse's own error otherwise)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"`{text}`: give 1 or more")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="charter", description="Charter: policy engine for CRM compliance")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check policy files; prints path:line:col: message")
    v.add_argument("paths", nargs="*", help=f"policy files or directories (default: {DEFAULT_POLICIES})")
    v.add_argument("--format", choices=["text", "json"], default="text")
    v.set_defaults(run=cmd_validate)

    def facts_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--domain", help="policy domain (default: the only one, or the one whose policy ranks customers)"
        )
        sp.add_argument(
            "--facts", required=True, help="customers or requests: .json, .jsonl or .csv file, or - for stdin"
        )
        sp.add_argument("--format", choices=["auto", "json", "jsonl", "csv"], default="auto")
        sp.add_argument("--policies", default=DEFAULT_POLICIES, help="policy directory")
        sp.add_argument("--now", help="evaluation time, e.g. 2025-06-30T00:00:00Z (default: the current time)")
        sp.add_argument(
            "--snapshot", help="population snapshot id (from --store) or file (default: built from --facts)"
        )
        sp.add_argument(
            "--population",
            help="customers to rank against when the domain, or one it uses, ranks customers (default: --facts)",
        )
        sp.add_argument("--store", default=DEFAULT_STORE, help=f"where snapshots are kept (default: {DEFAULT_STORE})")
        sp.add_argument(
            "--approvers",
            metavar="DIR",
            help="serve the policies only if approved: trusted approvers' public keys, NAME.pem each",
        )
        sp.add_argument("--require-approvals", type=int, default=3, metavar="N", help="with --approvers (default 3)")

    e = sub.add_parser("evaluate", help="decide for every customer; JSON Lines out")
    facts_args(e)
    e.add_argument("--explain", action="store_true", help="add the full trace to each decision")
    e.add_argument(
        "--no-log", dest="log", action="store_false", help="do not record the decisions in the store's decision log"
    )
    e.add_argument(
        "--key-file",
        default=keyhome.default(DEFAULT_KEY),
        help=f"the decision log's key (default: {keyhome.default(DEFAULT_KEY)}, made if absent)",
    )
    e.add_argument(
        "--checkpoints",
        default=DEFAULT_CHECKPOINTS,
        metavar="FILE",
        help=f"add signed checkpoints of the log's head here (default: {DEFAULT_CHECKPOINTS}; '' for none)",
    )
    e.add_argument(
        "--signing-key",
        default=keyhome.default(DEFAULT_SIGNING_KEY),
        help=f"signs them (default: {keyhome.default(DEFAULT_SIGNING_KEY)}, made if absent)",
    )
    e.add_argument("--checkpoint-every", type=int, default=10_000, metavar="N", help="every N records, and at the end")
    e.add_argument(
        "--on",
        metavar="CLUSTER",
        help="decide on a Dask cluster: dask://HOST:PORT, or dask-local:N for N local worker processes"
        " (needs charter[scale]; --facts: Parquet, or files each one partition; see docs/scale.md)",
    )
    e.add_argument("--out", metavar="DIR", help="with --on: write the results here as Parquet")
    e.set_defaults(run=cmd_evaluate)
    x = sub.add_parser("explain", help="one customer's decision as readable text")
    facts_args(x)
    x.add_argument(
        "--customer",
        help="customer id: every request about this customer, in any domain (default: the first --limit requests)",
    )
    x.add_argument("--limit", type=_at_least_one, default=1, help="how many customers to show without --customer")
    x.set_defaults(run=cmd_explain)
    s = sub.add_parser("snapshot", help="compute and store a population snapshot")
    facts_args(s)
    s.add_argument("--out", help="also write the snapshot to this JSON file")
    s.set_defaults(run=cmd_snapshot)
    sc = sub.add_parser("schema", help="write the JSON Schema of each policy kind (for editors)")
    sc.add_argument("directory", nargs="?", help="where to write them (default: the package's schemas folder)")
    sc.set_defaults(run=cmd_schema)
    pl = sub.add_parser("plugins", help="list every plugin and what it provides")
    pl.add_argument("--format", choices=["text", "json"], default="text")
    pl.set_defaults(run=cmd_plugins)
    from engine.audit.cli import add_commands

    add_commands(
        sub, DEFAULT_STORE, keyhome.default(DEFAULT_KEY), keyhome.default(DEFAULT_SIGNING_KEY), DEFAULT_CHECKPOINTS
    )
    from engine.workbench import add_commands as add_workbench_commands

    add_workbench_commands(sub)
    from engine.serve.cli import add_serve_command

    add_serve_command(sub, DEFAULT_POLICIES, keyhome.default(DEFAULT_KEY))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _key_places(args)
    try:
        return int(args.run(args))
    except PolicyErrors as exc:
        for err in exc.errors:
            print(err.describe(), file=sys.stderr)
        return 1
    except CharterError as exc:
        print(f"error: {exc.describe()}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `charter evaluate ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of Charter's (or a plugin's): one located line, never a traceback
        where = _innermost(exc)
        crash = CharterError(
            f"charter failed unexpectedly in `{args.command}`: {exc.__class__.__name__}: {str(exc)[:200]}"
            + (f" (at {where})" if where else ""),
            code="C099",
            hint="this is a bug, not a mistake of yours: please report it with the command and its input;"
            " set CHARTER_TRACEBACK=1 to see the traceback",
        )
        print(f"error: {crash.message} [{crash.code}]\n  help: {crash.hint}", file=sys.stderr)
        if os.environ.get("CHARTER_TRACEBACK"):
            traceback.print_exc()
        return 2


def _key_places(args: argparse.Namespace) -> None:
    """Key files by default: the user's key directory made (owner-only) where a key is to be
    made, and a warning for one used from the working directory, beside the data."""
    for attr, name in (("key_file", DEFAULT_KEY), ("signing_key", DEFAULT_SIGNING_KEY)):
        path = getattr(args, attr, None)
        if not isinstance(path, str) or path != keyhome.default(name):
            continue  # named by the caller: theirs to place
        warning = keyhome.legacy_warning(path)
        if warning is not None:
            if not os.environ.get("CHARTER_LOG_KEY") or attr != "key_file":
                print(warning, file=sys.stderr)
        else:
            keyhome.make_parent(Path(path))


def _innermost(exc: BaseException) -> str:
    """``file:line`` of the deepest frame of an exception's traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "render"]
