"""The HTTP layer: a Starlette application over a ``Service``. JSON in and out (orjson).

Every response carries ``X-Charter-Bundle`` (the bundle version that decided, or that is
serving); every error is ``{"error": {"code", "message", "hint", ...}}`` (``engine.serve.errors``).

Engine calls run in Starlette's threadpool when the service logs decisions (a durable append
waits on the disk); unlogged, they run on the event loop itself: a decision takes tens of
microseconds, less than the hop to a worker thread costs (docs/serve.md has the figures).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.errors import CharterError
from engine.serve import auditlog
from engine.serve.errors import ServeError, bad_param, error_body, internal, status_of
from engine.serve.metrics import CONTENT_TYPE
from engine.serve.openapi import openapi
from engine.serve.service import Service

_LOG = logging.getLogger("charter.serve")
MAX_BODY = 16 * 1024 * 1024  # bytes of one request body
JSON = "application/json"
Handler = Callable[[Request], Awaitable[Response]]


def create_app(service: Service, *, inline: bool | None = None, max_body: int = MAX_BODY) -> Starlette:
    """The application. ``inline``: run engine calls on the event loop (default: when the
    service does not log decisions)."""
    run_inline = service.engine.log is None if inline is None else inline

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if run_inline:
            return fn(*args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    def respond(data: Any, status: int = 200, bundle: str | None = None) -> Response:
        return Response(
            orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
            status_code=status,
            media_type=JSON,
            headers={"X-Charter-Bundle": bundle or service.engine.bundle_version},
        )

    def failed(exc: CharterError) -> Response:
        return respond({"error": error_body(exc)}, status_of(exc))

    def endpoint(fn: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
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
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise too_large(max_body)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_body:
                raise too_large(max_body)
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

    def explain(request: Request) -> bool:
        text = request.query_params.get("explain")
        if text is None or text.lower() in ("false", "0", "no", ""):
            return False
        if text.lower() in ("true", "1", "yes"):
            return True
        raise bad_param("explain", text, "`true` or `false`")

    @endpoint
    async def decide(request: Request) -> Response:
        domain = request.path_params["domain"]
        service.check_domain(domain)
        out = await call(service.decide, domain, await body_of(request), explain=explain(request))
        return respond(out, bundle=out["bundle_version"])

    @endpoint
    async def decide_batch(request: Request) -> Response:
        domain = request.path_params["domain"]
        service.check_domain(domain)
        out = await call(service.decide_batch, domain, await body_of(request), explain=explain(request))
        return respond(out, bundle=out["bundle_version"])

    @endpoint
    async def customer(request: Request) -> Response:
        out = await call(service.customer, await body_of(request), explain=explain(request))
        return respond(out, bundle=out["bundle_version"])

    @endpoint
    async def bundle(request: Request) -> Response:
        return respond(service.bundle_info())

    @endpoint
    async def log_records(request: Request) -> Response:
        return respond(await run_in_threadpool(auditlog.find, service, dict(request.query_params)))

    @endpoint
    async def log_record(request: Request) -> Response:
        return respond(await run_in_threadpool(auditlog.get, service, request.path_params["id"]))

    @endpoint
    async def log_verify(request: Request) -> Response:
        body = await body_of(request, required=False)
        return respond(await run_in_threadpool(auditlog.verify_log, service, body))

    @endpoint
    async def log_replay(request: Request) -> Response:
        body = await body_of(request, required=False)
        job = auditlog.start_replay(service, body)
        return respond(job, 202)

    @endpoint
    async def job(request: Request) -> Response:
        return respond(service.jobs.get(request.path_params["id"]))

    @endpoint
    async def health(request: Request) -> Response:
        return respond({"status": "ok", "bundle_version": service.engine.bundle_version})

    @endpoint
    async def ready(request: Request) -> Response:
        ok, out = await run_in_threadpool(service.readiness)
        return respond(out, 200 if ok else 503)

    @endpoint
    async def metrics(request: Request) -> Response:
        data = await run_in_threadpool(service.metrics.render)
        return Response(data, media_type=CONTENT_TYPE, headers={"X-Charter-Bundle": service.engine.bundle_version})

    document = openapi()

    @endpoint
    async def openapi_json(request: Request) -> Response:
        return respond(document)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            what = f"`{request.url.path}` does not take {request.method}"
        else:
            what = f"no endpoint `{request.url.path}`"
        return failed(ServeError(what, status=status, code="C068", hint="GET /openapi.json lists the endpoints"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    routes = [
        Route("/v1/decide/{domain}", decide, methods=["POST"]),
        Route("/v1/decide/{domain}/batch", decide_batch, methods=["POST"]),
        Route("/v1/customer", customer, methods=["POST"]),
        Route("/v1/bundle", bundle, methods=["GET"]),
        Route("/v1/log/records", log_records, methods=["GET"]),
        Route("/v1/log/records/{id}", log_record, methods=["GET"]),
        Route("/v1/log/verify", log_verify, methods=["POST"]),
        Route("/v1/log/replay", log_replay, methods=["POST"]),
        Route("/v1/jobs/{id}", job, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)


def too_large(limit: int) -> ServeError:
    return ServeError(
        f"the request body is over the limit of {limit:,} bytes",
        status=413,
        code="C068",
        hint="send a smaller batch, in several calls",
    )
