"""The workbench's replay jobs (/ui/log/replay): a replay started from the page runs as the
service's job, its page shows progress while it runs and the report once done — the same
counts `charter replay` gives over the same records — and only a token with `replay` may
start or follow one."""

from __future__ import annotations

import re
import time

from starlette.testclient import TestClient
from test_web import BASE, Served, served, snapshot

from engine.audit.replay import Filters, Replayer
from engine.serve.app import create_app
from engine.serve.auth import AuthConfig, Token, Tokens, digest

__all__ = ["served", "snapshot"]  # the fixtures of tests/test_web.py, shared


def _finished(served: Served, url: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        page = served.client.get(url).text
        if 'http-equiv="refresh"' not in page or time.monotonic() > deadline:
            return page
        time.sleep(0.1)


def test_a_replay_started_from_the_page_reports_what_charter_replay_reports(served: Served) -> None:
    start = served.client.post("/ui/log/replay", data={"domain": "access"}, follow_redirects=False)
    assert start.status_code == 303
    url = start.headers["location"]
    assert re.fullmatch(r"/ui/log/replay/[0-9a-f]{32}", url)
    page = _finished(served, url)
    assert "done:" in page and 'http-equiv="refresh"' not in page
    store, protector = served.service.store, served.service.protector
    assert store is not None and protector is not None
    with Replayer(store, protector) as replayer:
        want = replayer.run(Filters(domain="access"))
    assert want.total > 0
    summary = (
        f"{want.same} reproduced, {len(want.changed)} diverged, {want.unreadable} unreadable (erased or withheld),"
        f" {len(want.errors)} error(s)"
    )
    assert summary in re.sub(r"\s+", " ", page)
    listing = served.client.get("/ui/log/replay").text
    assert url in listing and "domain access" in listing


def test_only_a_token_with_the_replay_scope_may_start_or_follow_one(served: Served) -> None:
    auth = AuthConfig(
        Tokens(
            [
                Token("auditor", frozenset({"log:read"}), digest("auditor-secret")),
                Token("replayer", frozenset({"replay"}), digest("replay-secret")),
            ]
        )
    )
    with TestClient(create_app(served.service, auth=auth), base_url=BASE) as client:
        auditor = {"Authorization": "Bearer auditor-secret"}
        assert client.get("/ui/log/replay", headers=auditor).status_code == 403
        assert client.post("/ui/log/replay", data={}, headers=auditor).status_code == 403
        replayer = {"Authorization": "Bearer replay-secret"}
        started = client.post("/ui/log/replay", data={}, headers=replayer, follow_redirects=False)
        assert started.status_code == 303
        assert client.get(started.headers["location"], headers=replayer).status_code == 200
        assert client.get(started.headers["location"], headers=auditor).status_code == 403
