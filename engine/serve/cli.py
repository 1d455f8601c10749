"""``charter serve``: start the decision service (uvicorn, uvloop and httptools), and
``charter serve token new``: make a bearer token for its tokens file (``engine.serve.auth``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import CharterError

if TYPE_CHECKING:
    from engine.serve.auth import AuthConfig
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
    a = s.add_argument_group("security and limits (docs/serve.md)")
    a.add_argument(
        "--tokens",
        metavar="FILE",
        help="bearer tokens and their scopes (YAML or JSON); without it: loopback only, every request anonymous",
    )
    a.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve another address than loopback without --tokens: anyone who reaches it may decide and read the log",
    )
    a.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM)")
    a.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    a.add_argument("--tls-client-ca", metavar="FILE", help="require client certificates signed by these CAs (mTLS)")
    a.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="answer 504 once a request took S s (default 60; 0: no limit)",
    )
    a.add_argument(
        "--max-body",
        type=int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="the largest request body (default 16 MiB)",
    )
    a.add_argument(
        "--max-batch", type=int, default=10_000, metavar="N", help="the most items of one batch (default 10,000)"
    )
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes sharing the port and the store (default 1; docs/serve.md)",
    )
    s.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="the service's own log on stderr; json: one object per line, and one per request answered",
    )
    s.set_defaults(run=cmd_serve)
    tok = (
        s.add_subparsers(dest="serve_command", metavar="token")
        .add_parser("token", help="bearer tokens for --tokens")
        .add_subparsers(dest="token_command", required=True)
    )
    new = tok.add_parser("new", help="print a fresh token and the entry of the tokens file that lets it in")
    new.add_argument("name", help="who the token is for (shown in the service's log, never secret)")
    new.add_argument(
        "--scopes",
        action="append",
        required=True,
        metavar="S[,S…]",
        help="decide, log:read, replay, metrics, admin, unseal (comma-separated or repeated)",
    )
    new.add_argument("--add", metavar="FILE", help="also add the entry to this YAML tokens file (made if absent)")
    new.add_argument("--format", choices=["text", "json"], default="text")
    new.set_defaults(run=cmd_token_new)


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
    return Service(
        engine,
        store=store,
        protector=protector,
        watch_interval=args.watch_interval or None,
        jobs_dir=getattr(args, "jobs_dir", None),
    )


def cmd_token_new(args: argparse.Namespace) -> int:
    from engine.serve.auth import Tokens, add_entry, check_scopes, digest, entry_text, new_token

    scopes = sorted(check_scopes((s.strip() for arg in args.scopes for s in arg.split(",") if s.strip()), "--scopes"))
    secret = new_token()
    entry = entry_text(args.name, scopes, secret)
    if args.add:
        add_entry(Path(args.add), entry, args.name)
        Tokens.load(args.add)
    if args.format == "json":
        out = {"name": args.name, "scopes": scopes, "token": secret, "sha256": digest(secret), "entry": entry}
        print(json.dumps(out))
        return 0
    print(f"token for `{args.name}` (shown this once; keep it secret): {secret}")
    if args.add:
        print(f"added to {args.add}:\n{entry}")
    else:
        print(f"add this under `tokens:` in the tokens file (it holds the token's SHA-256, never the token):\n{entry}")
    return 0


def auth_of(args: argparse.Namespace) -> tuple[AuthConfig, str]:
    """What the options let in, and the line saying so on stderr; or C087 refusing to start."""
    from engine.serve.auth import AuthConfig, TokenFile, is_loopback

    mtls = bool(args.tls_client_ca)
    if args.tokens:
        tokens = TokenFile(args.tokens)
        where = f"{len(tokens)} bearer token(s) from {args.tokens} (read again when it changes)"
        return AuthConfig(tokens), where + (", mTLS" if mtls else "")
    if is_loopback(args.host):
        return AuthConfig(local_only=True), (
            "no --tokens: serving this machine only (loopback), every request anonymous with every scope but `unseal`"
        )
    if mtls:
        return (
            AuthConfig(),
            "no --tokens: any client with a certificate of --tls-client-ca has every scope but `unseal`",
        )
    if args.insecure_no_auth:
        return AuthConfig(), (
            f"WARNING: --insecure-no-auth: anyone who reaches {args.host} may decide, read and replay the log"
        )
    raise CharterError(
        f"`--host {args.host}` without `--tokens` would let anyone who reaches it decide and read the decision log",
        code="C087",
        hint="give `--tokens FILE` (`charter serve token new NAME --scopes decide`), require client certificates"
        " with `--tls-client-ca`, or say `--insecure-no-auth`",
    )


def tls_of(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 at least; client certificates required with a CA), or C087."""
    if not (args.tls_cert or args.tls_key or args.tls_client_ca):
        return None
    if not (args.tls_cert and args.tls_key):
        raise CharterError("`--tls-cert` and `--tls-key` go together", code="C087", hint="give both, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            context.load_verify_locations(cafile=args.tls_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise CharterError(f"the TLS certificate, key or client CA cannot be used: {exc}", code="C087") from None
    return context


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.serve.logs import configure

    if args.workers < 1:
        raise CharterError("`--workers` must be 1 or more", code="C087", hint="e.g. `--workers 2`, one per core")
    configure(args.log_format)
    auth, auth_line = auth_of(args)
    tls = tls_of(args)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)  # connections queue from here on, until uvicorn accepts them
    if args.workers > 1:
        return _serve_workers(args, sock, auth, auth_line, tls)
    service = build_service(args)
    _announce(args, sock, tls, _describe(service), auth_line)
    _run(args, sock, auth, tls, service)
    _LOG.info("stopped")
    return 0


