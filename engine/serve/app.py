"""The HTTP layer: a Starlette application over a ``Service``. JSON in and out (orjson).

Every response carries ``X-Charter-Bundle`` (the bundle version that decided, or that is
serving); every error is ``{"error": {"code", "message", "hint", ...}}`` (``engine.serve.errors``),
whatever raised it: a route of the service's, one mounted later, or the middleware.

Two middlewares wrap every route: ``engine.serve.auth.AuthMiddleware`` (the bearer token,
401; each of the service's routes then checks the scope ``auth.ENDPOINTS`` gives it, 403)
and ``BodyLimit`` (413 once a body, chunked or not, is over ``max_body``). ``request_timeout``
bounds the time of a request: past it the request is answered 504 (C085) while the work it
started in a worker thread runs on to its end (a thread cannot be stopped).

Engine calls run in Starlette's threadpool when the service logs decisions (a durable append
waits on the disk); unlogged, they run on the event loop itself: a decision takes tens of
microseconds, less than the hop to a worker thread costs (docs/serve.md has the figures).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.errors import CharterError
from engine.serve import auditlog
from engine.serve.auth import ADMIN, ANY, ENDPOINTS, OPEN, AuthConfig, AuthMiddleware, has_scope, require_scope
from engine.serve.errors import ServeError, bad_param, error_body, internal, status_of
from engine.serve.logs import DECISION_ID, RequestLog
from engine.serve.metrics import CONTENT_TYPE
from engine.serve.openapi import openapi
from engine.serve.service import Service

_LOG = logging.getLogger("charter.serve")
MAX_BODY = 16 * 1024 * 1024  # bytes of one request body
MAX_BATCH = 10_000  # items of one batch
JSON = "application/json"
Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    service: Service,
    *,
    inline: bool | None = None,
    max_body: int = MAX_BODY,
    max_batch: int = MAX_BATCH,
    request_timeout: float | None = None,
    auth: AuthConfig | None = None,
    request_log: bool = False,
) -> Starlette:
    """The application. ``inline``: run single decisions on the event loop (default: when the
    service does not log decisions; batches always run in a worker thread). ``auth``: the
    tokens (default: none, every request anonymous). ``request_timeout``: seconds (None: no limit).
    ``request_log``: log each request answered (``engine.serve.logs.RequestLog``)."""
    run_inline = service.engine.log is None if inline is None else inline

    async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # abandon_on_cancel: past the request's time limit the response goes, the thread runs on
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), abandon_on_cancel=True)

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if run_inline:
            return fn(*args, **kwargs)
        return await in_thread(fn, *args, **kwargs)

    def respond(data: Any, status: int = 200, bundle: str | None = None) -> Response:
        return Response(
            orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
            status_code=status,
            media_type=JSON,
            headers={"X-Charter-Bundle": bundle or service.engine.bundle_version},
        )

    def failed(exc: CharterError) -> Response:
        response = respond({"error": error_body(exc)}, status_of(exc))
        if isinstance(exc, ServeError):
            response.headers.update(exc.headers)
        return response

    def endpoint(need: str, fn: Handler) -> Handler:
        """``fn`` checking the scope ``need`` first, within the time limit, answering any error in the shape."""

        async def run(request: Request) -> Response:
            try:
                if need not in (OPEN, ANY):
                    require_scope(request, need)
                if request_timeout is None:
                    return await fn(request)
                with anyio.fail_after(request_timeout):
                    return await fn(request)
            except TimeoutError:
                _LOG.warning("%s %s: over the time limit of %s s", request.method, request.url.path, request_timeout)
                return failed(timed_out(request_timeout or 0))
            except CharterError as exc:
                if status_of(exc) >= 500:
                    _LOG.error("%s %s: %s", request.method, request.url.path, exc.describe())
                return failed(exc)
            except Exception:  # never a traceback in a response: it goes to the service's log
                _LOG.exception("%s %s failed", request.method, request.url.path)
                return failed(internal())

        run.__name__ = fn.__name__
        return run

    async def body_of(request: Request, *, required: bool = True) -> Any:
        check_json(request.headers.get("content-type"))
        chunks = [chunk async for chunk in request.stream()]  # BodyLimit stops it past max_body
        raw = b"".join(chunks)
        if not raw.strip():
            if not required:
                return None
            raise ServeError("the request has no body", status=400, code="C061", hint="send a JSON object")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ServeError(
                f"the request body is not valid JSON: {exc}", status=400, code="C061", hint="send a JSON object"
            ) from None

    def flag(request: Request, name: str) -> bool:
        text = request.query_params.get(name)
        if text is None or text.lower() in ("false", "0", "no", ""):
            return False
        if text.lower() in ("true", "1", "yes"):
            return True
        raise bad_param(name, text, "`true` or `false`")

    def explain(request: Request) -> bool:
        return flag(request, "explain")

    async def decide(request: Request) -> Response:
        domain = request.path_params["domain"]
        service.check_domain(domain)
        body = await body_of(request)
        out = await call(service.decide, domain, body, explain=explain(request), release=flag(request, "release"))
        request.scope[DECISION_ID] = out["decision_id"]  # for the request's log line
        return respond(out, bundle=out["bundle_version"])

    async def decide_batch(request: Request) -> Response:
        domain = request.path_params["domain"]
        service.check_domain(domain)
        body = await body_of(request)
        items = body.get("facts") if isinstance(body, dict) else None
        if isinstance(items, list) and len(items) > max_batch:
            raise ServeError(
                f"the batch has {len(items):,} items, over the limit of {max_batch:,}",
                status=413,
                code="C084",
                hint=f"send at most {max_batch:,} items in one call",
            )
        # a batch is too long for the event loop, logged or not: it would hold up every other request
        out = await in_thread(service.decide_batch, domain, body, explain=explain(request))
        return respond(out, bundle=out["bundle_version"])

    async def customer(request: Request) -> Response:
        out = await call(service.customer, await body_of(request), explain=explain(request))
        return respond(out, bundle=out["bundle_version"])

    async def bundle(request: Request) -> Response:
        return respond(service.bundle_info())

    async def log_records(request: Request) -> Response:
        return respond(await in_thread(auditlog.find, service, dict(request.query_params)))

    async def log_record(request: Request) -> Response:
        return respond(await in_thread(auditlog.get, service, request.path_params["id"]))

    async def log_verify(request: Request) -> Response:
        body = await body_of(request, required=False)
        return respond(await in_thread(auditlog.verify_log, service, body))

    async def log_replay(request: Request) -> Response:
        body = await body_of(request, required=False)
        job = auditlog.start_replay(service, body)
        return respond(job, 202)

    async def job(request: Request) -> Response:
        return respond(service.jobs.get(request.path_params["id"]))

    async def health(request: Request) -> Response:
        return respond({"status": "ok", "bundle_version": service.engine.bundle_version})

    async def ready(request: Request) -> Response:
        ok, out = await in_thread(service.readiness)
        if not has_scope(request, ADMIN):  # the errors' details (files, the store) are for admins
            out["reasons"] = [{"what": r["what"], "message": r["message"]} for r in out["reasons"]]
        return respond(out, 200 if ok else 503)

    async def metrics(request: Request) -> Response:
        data = await in_thread(service.metrics.render)
        return Response(data, media_type=CONTENT_TYPE, headers={"X-Charter-Bundle": service.engine.bundle_version})

    document = openapi()

    async def openapi_json(request: Request) -> Response:
        return respond(document)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            what = f"`{request.url.path}` does not take {request.method}"
        else:
            what = f"no endpoint `{request.url.path}`"
        return failed(ServeError(what, status=status, code="C068", hint="GET /openapi.json lists the endpoints"))

    async def refused(request: Request, exc: Exception) -> Response:
        # a ServeError raised in a mounted route, or by BodyLimit while a route reads the body
        return failed(exc if isinstance(exc, ServeError) else internal())

    async def crashed(request: Request, exc: Exception) -> Response:
        # anything a mounted route let escape: the traceback goes to the service's log, never out
        _LOG.error("%s %s failed: %s", request.method, request.url.path, exc.__class__.__name__)
        return failed(internal())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await in_thread(service.stop)

    table: dict[tuple[str, str], Handler] = {
        ("POST", "/v1/decide/{domain}"): decide,
        ("POST", "/v1/decide/{domain}/batch"): decide_batch,
        ("POST", "/v1/customer"): customer,
        ("GET", "/v1/bundle"): bundle,
        ("GET", "/v1/log/records"): log_records,
        ("GET", "/v1/log/records/{id}"): log_record,
        ("POST", "/v1/log/verify"): log_verify,
        ("POST", "/v1/log/replay"): log_replay,
        ("GET", "/v1/jobs/{id}"): job,
        ("GET", "/health"): health,
        ("GET", "/ready"): ready,
        ("GET", "/metrics"): metrics,
        ("GET", "/openapi.json"): openapi_json,
    }
    # ENDPOINTS[...]: a route whose scope is not written down there cannot be built
    routes: list[BaseRoute] = [
        Route(path, endpoint(ENDPOINTS[(method, path)], fn), methods=[method]) for (method, path), fn in table.items()
    ]
    from engine.web import routes as web_routes  # the workbench's pages, /ui/ (docs/workbench.md); a layer above

    routes += web_routes(service)
    # routes mounted here (the web workbench) are covered by the middleware too: they need a
    # valid token, and ask its scopes with engine.serve.auth.has_scope / require_scope
    handlers = {HTTPException: http_error, ServeError: refused, Exception: crashed}
    middleware = [
        Middleware(AuthMiddleware, config=auth or AuthConfig(), reject=failed),
        Middleware(BodyLimit, limit=max_body, reject=failed),
    ]
    if request_log:  # outermost: refused requests are logged too
        middleware.insert(0, Middleware(RequestLog))
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware, lifespan=lifespan)


def check_json(content_type: str | None) -> None:
    """A body sent with a content type must be sent as JSON (``application/json``, ``…+json``)."""
    if content_type is None:
        return
    media = content_type.partition(";")[0].strip().lower()
    if media == JSON or (media.startswith("application/") and media.endswith("+json")):
        return
    raise ServeError(
        f"the request body is `{media}`, not JSON",
        status=415,
        code="C083",
        hint="send it with `Content-Type: application/json` (curl: `--json @file`)",
    )


def timed_out(limit: float) -> ServeError:
    return ServeError(
        f"the request took over the limit of {limit:g} s",
        status=504,
        code="C085",
        hint="the work it started goes on in the service and may still finish (a logged decision may be"
        " in the log: find it before deciding again); send a smaller batch, or retry later",
    )


class BodyLimit:
    """Answers 413 for a body over ``limit`` bytes: at once by its ``Content-Length``, else
    (chunked) by raising ``too_large`` into the route reading it, once it has read that much."""

    def __init__(self, app: Any, limit: int, reject: Callable[[ServeError], Response]) -> None:
        self.app = app
        self.limit = limit
        self.reject = reject

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self.reject(too_large(self.limit))(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large(self.limit)
            return message

        await self.app(scope, limited, send)


def too_large(limit: int) -> ServeError:
    return ServeError(
        f"the request body is over the limit of {limit:,} bytes",
        status=413,
        code="C068",
        hint="send a smaller batch, in several calls",
    )
