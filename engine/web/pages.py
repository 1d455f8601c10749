"""The routes: one thin handler per page, running the page's work in the threadpool (it reads
files, the log or runs the engine) and rendering its template; every error is a page."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from engine.errors import CharterError
from engine.serve.errors import internal
from engine.serve.service import Service
from engine.web import (
    counterfactual,
    dashboard,
    impact,
    log,
    overview,
    policies,
    policytests,
    replayjobs,
    trends,
    upload,
)
from engine.web.access import may_read_log, may_unseal, require_decider, require_log_reader, require_replayer
from engine.web.render import STATIC, charter_error_page, error_page, page

_LOG = logging.getLogger("charter.web")
Handler = Callable[[Request], Awaitable[Response]]


def routes(
    service: Service, *, checkpoints: str | Path | None = None, public_keys: Sequence[str | Path] = ()
) -> list[BaseRoute]:
    """The workbench's routes, mounted at ``/ui``. ``checkpoints``: the signed checkpoints
    file of the log (``charter log checkpoint``) and ``public_keys`` the keys trusted to sign
    them, for ``/ui/log/verify``."""
    checkpoints_file = str(checkpoints) if checkpoints is not None else None
    keys = [str(k) for k in public_keys]

    def html(fn: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
            except CharterError as exc:
                return charter_error_page(request, exc)
            except Exception:  # never a traceback on a page: it goes to the service's log
                _LOG.exception("%s %s failed", request.method, request.url.path)
                return charter_error_page(request, internal())

        run.__name__ = fn.__name__
        return run

    @html
    async def home(request: Request) -> Response:
        return page(request, "overview.html", await run_in_threadpool(overview.overview, service))

    @html
    async def policy(request: Request) -> Response:
        domain = request.path_params["domain"]
        return page(request, "policy.html", await run_in_threadpool(policies.policy_page, service, domain))

    @html
    async def tests(request: Request) -> Response:
        q = request.query_params
        data = await run_in_threadpool(policytests.tests_page, service, q.get("status"), q.get("domain"))
        return page(request, "tests.html", data)

    @html
    async def log_search(request: Request) -> Response:
        require_log_reader(request)
        return page(request, "log.html", await run_in_threadpool(log.search, service, dict(request.query_params)))

    @html
    async def log_record(request: Request) -> Response:
        require_log_reader(request)
        record_id = request.path_params["id"]
        data = await run_in_threadpool(log.record, service, record_id, may_unseal=may_unseal(request))
        return page(request, "record.html", data)

    @html
    async def log_verify(request: Request) -> Response:
        require_log_reader(request)
        data = await run_in_threadpool(log.verify_page, service, checkpoints_file, keys)
        return page(request, "verify.html", data)

    @html
    async def replay_list(request: Request) -> Response:
        require_replayer(request)
        if request.method == "POST":
            form = await upload.form_of(request, max_files=0, max_fields=10)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            job_id = await run_in_threadpool(replayjobs.start, service, fields)
            return RedirectResponse(f"/ui/log/replay/{job_id}", status_code=303)
        return page(request, "replay.html", await run_in_threadpool(replayjobs.jobs_page, service))

    @html
    async def replay_job(request: Request) -> Response:
        require_replayer(request)
        data = await run_in_threadpool(replayjobs.job_page, service, request.path_params["id"])
        return page(request, "replay_job.html", data)

    @html
    async def impact_form(request: Request) -> Response:
        params, reads = dict(request.query_params), may_read_log(request) and may_unseal(request)
        data = await run_in_threadpool(impact.impact_page, service, params, may_read_log=reads)
        return page(request, "impact.html", data)

    @html
    async def impact_upload(request: Request) -> Response:
        fields, files = await upload.read_form(request)
        reads = may_read_log(request) and may_unseal(request)

        def compare() -> dict[str, Any]:
            with upload.written(files) as uploaded:
                return impact.impact_page(service, fields, uploaded=uploaded, may_read_log=reads)

        return page(request, "impact.html", await run_in_threadpool(compare))

    @html
    async def try_view(request: Request) -> Response:
        require_decider(request)
        params = dict(request.query_params)
        if request.method == "POST":
            form = await upload.form_of(request, max_files=0, max_fields=10)
            params = {k: v for k, v in form.items() if isinstance(v, str)}
        return page(request, "try.html", await run_in_threadpool(counterfactual.try_page, service, params))

    @html
    async def dashboard_view(request: Request) -> Response:
        require_log_reader(request)
        data = await run_in_threadpool(dashboard.dashboard_page, service, dict(request.query_params))
        return page(request, "dashboard.html", data)

    @html
    async def trends_view(request: Request) -> Response:
        require_log_reader(request)
        data = await run_in_threadpool(trends.trends_page, service, dict(request.query_params))
        return page(request, "trends.html", data)

    @html
    async def not_found(request: Request) -> Response:
        return error_page(request, 404, "Not found", f"no page `{request.url.path}`", "the overview links every page")

    pages: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Route("/policies/{domain}", policy, methods=["GET"]),
        Route("/tests", tests, methods=["GET"]),
        Route("/log", log_search, methods=["GET"]),
        Route("/log/verify", log_verify, methods=["GET"]),
        Route("/log/replay", replay_list, methods=["GET", "POST"]),
        Route("/log/replay/{id}", replay_job, methods=["GET"]),
        Route("/log/{id}", log_record, methods=["GET"]),
        Route("/impact", impact_form, methods=["GET"]),
        Route("/impact", impact_upload, methods=["POST"]),
        Route("/try", try_view, methods=["GET", "POST"]),
        Route("/dashboard", dashboard_view, methods=["GET"]),
        Route("/dashboard/trends", trends_view, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/{rest:path}", not_found),
    ]
    return [Mount("/ui", routes=pages)]
