"""The template environment (autoescape everywhere, undefined names an error) and the pages
for errors: a page, never JSON and never a traceback, under ``/ui/``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from engine.errors import CharterError
from engine.serve.errors import status_of

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
NAV = (
    ("/ui/", "Overview"),
    ("/ui/tests", "Tests"),
    ("/ui/log", "Decision log"),
    ("/ui/log/verify", "Chain"),
    ("/ui/log/replay", "Replay"),
    ("/ui/impact", "Change impact"),
    ("/ui/try", "Try a decision"),
    ("/ui/dashboard", "Dashboard"),
)


def link(path: str, **params: Any) -> str:
    """A stable URL: the path with the parameters that are set, in the order given."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def short(value: Any, n: int = 12) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= n else text[:n] + "…"


TICKS = re.compile(r"`([^`]*)`")


def ticks(text: Any) -> Markup:
    """Text in the engine's message style, its `quoted` parts set as code; escaped first."""
    return Markup(TICKS.sub(r"<code>\1</code>", str(escape(text))))  # safe: escaped first


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False, default=str)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every page: policy text, customer ids and log values are the user's
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(link=link, nav=NAV)
    env.filters.update(short=short, as_json=as_json, ticks=ticks)
    return env


TEMPLATES_ENV = Jinja2Templates(env=_environment())


def page(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    """``template`` rendered with ``context`` (and the request, for the current path)."""
    return TEMPLATES_ENV.TemplateResponse(request, template, {"path": request.url.path, **context}, status_code=status)


def error_page(request: Request, status: int, title: str, message: str, hint: str = "", code: str = "") -> Response:
    context = {"title": title, "message": message, "hint": hint, "code": code, "status": status}
    return page(request, "error.html", context, status)


def charter_error_page(request: Request, exc: CharterError) -> Response:
    status = status_of(exc)
    title = "Not found" if status == 404 else "Cannot show this page" if status < 500 else "Something went wrong"
    return error_page(request, status, title, exc.message, exc.hint or "", exc.code or "")
