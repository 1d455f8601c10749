"""`charter serve`'s security and limits: bearer tokens and scopes, the loopback-only mode,
the size and time limits, the one error shape for every error class, mTLS.

In process through Starlette's TestClient where that is enough; against a real server on a
loopback port for what only a socket shows (chunked bodies, the options, TLS).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import POLICIES, ROOT
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from engine.api import Engine
from engine.cli import main
from engine.errors import CharterError
from engine.serve.app import create_app
from engine.serve.auth import (
    ADMIN,
    ANY,
    ENDPOINTS,
    OPEN,
    SCOPES,
    UNSEAL,
    AuthConfig,
    Token,
    TokenFile,
    Tokens,
    digest,
    has_scope,
    new_token,
    require_scope,
    token_of,
)
from engine.serve.cli import auth_of, tls_of
from engine.serve.service import Service

STAMP = "2025-06-30T00:00:00Z"
ACCESS = {
    "subject": {"id": "u009", "roles": ["agent"]},
    "action": "read",
    "purpose": "service",
    "resource": {"customer": "C000001", "record_type": "customer_profile", "record": {"name": "x"}},
}


def make_tokens(*scope_sets: tuple[str, ...]) -> tuple[Tokens, dict[tuple[str, ...], str]]:
    """A token for each set of scopes: the tokens (digests only) and each set's secret."""
    secrets = {scopes: new_token() for scopes in scope_sets}
    tokens = Tokens(
        Token(f"t{i}", frozenset(scopes), digest(secret)) for i, (scopes, secret) in enumerate(secrets.items())
    )
    return tokens, secrets


SETS = (*((s,) for s in SCOPES), ("decide", "log:read"))
TOKENS, SECRET = make_tokens(*SETS)


def bearer(scopes: tuple[str, ...]) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRET[scopes]}"}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(POLICIES)


@pytest.fixture(scope="module")
def client(engine: Engine) -> Iterator[TestClient]:
    app = create_app(Service(engine, watch_interval=None), auth=AuthConfig(TOKENS))
    with TestClient(app) as c:
        yield c


def concrete(path: str) -> str:
    return path.replace("{domain}", "access").replace("{id}", "0123456789")


def call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if method == "POST":
        kwargs["json"] = {"facts": ACCESS, "now": STAMP}
    return client.request(method, concrete(path), **kwargs)


def assert_shape(resp: Any, status: int, code: str) -> dict[str, Any]:
    """The one error shape: JSON, `{"error": {code, message, hint}}`, the bundle header, no traceback."""
    assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), resp.text
    assert resp.headers["content-type"] == "application/json"
    assert set(resp.json()) == {"error"} and resp.json()["error"]["message"]
    assert {"code", "message", "hint"} <= set(resp.json()["error"])
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    assert resp.headers["X-Charter-Bundle"].startswith("b-")
    err: dict[str, Any] = resp.json()["error"]
    return err


# -- scopes, endpoint by endpoint ---------------------------------------------------------------------


def test_every_route_of_the_service_has_its_scope_written_down(client: TestClient) -> None:
    own = [r for r in client.app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]
    routes = {(m, r.path) for r in own for m in (r.methods or ()) if m != "HEAD"}
    assert routes == set(ENDPOINTS)
    assert {p for (_, p), need in ENDPOINTS.items() if need == OPEN} == {"/health", "/ready", "/openapi.json"}


