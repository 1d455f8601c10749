"""Who may ask the service what: bearer tokens with scopes, as one ASGI middleware.

``AuthMiddleware`` wraps the whole application, so every route is covered, those mounted
later included (the web workbench): a request without a valid token is answered 401 before
any route sees it, except on the open paths (``/health``, ``/ready``, ``/openapi.json``).
What each of the service's own endpoints needs is ``ENDPOINTS``, the one table that the
application (``engine.serve.app``) and the OpenAPI document (``engine.serve.openapi``) read.

A route asks what the request may do with ``token_of(request)``, ``has_scope(request, s)``
or ``require_scope(request, s)`` (403 naming the missing scope); the token is in the ASGI
scope as ``scope["charter.token"]`` (a ``Token``; ``None`` on an open path without one).

Tokens are configured in a file (YAML or JSON) holding each token's name, scopes and the
SHA-256 of the token, never the token itself (``charter serve token new`` makes one)::

    tokens:
      - name: crm-backend
        scopes: [decide]
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

A presented token is hashed and compared with every configured digest by
``hmac.compare_digest`` (all of them, so the time taken does not say which one matched).
Without a tokens file, every request is ``ANONYMOUS`` (every scope but ``unseal``) and, when
``local_only``, only a request addressed to a loopback name (``Host``) and not sent from a
page of another origin (``Origin``) is let in: DNS rebinding and cross-site requests from a
browser are refused (403, C082).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import Response

from engine.errors import CharterError, did_you_mean
from engine.serve.errors import ServeError

_LOG = logging.getLogger("charter.serve")

DECIDE, LOG_READ, REPLAY, METRICS, ADMIN, UNSEAL = "decide", "log:read", "replay", "metrics", "admin", "unseal"
SCOPES: dict[str, str] = {
    DECIDE: "decide: /v1/decide/…, /v1/customer",
    LOG_READ: "read the decision log: /v1/log/records, /v1/log/verify",
    REPLAY: "replay the decision log as jobs: /v1/log/replay, /v1/jobs/…",
    METRICS: "read /metrics (for a Prometheus scraper)",
    ADMIN: "every scope but `unseal`, and the details of /ready",
    UNSEAL: "see sealed values in clear (the web workbench); never implied by `admin`",
}
OPEN = ""  # no token needed
ANY = "*"  # any valid token, whatever its scopes

# What each endpoint of the service needs. A route of the service's own that is not here
# cannot be built (``engine.serve.app``); routes mounted later need a valid token (ANY)
# and check their own scopes with ``require_scope``.
ENDPOINTS: dict[tuple[str, str], str] = {
    ("POST", "/v1/decide/{domain}"): DECIDE,
    ("POST", "/v1/decide/{domain}/batch"): DECIDE,
    ("POST", "/v1/customer"): DECIDE,
    ("GET", "/v1/bundle"): ANY,
    ("GET", "/v1/log/records"): LOG_READ,
    ("GET", "/v1/log/records/{id}"): LOG_READ,
    ("POST", "/v1/log/verify"): LOG_READ,
    ("POST", "/v1/log/replay"): REPLAY,
    ("GET", "/v1/jobs/{id}"): REPLAY,
    ("GET", "/health"): OPEN,
    ("GET", "/ready"): OPEN,
    ("GET", "/metrics"): METRICS,
    ("GET", "/openapi.json"): OPEN,
}
OPEN_PATHS = frozenset(path for (_, path), need in ENDPOINTS.items() if need == OPEN)

TOKEN_PREFIX = "charter_"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750's b64token
REALM = 'Bearer realm="charter"'


@dataclass(frozen=True)
class Token:
    """A configured token: its name (for logs, never secret), its scopes and its digest."""

    name: str
    scopes: frozenset[str]
    sha256: str = ""

    def allows(self, scope: str) -> bool:
        """Whether the token may do ``scope`` (``admin`` implies every scope but ``unseal``)."""
        if scope in (OPEN, ANY) or scope in self.scopes:
            return True
        return ADMIN in self.scopes and scope != UNSEAL


ANONYMOUS = Token("anonymous", frozenset(SCOPES) - {UNSEAL})


def digest(secret: str) -> str:
    """The SHA-256 of a token, as the tokens file holds it (hex)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh token: 256 random bits, prefixed so that secret scanners can recognise it."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_scopes(scopes: Iterable[str], where: str) -> frozenset[str]:
    """``scopes`` if each is known, else C086 naming the first unknown one."""
    out = frozenset(scopes)
    for scope in sorted(out):
        if scope not in SCOPES:
            raise CharterError(
                f"{where}: unknown scope `{scope}`",
                code="C086",
                hint=did_you_mean(scope, SCOPES) or "scopes: " + ", ".join(f"`{s}`" for s in SCOPES),
            )
    if not out:
        raise CharterError(f"{where}: a token needs at least one scope", code="C086")
    return out


