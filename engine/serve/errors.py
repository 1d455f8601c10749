"""The service's one error shape: ``{"error": {"code", "message", "hint", ...}}`` with an HTTP status.

Bad facts answer 422 with the engine's ``FactErrors`` (each error naming its field) under
``error.errors``; a decision that cannot be made answers 422 with the engine's
``EvaluationError``; the service's own refusals are ``ServeError`` (codes C060-C069, and
C080-C085 for authentication and limits: ``engine.serve.auth``, ``engine.serve.app``). No
response ever carries a traceback: anything unexpected is logged and answered as C069.
"""

from __future__ import annotations

from typing import Any

from engine.errors import CharterError, EvaluationError, FactErrors


class ServeError(CharterError):
    """A request the service refuses, with the HTTP status it answers."""

    code = "C069"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, hint=hint, code=code)
        self.status = status
        self.headers = headers or {}  # sent with the response: `WWW-Authenticate`, `Retry-After`


def error_body(exc: CharterError) -> dict[str, Any]:
    """``exc`` as the ``error`` member of a response (or of one item of a batch)."""
    if isinstance(exc, FactErrors):
        return {
            "code": exc.code,
            "message": str(exc),
            "hint": exc.errors[0].hint if exc.errors else None,
            "subject": exc.subject or None,
            "errors": [e.to_dict() for e in exc.errors],
        }
    return exc.to_dict()


def status_of(exc: CharterError) -> int:
    if isinstance(exc, ServeError):
        return exc.status
    if isinstance(exc, (FactErrors, EvaluationError)):
        return 422
    return 500


def bad_param(name: str, text: str, expected: str) -> ServeError:
    return ServeError(f"`{name}` must be {expected}: `{text}`", status=422, code="C064")


def internal() -> ServeError:
    return ServeError(
        "the service could not answer this request",
        status=500,
        code="C069",
        hint="the service's log has the details; the request may be retried",
    )