@pytest.mark.parametrize(("method", "path"), sorted(ENDPOINTS))
def test_each_endpoint_refuses_and_allows_by_its_scope(client: TestClient, method: str, path: str) -> None:
    need = ENDPOINTS[(method, path)]
    anonymous = call(client, method, path)
    wrong = call(client, method, path, {"Authorization": "Bearer charter_not-a-token"})
    if need == OPEN:
        assert anonymous.status_code == 200 and wrong.status_code == 200  # probes need no token
        return
    err = assert_shape(anonymous, 401, "C080")
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="charter"' and "Bearer" in err["message"]
    assert_shape(wrong, 401, "C080")
    assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="charter", error="invalid_token"'
    basic = call(client, method, path, {"Authorization": "Basic dXNlcjpwdw=="})
    assert_shape(basic, 401, "C080")

    for scopes in SETS:
        resp = call(client, method, path, bearer(scopes))
        allowed = need == ANY or need in scopes or (ADMIN in scopes and need != UNSEAL)
        if allowed:
            assert resp.status_code not in (401, 403), (scopes, resp.text)
        else:
            err = assert_shape(resp, 403, "C081")
            assert f"`{need}`" in err["message"], err
            assert resp.headers["WWW-Authenticate"].endswith(f'error="insufficient_scope", scope="{need}"')


def test_a_token_with_the_scope_gets_the_answer(client: TestClient) -> None:
    r = client.post("/v1/decide/access", json={"facts": ACCESS, "now": STAMP}, headers=bearer(("decide",)))
    assert r.status_code == 200 and r.json()["outputs"]["effect"] in ("allow", "deny")
    # a token with several scopes, and the header's scheme in any case
    r = client.get("/v1/bundle", headers={"Authorization": f"bearer {SECRET[('decide', 'log:read')]}"})
    assert r.status_code == 200
    metrics = client.get("/metrics", headers=bearer(("metrics",)))
    assert metrics.status_code == 200 and "charter_decisions_total" in metrics.text


def test_unknown_routes_need_a_token_before_they_are_not_found(client: TestClient) -> None:
    assert_shape(client.get("/v2/nothing"), 401, "C080")  # the route table is not told to strangers
    assert_shape(client.get("/v2/nothing", headers=bearer(("decide",))), 404, "C068")


def test_admin_implies_every_scope_but_unseal() -> None:
    admin = Token("ops", frozenset({ADMIN}))
    assert all(admin.allows(s) for s in SCOPES if s != UNSEAL) and not admin.allows(UNSEAL)
    assert Token("wb", frozenset({UNSEAL})).allows(UNSEAL) and not Token("wb", frozenset({UNSEAL})).allows(ADMIN)


# -- a route mounted later: the web workbench ---------------------------------------------------------


def test_a_mounted_route_is_covered_and_can_ask_the_tokens_scopes(engine: Engine) -> None:
    async def page(request: Request) -> Response:
        token = token_of(request)
        return JSONResponse({"name": token.name if token else None, "unseal": has_scope(request, UNSEAL)})

    async def sealed(request: Request) -> Response:
        require_scope(request, UNSEAL)
        return JSONResponse({"clear": True})

    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug in a mounted page, with /secret/path in its message")

    app = create_app(Service(engine, watch_interval=None), auth=AuthConfig(TOKENS))
    app.router.routes += [Route("/x/", page), Route("/x/sealed", sealed), Route("/x/broken", broken)]
    with TestClient(app, raise_server_exceptions=False) as c:
        assert_shape(c.get("/x/"), 401, "C080")
        assert c.get("/x/", headers=bearer(("log:read",))).json() == {"name": "t1", "unseal": False}
        assert c.get("/x/", headers=bearer((UNSEAL,))).json()["unseal"] is True
        assert_shape(c.get("/x/sealed", headers=bearer((ADMIN,))), 403, "C081")
        assert c.get("/x/sealed", headers=bearer((UNSEAL,))).json() == {"clear": True}
        err = assert_shape(c.get("/x/broken", headers=bearer(("decide",))), 500, "C069")
        assert "secret" not in json.dumps(err)


def test_without_tokens_every_request_is_anonymous_with_every_scope_but_unseal(engine: Engine) -> None:
    async def page(request: Request) -> Response:
        token = token_of(request)
        assert token is not None
        return JSONResponse({"name": token.name, "scopes": sorted(token.scopes)})

    app = create_app(Service(engine, watch_interval=None))
    app.router.routes.append(Route("/x/", page))
    with TestClient(app) as c:
        assert c.get("/x/").json() == {"name": "anonymous", "scopes": sorted(set(SCOPES) - {UNSEAL})}
        assert c.get("/v1/bundle").status_code == 200