class Tokens:
    """The tokens of a tokens file, looked up by the token a request presents."""

    def __init__(self, tokens: Iterable[Token], source: str = "") -> None:
        self.tokens = tuple(tokens)
        self.source = source
        self._digests = tuple((bytes.fromhex(t.sha256), t) for t in self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def current(self) -> Tokens:
        return self

    def match(self, secret: str) -> Token | None:
        """The token whose digest is ``secret``'s, comparing with every one in constant time."""
        presented = hashlib.sha256(secret.encode("utf-8")).digest()
        found = None
        for expected, token in self._digests:
            if hmac.compare_digest(expected, presented):
                found = token
        return found

    @classmethod
    def load(cls, path: str | Path) -> Tokens:
        """The tokens of a YAML or JSON file, or C086 saying what is wrong with it."""
        where = f"`{path}`"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CharterError(f"{where}: the tokens file cannot be read: {exc}", code="C086") from None
        return cls.load_text(text, str(path))

    @classmethod
    def load_text(cls, text: str, path: str) -> Tokens:
        """The tokens of a file's text: JSON when ``path`` ends in ``.json``, else YAML."""
        where = f"`{path}`"
        try:
            data = json.loads(text) if path.endswith(".json") else _yaml(text)
        except ValueError as exc:
            raise CharterError(f"{where}: the tokens file is not valid YAML or JSON: {exc}", code="C086") from None
        return cls(_entries(data, where), path)


class TokenFile:
    """A tokens file, read again when it changes (looked at, at most, every ``interval``
    seconds, as requests arrive): a token is revoked by removing its line, with no restart.
    A change that does not load keeps the previous tokens, and is logged as an error."""

    def __init__(self, path: str | Path, *, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.interval = interval
        self._clock = clock
        self._stamp = self._stat()
        self.tokens = Tokens.load(self.path)
        self._next = clock() + interval
        self.reloads = 0
        self.last_error: CharterError | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()  # follows symlinks: a Kubernetes secret's swap shows here
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def current(self) -> Tokens:
        """The tokens, read again first if the file changed since it was last looked at."""
        now = self._clock()
        if now < self._next:
            return self.tokens
        self._next = now + self.interval
        stamp = self._stat()
        if stamp == self._stamp:
            return self.tokens
        self._stamp = stamp
        try:
            self.tokens = Tokens.load(self.path)
        except CharterError as exc:
            self.last_error = exc
            _LOG.error("the tokens file changed and does not load; the previous tokens stay: %s", exc.describe())
        else:
            self.reloads += 1
            self.last_error = None
            _LOG.info("read the tokens file %s again: %d token(s)", self.path, len(self.tokens))
        return self.tokens


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).replace("\n", " ")) from None


def _entries(data: Any, where: str) -> list[Token]:
    items = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise CharterError(
            f"{where}: the tokens file must hold a `tokens` list",
            code="C086",
            hint="`charter serve token new NAME --scopes decide` prints an entry to add",
        )
    out: list[Token] = []
    for i, item in enumerate(items):
        out.append(_entry(item, f"{where} tokens[{i}]"))
    names = [t.name for t in out]
    digests = [t.sha256 for t in out]
    for label, values in (("name", names), ("sha256", digests)):
        dup = next((v for v in values if values.count(v) > 1), None)
        if dup is not None:
            raise CharterError(f"{where}: two tokens have the {label} `{dup[:16]}`", code="C086")
    return out


def _entry(item: Any, where: str) -> Token:
    if not isinstance(item, dict):
        raise CharterError(f"{where}: a token must be a mapping of `name`, `scopes`, `sha256`", code="C086")
    if "token" in item or "secret" in item:
        raise CharterError(
            f"{where}: the token itself must never be in the file",
            code="C086",
            hint="write its SHA-256 as `sha256` (`charter serve token new` prints it) and remove the token",
        )
    extra = sorted(set(item) - {"name", "scopes", "sha256", "note"})
    if extra:
        raise CharterError(f"{where}: unknown key `{extra[0]}`", code="C086", hint="keys: name, scopes, sha256, note")
    name, scopes, sha = item.get("name"), item.get("scopes"), item.get("sha256")
    if not isinstance(name, str) or not _NAME.match(name):
        raise CharterError(f"{where}: `name` must be a short name (letters, digits, `._:@-`)", code="C086")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise CharterError(f"{where}: `scopes` must be a list of scopes", code="C086")
    if not isinstance(sha, str) or not _HEX64.match(sha.lower()):
        raise CharterError(f"{where}: `sha256` must be 64 hexadecimal digits", code="C086")
    return Token(name, check_scopes(scopes, where), sha.lower())


def entry_text(name: str, scopes: Iterable[str], secret: str) -> str:
    """The line to add to a tokens file's ``tokens:`` list for ``secret``."""
    listed = ", ".join(json.dumps(s) for s in scopes)
    return f"  - {{name: {json.dumps(name)}, scopes: [{listed}], sha256: {digest(secret)}}}"