def _describe(service: Service) -> str:
    engine = service.engine
    return (
        f"bundle {engine.bundle_version}, {len(engine.domains)} domain(s), snapshot {service.snapshot_id or 'none'}, "
        f"log {'on' if engine.log is not None else 'off'}"
    )


def _announce(args: argparse.Namespace, sock: socket.socket, tls: ssl.SSLContext | None, *lines: str) -> None:
    """The start-up lines on stderr: where it listens and what it serves, then who it lets in."""
    host, port = sock.getsockname()[:2]
    started = f"listening on {'https' if tls else 'http'}://{host}:{port} — {lines[0]}"
    for line in (started, *lines[1:]):
        if args.log_format == "json":  # every line on stderr one JSON object
            _LOG.info(line)
        else:
            print(f"charter serve: {line}", file=sys.stderr, flush=True)


def _run(
    args: argparse.Namespace, sock: socket.socket, auth: AuthConfig, tls: ssl.SSLContext | None, service: Service
) -> None:
    """Serve on ``sock`` until SIGTERM or SIGINT (uvicorn's graceful shutdown: the log flushed)."""
    import uvicorn

    from engine.serve.app import create_app

    app = create_app(
        service,
        auth=auth,
        max_body=args.max_body,
        max_batch=args.max_batch,
        request_timeout=args.request_timeout or None,
        request_log=args.log_format == "json",
    )
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        log_config=None,  # uvicorn's loggers go through the handler configure() set
        lifespan="on",
        ssl_context_factory=None if tls is None else (lambda config, default: tls),
    )
    # uvicorn shuts down gracefully on SIGTERM, then raises it again for the handler it found:
    # with this one, `charter serve` then exits 0 (SIGINT still exits 130)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.Server(config).run(sockets=[sock])


# -- several worker processes ------------------------------------------------------------------
#
# The parent binds the port, then forks each worker before anything opens the store or starts a
# thread; every worker builds its own service (engine, log writer, reload watcher) and accepts on
# the one listening socket, so the kernel spreads connections between them. The decision log
# takes several writer processes on one chain (the store's write lock); /metrics sums every
# worker's counters (prometheus_client's multiprocess mode). The parent restarts a worker that
# dies, and on SIGTERM or SIGINT stops them all, each finishing what it acknowledged.