# -- loopback only, without tokens ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "127.0.0.1:8080"}, 200),
        ({"Host": "localhost:8080"}, 200),
        ({"Host": "[::1]:8080"}, 200),
        ({"Host": "localhost", "Origin": "http://localhost:3000"}, 200),  # a page of this machine's
        ({"Host": "evil.example"}, 403),  # DNS rebinding: a name that resolved to 127.0.0.1
        ({"Host": "10.0.0.5:8080"}, 403),
        ({"Host": "localhost:8080", "Origin": "https://evil.example"}, 403),  # cross-site, from a browser
        ({"Host": "localhost:8080", "Origin": "null"}, 403),
    ],
)
def test_without_tokens_only_this_machine_is_served(engine: Engine, headers: dict[str, str], status: int) -> None:
    app = create_app(Service(engine, watch_interval=None), auth=AuthConfig(local_only=True))
    with TestClient(app) as c:
        r = c.post("/v1/decide/access", json={"facts": ACCESS, "now": STAMP}, headers=headers)
    if status == 200:
        assert r.status_code == 200, r.text
    else:
        assert "`--tokens FILE`" in assert_shape(r, 403, "C082")["hint"]


# -- the error shape, for every error class ------------------------------------------------------------


def test_every_error_class_answers_the_one_shape(engine: Engine) -> None:
    service = Service(engine, watch_interval=None)
    decide = bearer(("decide",))
    with TestClient(create_app(service, max_body=2048, max_batch=5, auth=AuthConfig(TOKENS))) as c:
        cases = [
            (c.post("/v1/decide/access", content=b'{"facts": {', headers=decide), 400, "C061"),
            (c.post("/v1/decide/access", json={"facts": ACCESS}), 401, "C080"),
            (c.post("/v1/decide/access", json={"facts": ACCESS}, headers=bearer(("log:read",))), 403, "C081"),
            (c.post("/v1/decide/nope", json={"facts": ACCESS}, headers=decide), 404, "C060"),
            (c.get("/v1/jobs/nope", headers=bearer(("replay",))), 404, "C067"),
            (c.get("/v1/log/records/0123456789", headers=bearer(("log:read",))), 404, "C065"),
            (c.get("/v2/nothing", headers=decide), 404, "C068"),
            (c.delete("/v1/bundle", headers=decide), 405, "C068"),
            (c.post("/v1/decide/access", json={"facts": ACCESS, "pad": "x" * 3000}, headers=decide), 413, "C068"),
            (c.post("/v1/decide/access/batch", json={"facts": [ACCESS] * 6}, headers=decide), 413, "C084"),
            (
                c.post("/v1/decide/access", content=b"facts=1", headers={**decide, "Content-Type": "text/plain"}),
                415,
                "C083",
            ),
            (
                c.post("/v1/decide/access", data={"facts": "x"}, headers=decide),  # a browser form's encoding
                415,
                "C083",
            ),
            (c.post("/v1/decide/access", json={"facts": {}, "now": STAMP}, headers=decide), 422, "F201"),
            (c.post("/v1/decide/access", json={"facts": "x"}, headers=decide), 422, "C062"),
        ]
        for resp, status, code in cases:
            if code.startswith("F"):
                assert resp.status_code == status and resp.json()["error"]["code"].startswith("F"), resp.text
                continue
            assert_shape(resp, status, code)
        five = c.post("/v1/decide/access/batch", json={"facts": [ACCESS] * 5, "now": STAMP}, headers=decide)
        assert five.status_code == 200 and five.json()["decided"] == 5  # the limit itself is allowed
        ok = c.post(
            "/v1/decide/access",
            json={"facts": ACCESS},
            headers={**decide, "Content-Type": "application/json; charset=utf-8"},
        )
        assert ok.status_code == 200

        service.bundle_info = _raise  # type: ignore[method-assign]
        err = assert_shape(c.get("/v1/bundle", headers=decide), 500, "C069")
        assert "boom" not in err["message"]