def add_entry(path: Path, entry: str, name: str) -> None:
    """``entry`` appended to a YAML tokens file's ``tokens:`` list; the file checked before and after."""
    if not path.exists():
        path.write_text("tokens:\n" + entry + "\n", encoding="utf-8")
        return
    if path.suffix == ".json":
        raise CharterError(f"`{path}`: `--add` writes YAML tokens files only", code="C086")
    before = path.read_text(encoding="utf-8")
    if any(t.name == name for t in Tokens.load(path).tokens):
        raise CharterError(f"`{path}`: a token named `{name}` is already there", code="C086")
    path.write_text(before + ("" if before.endswith("\n") else "\n") + entry + "\n", encoding="utf-8")
    try:
        if len(Tokens.load(path)) != len(Tokens.load_text(before, str(path))) + 1:
            raise CharterError(f"`{path}`: the entry did not land in the `tokens:` list", code="C086")
    except CharterError:
        path.write_text(before, encoding="utf-8")
        raise


# -- asking, from a route ----------------------------------------------------------------------


def token_of(conn: HTTPConnection) -> Token | None:
    """The request's token: ``None`` only on an open path requested without a valid one."""
    token = conn.scope.get("charter.token")
    return token if isinstance(token, Token) else None


def has_scope(conn: HTTPConnection, scope: str) -> bool:
    token = token_of(conn)
    return token is not None and token.allows(scope)


def require_scope(conn: HTTPConnection, scope: str) -> Token:
    """The request's token when it has ``scope``; else 401 (no token) or 403 naming the scope."""
    token = token_of(conn)
    if token is None:
        raise unauthenticated("no bearer token: send `Authorization: Bearer …`")
    if not token.allows(scope):
        raise ServeError(
            f"the token `{token.name}` lacks the scope `{scope}`",
            status=403,
            code="C081",
            hint=f"ask for a token with `{scope}`: {SCOPES.get(scope, scope)}",
            headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'},
        )
    return token


def unauthenticated(message: str, error: str | None = None) -> ServeError:
    challenge = REALM if error is None else f'{REALM}, error="{error}"'
    return ServeError(
        message,
        status=401,
        code="C080",
        hint="send `Authorization: Bearer TOKEN` with a token from the service's tokens file",
        headers={"WWW-Authenticate": challenge},
    )


# -- the middleware ------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class AuthConfig:
    """What the middleware lets in. ``tokens`` None: every request is ``ANONYMOUS``;
    ``local_only``: then only requests addressed to a loopback name, from no other origin."""

    tokens: Tokens | TokenFile | None = None
    local_only: bool = False


class AuthMiddleware:
    """Puts the request's ``Token`` in ``scope["charter.token"]``, or answers 401/403 itself
    (with ``reject``: the service's one error shape)."""

    def __init__(self, app: ASGIApp, config: AuthConfig, reject: Callable[[ServeError], Response]) -> None:
        self.app = app
        self.config = config
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            scope["charter.token"] = self.authenticate(scope)
        except ServeError as exc:
            await self.reject(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def authenticate(self, scope: Scope) -> Token | None:
        headers = _headers(scope)
        if self.config.local_only:
            _check_local(headers)
        if self.config.tokens is None:
            return ANONYMOUS
        tokens = self.config.tokens.current()
        open_path = scope.get("path") in OPEN_PATHS
        header = headers.get("authorization")
        if header is None:
            if open_path:
                return None
            raise unauthenticated("no bearer token: send `Authorization: Bearer …`")
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not _B64TOKEN.match(secret):
            if open_path:
                return None
            raise unauthenticated("the `Authorization` header is not `Bearer TOKEN`", "invalid_request")
        token = tokens.match(secret)
        if token is None and not open_path:
            client = scope.get("client") or ("?", 0)
            _LOG.warning("refused a request with an unknown token from %s to %s", client[0], scope.get("path"))
            raise unauthenticated("the bearer token is not one the service knows", "invalid_token")
        return token


_WANTED = frozenset({b"authorization", b"host", b"origin"})


def _headers(scope: Scope) -> dict[str, str]:
    """The headers the middleware reads (``Authorization``, ``Host``, ``Origin``): the first of
    each, by name (ASGI gives names in lowercase)."""
    out: dict[str, str] = {}
    for key, value in scope.get("headers", ()):
        if key in _WANTED:
            out.setdefault(key.decode("latin-1"), value.decode("latin-1"))
    return out


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, without a port) names this machine's loopback."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=256)
def _local(authority: str) -> bool:
    """Whether a ``Host`` value (``name[:port]``) or an ``Origin`` (``scheme://name[:port]``) is loopback."""
    if authority == "null":  # a sandboxed page, a file, a redirect across origins
        return False
    return is_loopback(urlsplit(authority if "://" in authority else f"//{authority}").hostname or "")


def _check_local(headers: Mapping[str, str]) -> None:
    host = headers.get("host", "")
    origin = headers.get("origin")
    if not _local(host):
        refused = f"the request is addressed to `{host}`, not to this machine's loopback"
    elif origin is not None and not _local(origin):
        refused = f"the request comes from a page of `{origin}`"
    else:
        return
    raise ServeError(
        refused,
        status=403,
        code="C082",
        hint="the service runs without tokens, for this machine only: start it with `--tokens FILE` to serve others",
    )
