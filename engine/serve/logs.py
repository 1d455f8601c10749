"""The service's own logs: text, or JSON lines (``charter serve --log-format json``).

In JSON every line on stderr is one object: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, and ``error`` with a traceback when one was logged. Each request answered is one
line of the ``charter.request`` logger with ``method``, ``path`` (never the query string),
``status``, ``duration_ms``, ``token`` (the token's name from the tokens file, never the token)
and, for a single decision, ``decision_id``. Facts, bodies and headers are never logged.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson

REQUEST_LOGGER = "charter.request"
FIELDS = ("method", "path", "status", "duration_ms", "decision_id", "token")  # what a request line may carry
DECISION_ID = "charter.decision_id"  # the ASGI scope's key a route puts the decision's id under


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure(fmt: str) -> None:
    """Logging to stderr, as text or JSON lines, for the service and uvicorn alike."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own: through the same handler, warnings and worse
        logging.getLogger(name).setLevel(logging.WARNING)


class RequestLog:
    """ASGI middleware logging each HTTP request once answered, to ``charter.request`` (INFO).

    It sits outside the tokens middleware: a refused request (401) is logged too, without a
    token name; the token's name is read from ``scope["charter.token"]`` once authenticated."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.log = logging.getLogger(REQUEST_LOGGER)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            token = scope.get("charter.token")
            extra = {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status or 500,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                "decision_id": scope.get(DECISION_ID),
                "token": getattr(token, "name", None),
            }
            self.log.info("%s %s %s", extra["method"], extra["path"], extra["status"], extra=extra)