def _raise() -> Any:
    raise RuntimeError("boom: an internal detail")


def test_a_chunked_body_over_the_limit_is_refused(engine: Engine) -> None:
    with TestClient(create_app(Service(engine, watch_interval=None), max_body=1000)) as c:

        def chunks() -> Iterator[bytes]:
            yield b'{"facts": {"pad": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}}'

        r = c.post("/v1/decide/access", content=chunks())
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert_shape(r, 413, "C068")


# -- the time limit ----------------------------------------------------------------------------------


def test_a_request_over_the_time_limit_answers_504_and_its_work_goes_on(engine: Engine) -> None:
    service = Service(engine, watch_interval=None)
    finished = threading.Event()
    release = threading.Event()

    def slow_batch(domain: str, body: Any, *, explain: bool = False) -> dict[str, Any]:
        release.wait(10)
        finished.set()
        return {"bundle_version": engine.bundle_version}

    service.decide_batch = slow_batch  # type: ignore[method-assign]
    with TestClient(create_app(service, request_timeout=0.2)) as c:
        r = c.post("/v1/decide/access/batch", json={"facts": [ACCESS]})
        err = assert_shape(r, 504, "C085")
        assert "may still finish" in err["hint"]
        assert not finished.is_set()  # answered while the work was still under way
        release.set()
        assert finished.wait(10)  # the worker thread was not killed: it ran to its end
        assert c.post("/v1/decide/access", json={"facts": ACCESS, "now": STAMP}).status_code == 200


# -- /ready: open, its details for admins ---------------------------------------------------------------


def test_ready_is_open_and_shows_the_errors_details_to_admins_only(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies, ignore=shutil.ignore_patterns("tests"))
    service = Service(Engine(policies, settle=0), watch_interval=None, settle=0)
    watcher = service.watcher_for_polling()
    with TestClient(create_app(service, auth=AuthConfig(TOKENS))) as c:
        text = (policies / "access.yaml").read_text(encoding="utf-8")
        (policies / "access.yaml").write_text(text.replace("effect: allow", "effect: perhaps", 1), encoding="utf-8")
        assert watcher.poll()
        anonymous = c.get("/ready")
        assert anonymous.status_code == 503
        assert anonymous.json()["reasons"] == [{"what": "reload", "message": anonymous.json()["reasons"][0]["message"]}]
        assert "access.yaml" not in anonymous.text
        admin = c.get("/ready", headers=bearer((ADMIN,)))
        assert admin.status_code == 503 and "access.yaml" in admin.json()["reasons"][0]["error"]


# -- the tokens file ---------------------------------------------------------------------------------


def test_a_tokens_file_in_yaml_or_json_lets_its_tokens_in(tmp_path: Path) -> None:
    secret = new_token()
    entry = {"name": "crm", "scopes": ["decide", "log:read"], "sha256": digest(secret)}
    (tmp_path / "t.json").write_text(json.dumps({"tokens": [entry]}), encoding="utf-8")
    (tmp_path / "t.yaml").write_text(
        f"tokens:\n  - name: crm\n    scopes: [decide, log:read]\n    sha256: {digest(secret)}\n"
    )
    for name in ("t.json", "t.yaml"):
        tokens = Tokens.load(tmp_path / name)
        found = tokens.match(secret)
        assert found is not None and found.name == "crm" and found.scopes == {"decide", "log:read"}
        assert tokens.match(secret + "x") is None and tokens.match("") is None


SHA, OTHER = "a" * 64, "b" * 64


