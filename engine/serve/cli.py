"""``charter serve``: start the decision service (uvicorn, uvloop and httptools)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.serve.service import Service

_LOG = logging.getLogger("charter.serve")


def add_serve_command(sub: Any, default_policies: str, default_key: str) -> None:
    s = sub.add_parser("serve", help="the decision service: decisions, the bundle and the log over HTTP")
    s.add_argument("--policies", default=default_policies, help="policy directory (watched: changes reload)")
    s.add_argument("--store", help="decision log and snapshots (sqlite:///…, postgresql://…); default: none")
    s.add_argument("--key-file", default=default_key, help=f"the decision log's key (default: {default_key})")
    s.add_argument("--no-log", dest="log", action="store_false", help="with --store: do not log decisions")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0: any free port)")
    s.add_argument("--snapshot", help="population snapshot: a file, or an id in --store")
    s.add_argument("--population", help="customers to build the population snapshot from, at start")
    s.add_argument(
        "--watch-interval", type=float, default=1.0, metavar="S", help="look for policy changes every S s (0: never)"
    )
    s.add_argument("--settle", type=float, metavar="S", help="reload once the files stayed unchanged S s")
    s.add_argument("--approvers", metavar="DIR", help="serve only bundles approved by these keys (NAME.pem each)")
    s.add_argument("--require-approvals", type=int, default=3, metavar="N", help="with --approvers (default 3)")
    s.set_defaults(run=cmd_serve)


def build_service(args: argparse.Namespace) -> Service:
    """The service the options describe: the engine, its log, its snapshot."""
    from engine import population
    from engine.api import Engine
    from engine.plugins import open_store
    from engine.serve.service import Service, TimedLog

    store = open_store(args.store) if args.store else None
    protector = None
    if store is not None:
        from engine.audit.protect import Protector, load_key

        protector = Protector(store, load_key(args.key_file, create=args.log))
    log = TimedLog(store, protector) if store is not None and args.log else None
    approvals = None
    if args.approvers:
        from engine.audit.approvals import ApprovalPolicy

        approvals = ApprovalPolicy.from_directory(args.approvers, args.require_approvals)
    kwargs: dict[str, Any] = {} if args.settle is None else {"settle": args.settle}
    engine = Engine(args.policies, log=log, approvals=approvals, **kwargs)
    if args.snapshot:
        if Path(args.snapshot).is_file():
            engine.use_snapshot(population.load(args.snapshot))
        elif store is not None:
            engine.use_snapshot(population.fetch_snapshot(args.snapshot, store))
        else:
            engine.use_snapshot(population.load(args.snapshot))
    elif args.population:
        from engine.inputs import read_facts

        ranking = engine.default_ranking_domain()
        now = datetime.now(UTC)  # loading reads the clock; deciding never does
        snap = engine.build_snapshot(
            read_facts(args.population, "auto", engine.program(ranking).policy.facts), now=now, domain=ranking
        )
        if store is not None:
            population.store_snapshot(snap, store)
        engine.use_snapshot(snap)
    return Service(engine, store=store, protector=protector, watch_interval=args.watch_interval or None)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from engine.serve.app import create_app

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = build_service(args)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)  # connections queue from here on, until uvicorn accepts them
    host, port = sock.getsockname()[:2]
    engine = service.engine
    print(
        f"charter serve: listening on http://{host}:{port} — bundle {engine.bundle_version}, "
        f"{len(engine.domains)} domain(s), snapshot {service.snapshot_id or 'none'}, "
        f"log {'on' if engine.log is not None else 'off'}",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        create_app(service), loop="uvloop", http="httptools", log_level="warning", access_log=False, lifespan="on"
    )
    # uvicorn shuts down gracefully on SIGTERM, then raises it again for the handler it found:
    # with this one, `charter serve` then exits 0 (SIGINT still exits 130)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.Server(config).run(sockets=[sock])
    _LOG.info("stopped")
    return 0