def _serve_workers(
    args: argparse.Namespace, sock: socket.socket, auth: AuthConfig, auth_line: str, tls: ssl.SSLContext | None
) -> int:
    import shutil
    import tempfile

    metrics_dir = tempfile.mkdtemp(prefix="charter-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    args.jobs_dir = os.path.join(metrics_dir, "jobs")  # every worker answers for every job (engine.serve.jobs)
    os.mkdir(args.jobs_dir, 0o700)
    if "prometheus_client" in sys.modules:  # its value class is chosen on import: choose again
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    children: dict[int, int] = {}  # pid -> worker number
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:  # from before the first fork: no worker is left behind
        stopping.append(signum)
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        snapshot = _shared_snapshot(args, metrics_dir)
        if snapshot is not None:
            args.snapshot, args.population = snapshot, None
        if args.store and args.log:  # made here once: workers racing to create it would collide
            from engine.audit.protect import load_key

            load_key(args.key_file, create=True)
        ready_r, ready_w = os.pipe()
        for n in range(args.workers):
            if not stopping:
                children[_fork(args, sock, auth, tls, n, ready_w)] = n
        os.close(ready_w)
        reports = _readiness(ready_r, len(children))
        os.close(ready_r)
        if stopping:  # stopped while starting: every worker stopped, nothing half-running
            _stop(children)
            return 130 if stopping[0] == signal.SIGINT else 0
        failed = next((r for r in reports if "error" in r), None)
        if failed is not None or len(reports) < args.workers:
            _stop(children)
            message = failed["error"] if failed is not None else "a worker exited before it was ready"
            raise CharterError(
                f"`charter serve --workers {args.workers}` could not start:\n{message}",
                code=failed.get("code", "C087") if failed is not None else "C087",
            )
        _announce(args, sock, tls, f"{reports[0]['describe']}, {args.workers} workers", auth_line)
        return _supervise(args, sock, auth, tls, children, stopping)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _shared_snapshot(args: argparse.Namespace, directory: str) -> str | None:
    """With ``--population``: the snapshot built once, here, so that every worker ranks against
    the same one (each building its own would read the clock at a different instant); kept in
    the store as a single worker keeps it, and written to a file the workers load."""
    if not args.population or args.snapshot:
        return None
    from engine import population
    from engine.api import Engine
    from engine.inputs import read_facts
    from engine.plugins import open_store

    engine = Engine(args.policies)
    ranking = engine.default_ranking_domain()
    now = datetime.now(UTC)  # loading reads the clock; deciding never does
    snap = engine.build_snapshot(
        read_facts(args.population, "auto", engine.program(ranking).policy.facts), now=now, domain=ranking
    )
    if args.store:
        store = open_store(args.store)
        try:
            population.store_snapshot(snap, store)
        finally:
            store.close()
    path = Path(directory) / "snapshot.json"
    population.save_file(snap, path)
    return str(path)


def _fork(
    args: argparse.Namespace,
    sock: socket.socket,
    auth: AuthConfig,
    tls: ssl.SSLContext | None,
    number: int,
    ready: int | None,
) -> int:
    """Start worker ``number``; it writes one JSON line to ``ready`` once serving (or why not)."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the worker: never returns into the parent's code
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            service = build_service(args)
        except CharterError as exc:  # told to the parent, which stops the others and says why
            if ready is None:
                raise
            os.write(ready, json.dumps({"error": str(exc), "code": exc.code}).encode() + b"\n")
        else:
            if ready is not None:
                os.write(ready, json.dumps({"describe": _describe(service)}).encode() + b"\n")
                os.close(ready)
            _run(args, sock, auth, tls, service)
            code = 0
    except BaseException as exc:  # a worker's failure is its exit status; the parent reports it
        _LOG.error("worker %d stopped: %s: %s", number, type(exc).__name__, exc)
    finally:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
        os._exit(code)
    return 0  # not reached


def _readiness(fd: int, workers: int) -> list[dict[str, Any]]:
    """Each worker's start-up report, until all reported or all exited (end of the pipe)."""
    buffer = b""
    while buffer.count(b"\n") < workers:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    return [json.loads(line) for line in buffer.splitlines() if line.strip()]


def _stop(children: dict[int, int]) -> None:
    for pid in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        children.pop(pid, None)


def _supervise(
    args: argparse.Namespace,
    sock: socket.socket,
    auth: AuthConfig,
    tls: ssl.SSLContext | None,
    children: dict[int, int],
    stopping: list[int],
) -> int:
    """Wait on the workers: restart one that dies (after a growing pause when it dies soon after
    starting, and not after ``RESTARTS`` such deaths in a row); on SIGTERM (exit 0) or SIGINT
    (exit 130, both through the handler ``_serve_workers`` set) wait for each to finish."""
    started = {n: time.monotonic() for n in children.values()}
    quick: dict[int, int] = {}  # worker number -> deaths in a row soon after starting
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        number = children.pop(pid, None)
        if number is None or stopping:
            continue
        soon = time.monotonic() - started.get(number, 0.0) < QUICK_DEATH
        quick[number] = quick.get(number, 0) + 1 if soon else 0
        if quick[number] > RESTARTS:
            _LOG.error("worker %d keeps dying as it starts (status %d): not started again", number, status)
            continue
        pause = min(30.0, 0.5 * 2 ** quick[number]) if soon else 0.0
        _LOG.warning("worker %d (pid %d) exited with status %d: starting another in %.1f s", number, pid, status, pause)
        until = time.monotonic() + pause
        while not stopping and time.monotonic() < until:
            time.sleep(0.1)
        if stopping:
            break
        started[number] = time.monotonic()
        children[_fork(args, sock, auth, tls, number, None)] = number
    _stop(children)
    _LOG.info("stopped")
    if not stopping and quick and all(n > RESTARTS for n in quick.values()) and len(quick) == args.workers:
        return 1  # every worker gave up: the service is down, and says so
    return 130 if stopping and stopping[0] == signal.SIGINT else 0


QUICK_DEATH = 10.0  # seconds: a worker dying sooner than this after it started is restarted after a pause
RESTARTS = 8  # such deaths in a row before a worker is not started again