def test_a_changed_tokens_file_is_read_again_and_a_broken_change_keeps_the_old_tokens(tmp_path: Path) -> None:
    first, second = new_token(), new_token()
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens: [{{name: a, scopes: [decide], sha256: {digest(first)}}}]\n", encoding="utf-8")
    clock = [0.0]
    tokens = TokenFile(path, interval=1.0, clock=lambda: clock[0])
    assert tokens.current().match(first) is not None
    path.write_text(f"tokens: [{{name: b, scopes: [log:read], sha256: {digest(second)}}}]\n", encoding="utf-8")
    assert tokens.current().match(first) is not None  # not looked at again within the interval
    clock[0] = 1.0
    assert tokens.current().match(first) is None and tokens.current().match(second).name == "b"  # type: ignore[union-attr]
    assert tokens.reloads == 1
    path.write_text("tokens: [{name: b, scopes: [decid], sha256: nope}]\n", encoding="utf-8")
    clock[0] = 2.0
    assert tokens.current().match(second) is not None  # the previous tokens stay
    assert tokens.last_error is not None and tokens.last_error.code == "C086"
    path.unlink()
    clock[0] = 3.0
    assert tokens.current().match(second) is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "must hold a `tokens` list"),
        ("tokens: [3]", "must be a mapping"),
        (f"tokens: [{{name: a, scopes: [decide], sha256: {SHA}, token: charter_x}}]", "never be in the file"),
        (f"tokens: [{{name: a, scopes: [decid], sha256: {SHA}}}]", "unknown scope `decid`"),
        (f"tokens: [{{name: a, scopes: [], sha256: {SHA}}}]", "at least one scope"),
        ("tokens: [{name: a, scopes: [decide], sha256: abc}]", "64 hexadecimal digits"),
        (f"tokens: [{{name: 'a b', scopes: [decide], sha256: {SHA}}}]", "short name"),
        (f"tokens: [{{name: a, scopes: [decide], sha256: {SHA}, expiry: 1}}]", "unknown key `expiry`"),
        (
            f"tokens: [{{name: a, scopes: [decide], sha256: {SHA}}}, {{name: a, scopes: [decide], sha256: {OTHER}}}]",
            "two tokens have the name `a`",
        ),
        (
            f"tokens: [{{name: a, scopes: [decide], sha256: {SHA}}}, {{name: b, scopes: [decide], sha256: {SHA}}}]",
            "two tokens have the sha256",
        ),
        ("tokens: [unclosed", "not valid YAML or JSON"),
    ],
)
def test_a_wrong_tokens_file_is_refused_at_start(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CharterError) as err:
        Tokens.load(path)
    assert err.value.code == "C086" and message in err.value.message and str(path) in err.value.message
    if "decid`" in message:
        assert err.value.hint == "did you mean `decide`?"


