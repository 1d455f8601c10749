"""What the request may see, in one place: the service's bearer token (``engine.serve.auth``,
whose middleware covers these pages as every route) and its scopes.

* the decision log's pages (search, a decision, the chain, the dashboard) need ``log:read``;
* sealed values (sensitive facts, encrypted in the log) show in clear only to a token with
  ``unseal``, a scope ``admin`` does not imply; every other request sees them as sealed;
* the policies, the tests and the change impact (a named or uploaded directory) need a valid
  token only; "Try a decision" decides, so it needs ``decide`` as ``/v1/decide`` does (it
  logs nothing); the change impact's replay against the decision log decides the log's
  sealed facts, so it needs ``log:read`` and ``unseal``;
* replay jobs (start one, follow it) need ``replay``, as ``POST /v1/log/replay`` does.
"""

from __future__ import annotations

from starlette.requests import Request

from engine.serve.auth import DECIDE, LOG_READ, REPLAY, UNSEAL, has_scope, require_scope


def may_read_log(request: Request) -> bool:
    """Whether this request may see what the decision log holds (customers, outputs, rules)."""
    return has_scope(request, LOG_READ)


def may_unseal(request: Request) -> bool:
    """Whether this request may see the sealed values of the decision log in clear."""
    return has_scope(request, UNSEAL)


def require_log_reader(request: Request) -> None:
    """Refuse (401 without a token, 403 naming the scope) a request that may not read the log."""
    require_scope(request, LOG_READ)


def require_replayer(request: Request) -> None:
    """Refuse a request that may not start or follow replay jobs (the ``replay`` scope)."""
    require_scope(request, REPLAY)


def require_decider(request: Request) -> None:
    """Refuse a request that may not have decisions made (the ``decide`` scope)."""
    require_scope(request, DECIDE)