def test_token_new_prints_a_token_and_adds_only_its_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.yaml"
    for name, scopes in (("crm", "decide"), ("audit", "log:read,replay")):
        assert main(["serve", "token", "new", name, "--scopes", scopes, "--add", str(path), "--format", "json"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert second["scopes"] == ["log:read", "replay"] and second["token"].startswith("charter_")
    text = path.read_text(encoding="utf-8")
    assert first["token"] not in text and second["token"] not in text and second["sha256"] in text
    tokens = Tokens.load(path)
    assert [t.name for t in tokens.tokens] == ["crm", "audit"]
    assert tokens.match(first["token"]).name == "crm"  # type: ignore[union-attr]
    assert main(["serve", "token", "new", "crm", "--scopes", "decide", "--add", str(path)]) == 1
    assert "already there" in capsys.readouterr().err
    assert main(["serve", "token", "new", "x", "--scopes", "admn"]) == 1
    assert "did you mean `admin`?" in capsys.readouterr().err
    assert main(["serve", "token", "new", "ops", "--scopes", "admin"]) == 0
    out = capsys.readouterr().out
    secret = re.search(r"(charter_\S+)", out).group(1)  # type: ignore[union-attr]
    assert digest(secret) in out and "never the token" in out


# -- the options --------------------------------------------------------------------------------------


def options(**kw: Any) -> argparse.Namespace:
    base = {"host": "127.0.0.1", "tokens": None, "insecure_no_auth": False}
    base |= {"tls_cert": None, "tls_key": None, "tls_client_ca": None}
    return argparse.Namespace(**(base | kw))


def test_another_address_than_loopback_needs_tokens_certificates_or_insecure(tmp_path: Path) -> None:
    config, line = auth_of(options())
    assert config.local_only and config.tokens is None and "this machine only" in line
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(CharterError) as err:
            auth_of(options(host=host))
        assert err.value.code == "C087" and "--insecure-no-auth" in (err.value.hint or "")
    config, line = auth_of(options(host="0.0.0.0", insecure_no_auth=True))
    assert not config.local_only and line.startswith("WARNING")
    config, _ = auth_of(options(host="0.0.0.0", tls_client_ca="ca.pem"))
    assert config.tokens is None and not config.local_only
    (tmp_path / "t.yaml").write_text(f"tokens: [{{name: a, scopes: [decide], sha256: {SHA}}}]", encoding="utf-8")
    config, line = auth_of(options(host="0.0.0.0", tokens=str(tmp_path / "t.yaml")))
    assert config.tokens is not None and len(config.tokens) == 1 and "1 bearer token(s)" in line


def test_tls_options_that_do_not_go_together_are_refused(tmp_path: Path) -> None:
    assert tls_of(options()) is None
    for kw in ({"tls_cert": "c.pem"}, {"tls_key": "k.pem"}, {"tls_client_ca": "ca.pem"}):
        with pytest.raises(CharterError) as err:
            tls_of(options(**kw))
        assert err.value.code == "C087"
    with pytest.raises(CharterError) as err:
        tls_of(options(tls_cert=str(tmp_path / "none.pem"), tls_key=str(tmp_path / "none.key")))
    assert err.value.code == "C087" and "cannot be used" in err.value.message


# -- the OpenAPI document --------------------------------------------------------------------------------


def test_the_openapi_document_states_each_operations_scope(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    for (method, path), need in ENDPOINTS.items():
        if path == "/openapi.json":
            continue
        op = doc["paths"][path][method.lower()]
        if need == OPEN:
            assert {} in op["security"]
            continue
        assert op["security"] == [{"bearer": [] if need == ANY else [need]}]
        assert "401" in op["responses"] and ("403" in op["responses"]) == (need != ANY)
    assert doc == json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))


# -- a real server ---------------------------------------------------------------------------------------


def serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], int, list[str]]:
    """`charter serve` on a free loopback port: the process, the port and its first stderr lines."""
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--policies", str(POLICIES), *extra]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    m = re.search(r"listening on https?://127\.0\.0\.1:(\d+)", first)
    if not m:
        proc.kill()
        raise AssertionError(first + proc.stderr.read())
    return proc, int(m.group(1)), [first, proc.stderr.readline()]


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0, rest
    return rest


def test_a_real_server_with_tokens_refuses_strangers_and_chunked_floods(tmp_path: Path) -> None:
    secret = new_token()
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens:\n  - {{name: crm, scopes: [decide], sha256: {digest(secret)}}}\n", encoding="utf-8")
    proc, port, lines = serve(tmp_path, "--tokens", str(path), "--max-body", "4096", "--max-batch", "3")
    try:
        assert "1 bearer token(s)" in lines[1]
        body = json.dumps({"facts": ACCESS, "now": STAMP})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/decide/access", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 401 and resp.getheader("WWW-Authenticate") == 'Bearer realm="charter"'
        assert json.loads(resp.read())["error"]["code"] == "C080"
        auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        conn.request("POST", "/v1/decide/access", body, auth)
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["outputs"]["effect"]
        conn.request("GET", "/health")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"
        conn.close()

        flood = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        chunks = (b"[" + b" " * 1000 for _ in range(50))  # 50 kB, chunked: no Content-Length to refuse early
        flood.request("POST", "/v1/decide/access/batch", chunks, auth, encode_chunked=True)
        resp = flood.getresponse()
        got = json.loads(resp.read())
        assert resp.status == 413 and got["error"]["code"] == "C068", got
        flood.close()

        many = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        many.request("POST", "/v1/decide/access/batch", json.dumps({"facts": [ACCESS] * 4}), auth)
        resp = many.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "C084"
        many.close()

        path.write_text("tokens: []\n", encoding="utf-8")  # revoked, with no restart
        deadline, status = time.monotonic() + 30, 200
        while status != 401 and time.monotonic() < deadline:
            time.sleep(0.2)
            again = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            again.request("GET", "/v1/bundle", headers=auth)
            status = again.getresponse().status
            again.close()
        assert status == 401
    finally:
        rest = stop(proc)
    assert "unknown token" in rest and secret not in rest  # the refusal is logged, never the token


def _response(sock: socket.socket) -> str:
    """A whole HTTP response read off ``sock``: its head, then as much body as it says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data.decode()
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length is not None and len(body) < int(length.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def test_a_real_server_without_tokens_serves_this_machine_only(tmp_path: Path) -> None:
    proc, port, lines = serve(tmp_path, "--request-timeout", "0.5")
    try:
        assert "no --tokens: serving this machine only" in lines[1]
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:  # a body that never arrives in full: answered once the time limit is past
            head = b"POST /v1/decide/access HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
            slow.sendall(head + b'{"facts": ')
            answer = _response(slow)
        finally:
            slow.close()
        assert answer.startswith("HTTP/1.1 504 ") and '"code":"C085"' in answer, answer
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/v1/bundle")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["bundle_version"]
        conn.request("GET", "/v1/bundle", headers={"Host": "attacker.example"})  # DNS rebinding
        resp = conn.getresponse()
        assert resp.status == 403 and json.loads(resp.read())["error"]["code"] == "C082"
        conn.close()
    finally:
        stop(proc)
    refused = subprocess.run(
        [sys.executable, "-m", "engine.cli", "serve", "--host", "0.0.0.0", "--port", "0", "--policies", str(POLICIES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "without `--tokens`" in refused.stderr and "listening" not in refused.stderr


# -- mTLS -------------------------------------------------------------------------------------------------


def _pki(tmp_path: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # valid for ten years from a fixed day: no clock in the test

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool = False, usage: Any = None) -> Any:
        b = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            b = b.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
            if usage == ExtendedKeyUsageOID.SERVER_AUTH:
                b = b.add_extension(
                    x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                    critical=False,
                )
        return b.sign(issuer_key, hashes.SHA256())

    out: dict[str, Path] = {}

    def write(label: str, c: Any, key: Any) -> None:
        out[f"{label}.pem"] = tmp_path / f"{label}.pem"
        out[f"{label}.pem"].write_bytes(c.public_bytes(serialization.Encoding.PEM))
        out[f"{label}.key"] = tmp_path / f"{label}.key"
        out[f"{label}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    write("ca", cert("charter test ca", ca_key, "charter test ca", ca_key, ca=True), ca_key)
    for label, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        write(label, cert(f"charter {label}", key, "charter test ca", ca_key, usage=usage), key)
    return out


def test_mtls_requires_a_client_certificate_of_the_ca(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    proc, port, lines = serve(
        tmp_path, "--tls-cert", str(pki["server.pem"]), "--tls-key", str(pki["server.key"]),
        "--tls-client-ca", str(pki["ca.pem"]),
    )  # fmt: skip
    try:
        assert lines[0].startswith("charter serve: listening on https://127.0.0.1:")

        def get(with_cert: bool) -> int:
            ctx = ssl.create_default_context(cafile=str(pki["ca.pem"]))
            if with_cert:
                ctx.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
            try:
                conn.request("GET", "/v1/bundle")
                return conn.getresponse().status
            finally:
                conn.close()

        assert get(with_cert=True) == 200
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
            get(with_cert=False)
        plain = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:  # plain HTTP to a TLS port answers nothing a client could take for a decision
            plain.sendall(b"GET /v1/bundle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(0.2)
            assert b"bundle_version" not in plain.recv(4096)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            plain.close()
    finally:
        stop(proc)
